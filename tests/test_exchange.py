"""The JupyterHub way: hand-out and hand-in through nbgrader's own exchange, by real accounts.

An instructor account releases lesson08 into a temporary exchange; student accounts fetch it,
answer Q1 of check_your_learning (right or wrong) as a student would, and submit, each as
themselves; the instructor collects, grades with the batch grader (sandboxed, in a user
namespace), writes feedback with `python -m graders feedback` and releases it; each student
fetches their own. Also: a second submission (the latest counts), a late one (nbgrader's
penalty through the batch grader), one with a notebook missing, and wrong modes on the exchange.

Needs root to create the accounts (CI); skips otherwise. The accounts run this virtualenv's
packages through a copy of it made of hard links, with its own interpreter where they can run
it, else the system's Python of the same version (pyenv's lives under /root, closed to them).
"""
import csv
import datetime
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

import course
from graders import data
from graders.outputs.feedback import rendered

SYSTEM_PYTHON = Path("/usr/bin/python3")
PREFIX = f"onx{os.getpid() % 100000}"
INSTRUCTOR, ALICE, BOB, CAROL, DAVE = (f"{PREFIX}-{role}" for role in ("teach", "alice", "bob", "carol", "dave"))
STUDENTS = (ALICE, BOB, CAROL, DAVE)
RIGHT, WRONG = "n_parameters = 32 * 32 * 3 * 100 + 100", "n_parameters = 100 * 32 * 32 * 3"  # 307300, 307200 (no bias)
CYL = "check_your_learning"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create the instructor's and students' accounts")

# what a student does in Jupyter: replace the stub of the Q1 answer cell, save
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER = """import sys, nbformat
path, old, new = sys.argv[1:]
nb = nbformat.read(path, as_version=4)
cell = next(c for c in nb.cells if c.get("id") == "q1_answer")
assert old in cell.source
cell.source = cell.source.replace(old, new)
nbformat.write(nb, path)
"""


def interpreter():
    """The virtualenv's own interpreter if any account can run it, else the system's of the same version, else None."""
    base = Path(os.path.realpath(sys.executable))
    if all(folder.stat().st_mode & 0o001 for folder in base.parents):
        return base
    if SYSTEM_PYTHON.is_file():
        found = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if found.stdout.strip() == str(tuple(sys.version_info[:2])):
            return SYSTEM_PYTHON
    return None


def shared_python(folder: Path, python: Path) -> Path:
    """This virtualenv, hard-linked into `folder` (copied across file systems), run by `python`: any account can use it."""
    venv = folder / "venv"
    if subprocess.run(["cp", "-al", sys.prefix, str(venv)], capture_output=True).returncode:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(["cp", "-a", sys.prefix, str(venv)], check=True)
    old = f"#!{Path(sys.prefix) / 'bin' / 'python'}"
    for path in (venv / "bin").iterdir():
        if path.is_file() and not path.is_symlink() and path.read_bytes().startswith(old.encode() + b"\n"):
            text = path.read_text()
            path.unlink()  # a hard link: never write through it into the original
            path.write_text(f"#!{venv / 'bin' / 'python'}" + text[len(old):])
            path.chmod(0o755)
    for name in ("python", "python3", f"python3.{sys.version_info.minor}"):
        (venv / "bin" / name).unlink()
        (venv / "bin" / name).symlink_to(python)
    version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (venv / "pyvenv.cfg").unlink()
    (venv / "pyvenv.cfg").write_text(f"home = {python.parent}\ninclude-system-site-packages = false\nversion = {version}\n")
    return venv


class Server:
    """A shared Linux server: accounts, an exchange, one Python for all."""

    def __init__(self, folder: Path, python: Path):
        self.folder, self.venv = folder, shared_python(folder, python)
        self.exchange = folder / "exchange"
        self.exchange.mkdir()
        self.exchange.chmod(0o1777)  # what the administrator does once
        self.data = folder / "data"
        self.data.mkdir()
        shutil.copy2(data.cache_path("mnist"), self.data / "mnist.npz")
        built = data.students_dir() / "mnist.npz"  # the students' view
        (self.data / built.parent.name).mkdir(mode=0o755, exist_ok=True)
        shutil.copy2(built, self.data / built.parent.name / built.name)
        self.data.chmod(0o755)
        self.log = []

    def home(self, account: str) -> Path:
        return Path(pwd.getpwnam(account).pw_dir)

    def as_account(self, account: str, *command: str) -> list:
        """The argv that runs `command` as `account` in a login-like environment with the course's Python on PATH."""
        home = self.home(account)
        return ["runuser", "-u", account, "--", "env", "-i", f"HOME={home}", f"USER={account}", f"LOGNAME={account}",
                "LANG=C.UTF-8", f"PATH={self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", f"ONIONS_DATA_DIR={self.data}",
                *command]

    def run(self, account: str, *command: str, cwd: Path = None, check: bool = True) -> subprocess.CompletedProcess:
        """`command` as `account`, in its home (or `cwd`), a login-like environment with the course's Python on PATH."""
        result = subprocess.run(self.as_account(account, *command), cwd=cwd or self.home(account),
                                capture_output=True, text=True, timeout=600)
        self.log.append(f"$ [{account}] {' '.join(command)}\n{result.stdout}{result.stderr}")
        if check:
            assert result.returncode == 0, self.log[-1][-4000:]
        return result


def submit(server: Server, student: str, answer: str, drop: str = None, old: str = STUB) -> subprocess.CompletedProcess:
    """The student answers Q1 in the fetched notebook (in place of `old`), saves, and runs nbgrader submit."""
    folder = server.home(student) / course.ASSIGNMENT
    server.run(student, "python", "-c", ANSWER, str(folder / f"{CYL}.ipynb"), old, answer)
    if drop:
        (folder / f"{drop}.ipynb").unlink()
    return server.run(student, "nbgrader", "submit", course.ASSIGNMENT)


@pytest.fixture(scope="module")
def server():
    python = interpreter()
    if python is None:
        pytest.skip(f"other accounts cannot run {os.path.realpath(sys.executable)}, and {SYSTEM_PYTHON} is not "
                    f"Python {sys.version_info.major}.{sys.version_info.minor} as this virtualenv")
    folder = Path(tempfile.mkdtemp(prefix="onions-exchange-", dir="/tmp"))
    folder.chmod(0o755)
    made = []
    try:
        for account in (INSTRUCTOR, *STUDENTS):
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", account], check=True)
            made.append(account)
            Path(pwd.getpwnam(account).pw_dir).chmod(0o700)  # README: HOME_MODE 0700
        yield Server(folder, python)
    finally:
        for account in made:
            subprocess.run(["userdel", "-r", account], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


class Term:
    def __init__(self, server, directory, outputs):
        self.server, self.directory, self.outputs = server, directory, outputs


@pytest.fixture(scope="module")
def term(server):
    """One assignment's round trip, as the README's section tells each person to do it."""
    run, outputs = server.run, {}
    directory = server.home(INSTRUCTOR) / "course"
    course.copy_course(directory)
    with open(directory / "nbgrader_config.py", "a") as config:  # this server's exchange; late work scores 0
        config.write(f"\nc.Exchange.root = {str(server.exchange)!r}\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(directory)], check=True)
    for student in STUDENTS:  # the administrator's /etc/jupyter/nbgrader_config.py, per account here
        config = server.home(student) / ".jupyter" / "nbgrader_config.py"
        config.parent.mkdir()
        config.write_text(f"c = get_config()\nc.CourseDirectory.course_id = 'onions'\nc.Exchange.root = {str(server.exchange)!r}\n")
        subprocess.run(["chown", "-R", f"{student}:{student}", str(config.parent)], check=True)

    run(INSTRUCTOR, "nbgrader", "generate_assignment", course.ASSIGNMENT, cwd=directory)
    run(INSTRUCTOR, "nbgrader", "release_assignment", course.ASSIGNMENT, cwd=directory)
    outputs["check"] = run(INSTRUCTOR, "python", "-m", "graders", "exchange", "check", cwd=directory)
    for student in STUDENTS:
        run(student, "nbgrader", "fetch_assignment", course.ASSIGNMENT)
    submit(server, ALICE, WRONG)
    submit(server, ALICE, RIGHT, old=WRONG)  # she corrects it and submits again: the latest counts
    submit(server, BOB, WRONG)
    outputs["dave"] = submit(server, DAVE, RIGHT, drop="mnist_exercise")
    due = datetime.datetime.now(datetime.timezone.utc)
    run(INSTRUCTOR, "nbgrader", "db", "assignment", "add", course.ASSIGNMENT, f"--duedate={due.isoformat()}", cwd=directory)
    submit(server, CAROL, RIGHT)  # after the due date

    outputs["collect"] = run(INSTRUCTOR, "nbgrader", "collect", course.ASSIGNMENT, cwd=directory)
    outputs["autograde"] = run(INSTRUCTOR, "python", "-m", "graders", "autograde", course.ASSIGNMENT, "--workers", "2",
                               "--memory", "3G", cwd=directory, check=False)
    outputs["feedback"] = run(INSTRUCTOR, "python", "-m", "graders", "feedback", course.ASSIGNMENT, cwd=directory)
    outputs["release_feedback"] = run(INSTRUCTOR, "nbgrader", "release_feedback", course.ASSIGNMENT, cwd=directory)
    run(INSTRUCTOR, "nbgrader", "export", cwd=directory)
    for student in STUDENTS:
        outputs[f"fetch_feedback {student}"] = run(student, "nbgrader", "fetch_feedback", course.ASSIGNMENT)
    return Term(server, directory, outputs)


def fetched_feedback(server, student) -> dict:
    """{notebook name: its text as the student reads it} of the feedback the student fetched (one submission's)."""
    folders = list((server.home(student) / course.ASSIGNMENT / "feedback").iterdir())
    assert len(folders) == 1, folders  # a first submission, replaced by a later one, has none
    return {path.stem: rendered(path.read_text()) for path in folders[0].glob("*.html")}


def test_the_instructor_releases_and_the_exchange_is_as_nbgrader_makes_it(term):
    assert "modes as nbgrader makes them" in term.outputs["check"].stdout
    released = term.server.exchange / course.COURSE_ID / "outbound" / course.ASSIGNMENT
    assert sorted(p.name for p in released.glob("*.ipynb")) == [f"{n}.ipynb" for n in course.NOTEBOOKS]


def test_collect_takes_the_latest_submission_and_every_student(term):
    submitted = term.directory / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == sorted(STUDENTS)
    alice = course.read_notebook(submitted / ALICE / course.ASSIGNMENT / f"{CYL}.ipynb")
    assert RIGHT in next(c for c in alice.cells if c.get("id") == "q1_answer").source
    for student in STUDENTS:
        assert (submitted / student / course.ASSIGNMENT / "timestamp.txt").is_file()


def test_a_missing_notebook_is_named_at_submit_and_the_rest_is_graded(term):
    assert "mnist_exercise.ipynb: MISSING" in term.outputs["dave"].stdout + term.outputs["dave"].stderr
    line = next(line for line in term.outputs["autograde"].stdout.splitlines() if line.startswith(f"{DAVE} "))
    assert line.split()[1:] == ["1", "19", "missing", "notebook", "mnist_exercise", "(scored", "0)"], line


def test_the_gradebook_has_each_student_with_nbgraders_late_penalty(term):
    assert "bubblewrap in a user namespace" in term.outputs["autograde"].stdout, term.outputs["autograde"].stdout
    with Gradebook(f"sqlite:///{term.directory / 'gradebook.db'}", course.COURSE_ID) as gradebook:
        got = {s.student_id: (s.score, s.late_submission_penalty, s.total_seconds_late > 0)
               for s in gradebook.assignment_submissions(course.ASSIGNMENT)}
    assert got == {ALICE: (1, 0, False), BOB: (0, 0, False), DAVE: (1, 0, False), CAROL: (1, 1, True)}, got
    with open(term.directory / "grades.csv") as table:
        exported = {row["student_id"]: (float(row["raw_score"]), float(row["score"])) for row in csv.DictReader(table)}
    assert exported == {ALICE: (1, 1), BOB: (0, 0), DAVE: (1, 1), CAROL: (1, 0)}, exported  # Q1 right, but late: 0
    line = next(line for line in term.outputs["autograde"].stdout.splitlines() if line.startswith(f"{CAROL} "))
    assert line.split()[1:4] == ["0", "19", "graded"] and "late: -1 (nbgrader's late penalty)" in line, line  # the score nbgrader exports
    assert f"{CAROL}: " in term.outputs["feedback"].stdout and "score 0 of 19, late: -1" in term.outputs["feedback"].stdout


def test_release_feedback_finds_every_file_graders_feedback_wrote(term):
    written = sorted((term.directory / "feedback").glob(f"*/{course.ASSIGNMENT}/*.html"))
    assert len(written) == 7  # two notebooks each, Dave one
    released = term.server.exchange / course.COURSE_ID / "feedback"
    assert len(list(released.glob("*.html"))) == 7 and not list(released.glob("*-tmp.html"))
    assert "ERROR" not in term.outputs["release_feedback"].stderr, term.outputs["release_feedback"].stderr


def test_each_student_fetches_only_their_own_feedback_without_hidden_tests(term):
    for student, answer in ((ALICE, RIGHT), (BOB, WRONG), (CAROL, RIGHT), (DAVE, RIGHT)):
        feedback = fetched_feedback(term.server, student)
        assert CYL in feedback, term.outputs[f"fetch_feedback {student}"].stderr
        other = WRONG if answer == RIGHT else RIGHT
        assert answer in feedback[CYL] and other not in feedback[CYL], student
        assert ("307300" if answer == RIGHT else "307200") in feedback[CYL]  # what her answer cell printed
        assert "HIDDEN TESTS" not in feedback[CYL]
    assert sorted(fetched_feedback(term.server, DAVE)) == [CYL]


def test_a_student_cannot_list_or_read_the_others_work(term):
    run, exchange = term.server.run, term.server.exchange / course.COURSE_ID
    for folder in (exchange / "inbound", exchange / "feedback", term.server.home(ALICE), term.directory):
        assert run(BOB, "ls", str(folder), check=False).returncode != 0, folder


def test_wrong_modes_on_the_exchange_get_one_line_each_with_the_fix(term):
    inbound = term.server.exchange / course.COURSE_ID / "inbound"
    before = sorted(p.name for p in inbound.iterdir())
    try:
        term.server.exchange.chmod(0o755)
        inbound.chmod(0o2777)
        result = term.server.run(INSTRUCTOR, "python", "-m", "graders", "exchange", "check", cwd=term.directory, check=False)
    finally:
        term.server.exchange.chmod(0o1777)
        inbound.chmod(0o2733)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 2, result.stderr
    assert lines[0] == (f"error: exchange directory {term.server.exchange} has mode 0755, the instructor cannot create the "
                        f"course's folders in it: as root, run: chmod 1777 {term.server.exchange}")
    assert lines[1].startswith(f"error: {inbound} has mode 2777, not 2733") and lines[1].endswith(f"chmod 2733 {inbound}")
    assert sorted(p.name for p in inbound.iterdir()) == before  # checked, nothing changed


def test_a_hand_in_another_student_made_in_her_name_is_never_collected(term):
    """Bob makes a folder in inbound named as Alice's latest hand-in (a timestamp far ahead):
    nbgrader would collect it as hers with a warning; the course's collect leaves it, and says so."""
    run, inbound = term.server.run, term.server.exchange / course.COURSE_ID / "inbound"
    forged = inbound / f"{ALICE}+{course.ASSIGNMENT}+2099-01-01 00:00:00.000000 UTC"
    run(BOB, "cp", "-r", str(term.server.home(BOB) / course.ASSIGNMENT), str(forged))
    run(BOB, "sh", "-c", f"echo '2099-01-01 00:00:00.000000 UTC' > '{forged}/timestamp.txt'")
    mine = term.directory / "submitted" / ALICE / course.ASSIGNMENT
    before = (mine / "timestamp.txt").read_text()
    collected = run(INSTRUCTOR, "nbgrader", "collect", "--update", course.ASSIGNMENT, cwd=term.directory)
    assert f"claims to be {ALICE}'s hand-in but was made by {BOB}: not collected" in collected.stderr, collected.stderr
    assert (mine / "timestamp.txt").read_text() == before
    alice = course.read_notebook(mine / f"{CYL}.ipynb")
    assert RIGHT in next(c for c in alice.cells if c.get("id") == "q1_answer").source  # hers, not Bob's
    # it stays there: the watcher's tests below run beside it


# On-submit grading (`python -m graders watch`), after the term's batch: the due date moves a day on,
# one graded hand-in per student per WINDOW seconds, so the limit and its end are both seen here.
WINDOW = 40
CRASH = "import os\nos._exit(3)"


@pytest.fixture(scope="module")
def watched(term):
    """The term's course with on-submit grading: bob corrects his answer and hands in; the watcher runs once."""
    run, directory = term.server.run, term.directory
    due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    run(INSTRUCTOR, "nbgrader", "db", "assignment", "add", course.ASSIGNMENT, f"--duedate={due.isoformat()}", cwd=directory)
    with open(directory / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.GradersWatch.per_period = 1\nc.GradersWatch.period = {WINDOW}\nc.GradersWatch.interval = 1\n")
    submit(term.server, BOB, RIGHT, old=WRONG)
    started = time.monotonic()
    first = run(INSTRUCTOR, "python", "-m", "graders", "watch", course.ASSIGNMENT, "--once", cwd=directory)
    return term, first, started


def watch_once(term, directory: Path = None):
    return term.server.run(INSTRUCTOR, "python", "-m", "graders", "watch", course.ASSIGNMENT, "--once",
                           cwd=directory or term.directory)


def feedback_pages(directory: Path, student: str) -> dict:
    """{notebook: its feedback page as a student reads it} in the course's feedback/ folder."""
    return {path.stem: rendered(path.read_text()) for path in (directory / "feedback" / student / course.ASSIGNMENT).glob("*.html")}


def scores(term) -> dict:
    with Gradebook(f"sqlite:///{term.directory / 'gradebook.db'}", course.COURSE_ID) as gradebook:
        return {s.student_id: s.score for s in gradebook.assignment_submissions(course.ASSIGNMENT)}


def journal(term) -> list:
    path = term.directory / ".graders" / course.ASSIGNMENT / "watch.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_hand_in_is_graded_on_submit_and_its_preliminary_feedback_fetched(watched):
    term, first, _ = watched
    assert f"{BOB}: 1 of 19, graded" in first.stdout, first.stdout + first.stderr
    assert scores(term)[BOB] == 1
    term.server.run(BOB, "nbgrader", "fetch_feedback", course.ASSIGNMENT)
    pages = {path.stem: rendered(path.read_text()) for path in
             max((term.server.home(BOB) / course.ASSIGNMENT / "feedback").iterdir()).glob("*.html")}
    assert "Preliminary feedback" in pages[CYL] and RIGHT in pages[CYL] and "HIDDEN TESTS" not in pages[CYL]


def test_over_the_limit_a_hand_in_is_kept_and_says_when_the_next_is_graded(watched):
    term, _, started = watched
    submit(term.server, BOB, WRONG, old=RIGHT)
    first = max(entry["handed_in"] for _, entry in journal(term) if entry["student"] == BOB and entry.get("counted"))
    second = watch_once(term)
    latest = max(entry["handed_in"] for _, entry in journal(term) if entry["student"] == BOB)
    assert latest - first < WINDOW, f"{latest - first:.0f} s between his two hand-ins, over WINDOW: a slower machine"
    assert f"{BOB}: not graded now" in second.stdout, second.stdout + second.stderr
    assert scores(term)[BOB] == 1  # the gradebook keeps the graded one; the final batch grades the kept one
    kept = course.read_notebook(term.directory / "submitted" / BOB / course.ASSIGNMENT / f"{CYL}.ipynb")
    assert WRONG in next(c for c in kept.cells if c.get("id") == "q1_answer").source
    term.server.run(BOB, "nbgrader", "fetch_feedback", course.ASSIGNMENT)
    newest = max((term.server.home(BOB) / course.ASSIGNMENT / "feedback").iterdir())
    assert "not graded now" in (newest / f"{CYL}.html").read_text()
    time.sleep(max(0.0, WINDOW + 2 - (time.monotonic() - started)))  # the window of his graded hand-in (made before) ends
    submit(term.server, BOB, RIGHT, old=WRONG)
    third = watch_once(term)
    assert f"{BOB}: 1 of 19, graded" in third.stdout, third.stdout + third.stderr


def test_a_watcher_killed_mid_grading_resumes_and_grades_each_hand_in_once(watched):
    term, _, _ = watched
    server = term.server
    before = [entry["student"] for _, entry in journal(term)]  # the first run handled the term's hand-ins too
    twin = term.directory.parent / "course-uninterrupted"  # the course as it is now, for a watcher never killed
    subprocess.run(["cp", "-a", str(term.directory), str(twin)], check=True)
    submit(server, ALICE, WRONG, old=RIGHT)
    watcher = subprocess.Popen(server.as_account(INSTRUCTOR, "python", "-m", "graders", "watch", course.ASSIGNMENT),
                               cwd=term.directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    seen = []
    for line in watcher.stdout:  # it has collected and the batch is grading her
        seen.append(line)
        if "to grade" in line:
            break
    time.sleep(2)
    os.killpg(watcher.pid, signal.SIGKILL)
    watcher.wait()
    assert [entry["student"] for _, entry in journal(term)] == before, seen  # killed before her feedback was out
    submit(server, CAROL, WRONG, old=RIGHT)  # while no watcher runs
    again = watch_once(term)
    assert f"{ALICE}: 0 of 19, graded" in again.stdout and f"{CAROL}: 0 of 19, graded" in again.stdout, again.stdout
    handled = [entry["student"] for _, entry in journal(term)]
    assert sorted(handled[len(before):]) == sorted([ALICE, CAROL]), handled  # each new hand-in once
    assert " of 19, " not in watch_once(term).stdout  # nothing waits: nothing is graded again
    assert [entry["student"] for _, entry in journal(term)] == handled
    assert scores(term)[ALICE] == 0 and scores(term)[CAROL] == 0
    uninterrupted = watch_once(term, twin)  # the same two hand-ins, graded by one run that nobody killed
    assert f"{ALICE}: 0 of 19, graded" in uninterrupted.stdout and f"{CAROL}: 0 of 19, graded" in uninterrupted.stdout
    resumed, once = course.grades(term.directory), course.grades(twin)
    for student in (ALICE, CAROL):
        assert resumed[student] == once[student], student  # cell for cell
        assert feedback_pages(term.directory, student) == feedback_pages(twin, student), student


def test_a_hand_in_that_crashes_its_kernel_gets_its_status_and_the_others_go_on(watched):
    term, _, _ = watched
    latest = max(entry["handed_in"] for _, entry in journal(term) if entry["student"] == CAROL and entry.get("counted"))
    time.sleep(max(0.0, latest + WINDOW + 2 - time.time()))  # her last graded hand-in's window ends
    submit(term.server, DAVE, CRASH, old=RIGHT)
    submit(term.server, CAROL, RIGHT, old=WRONG)
    done = watch_once(term)
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith(PREFIX)}
    assert "kernel crashed" in lines[DAVE] and f"{CAROL}: 1 of 19, graded" in lines[CAROL], done.stdout
    term.server.run(DAVE, "nbgrader", "fetch_feedback", course.ASSIGNMENT)
    newest = max((term.server.home(DAVE) / course.ASSIGNMENT / "feedback").iterdir())
    assert "could not be graded: <strong>kernel crashed</strong>" in (newest / f"{CYL}.html").read_text()


def test_the_batch_and_two_watchers_at_once_grade_one_at_a_time_and_each_hand_in_once(watched):
    """The instructor's batch regrades while a hand-in arrives and two watchers look (a cron line and a
    terminal, say): each waits for the assignment's lock, so collect never replaces a folder the batch
    reads and the hand-in is graded once, after the batch."""
    term = watched[0]
    latest = max(entry["handed_in"] for _, entry in journal(term) if entry["student"] == ALICE and entry.get("counted"))
    time.sleep(max(0.0, latest + WINDOW + 2 - time.time()))  # her last graded hand-in's window ends
    before = len(journal(term))
    pipes = {"cwd": term.directory, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "start_new_session": True}
    batch = subprocess.Popen(term.server.as_account(INSTRUCTOR, "python", "-m", "graders", "autograde", course.ASSIGNMENT,
                                                    "--force", *(f"--student={s}" for s in (ALICE, BOB, CAROL)),
                                                    "--workers", "2", "--memory", "3G"), **pipes)
    seen = [next(line for line in batch.stdout if "to grade" in line)]
    os.killpg(batch.pid, signal.SIGSTOP)  # it holds the lock for as long as the test needs
    try:
        submit(term.server, ALICE, RIGHT, old=WRONG)
        watchers = [subprocess.Popen(term.server.as_account(INSTRUCTOR, "python", "-m", "graders", "watch", course.ASSIGNMENT,
                                                            "--once"), **pipes) for _ in range(2)]
        heard = [[next(line for line in watcher.stdout if "waiting:" in line or "new hand-in" in line)] for watcher in watchers]
    finally:
        os.killpg(batch.pid, signal.SIGCONT)
    rest, _ = batch.communicate(timeout=600)
    assert batch.returncode == 0 and f"{ALICE} " in rest, "".join(seen) + rest
    outputs = ["".join(lines) + watcher.communicate(timeout=600)[0] for lines, watcher in zip(heard, watchers)]
    assert all(line.startswith("waiting: the batch (python -m graders autograde lesson08) (pid ") for line, *_ in heard), heard
    assert sorted(f"{ALICE}: 1 of 19, graded" in output for output in outputs) == [False, True], outputs  # once
    assert [entry["student"] for _, entry in journal(term)[before:]] == [ALICE]
    assert scores(term)[ALICE] == 1  # her new hand-in, graded after the batch graded the one before


def test_after_the_due_date_the_watcher_grades_nothing_and_says_so(watched):
    term, _, _ = watched
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    term.server.run(INSTRUCTOR, "nbgrader", "db", "assignment", "add", course.ASSIGNMENT, f"--duedate={past.isoformat()}",
                    cwd=term.directory)
    submit(term.server, DAVE, RIGHT, old=CRASH)
    done = watch_once(term)
    assert "on-submit grading has stopped" in done.stdout and " of 19, " not in done.stdout, done.stdout
