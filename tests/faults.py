"""Fault injection's ground, for tests/test_faults.py and bench/faults.py: a tiny class (the
lesson09 of test_second_assignment: no TensorFlow, seconds per student), the grader run as
`python -m graders autograde` in a process group of its own, killed with everything it started,
and a snapshot of everything a grading leaves, to compare with an uninterrupted run."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

import course
import test_second_assignment as tiny
from graders.course.coursedir import Course

ASSIGNMENT = tiny.ASSIGNMENT
WRONG = "squares = [n * 2 for n in range(5)]\n"
SLEEPER = "import time\ntime.sleep(6)  # keeps work in flight when the grader is killed\n" + tiny.ANSWER
VOLATILE = {"seconds", "cpu_seconds", "peak_memory_bytes", "notebooks", "machine"}  # measured, not graded


def make_class(directory: Path, students: int, sleepers: int = 1) -> list:
    """The tiny course with `students` hand-ins: every 3rd wrong, the first `sleepers` sleep 6 s."""
    (directory / "source" / ASSIGNMENT).mkdir(parents=True)
    (directory / "nbgrader_config.py").write_text(tiny.CONFIG)
    nbformat.write(tiny.squares_notebook(), str(directory / "source" / ASSIGNMENT / "squares.ipynb"))
    course.nbgrader(directory, "generate_assignment", ASSIGNMENT)
    names = [f"student{number:04d}" for number in range(students)]
    for number, name in enumerate(names):
        answer = SLEEPER if number < sleepers else WRONG if number % 3 == 2 else tiny.ANSWER
        course.submit(directory, name, {"squares": tiny.squares_notebook(answer)}, assignment=ASSIGNMENT)
    return names


def command(directory: Path, *extra: str) -> list:
    return [sys.executable, "-m", "graders", "autograde", ASSIGNMENT, "--course", str(directory), "--workers", "2",
            "--timeout", "120", "--memory", "1G", *extra]


def start(directory: Path, log: Path, *extra: str) -> subprocess.Popen:
    """The grader in a process group of its own (its sandboxes start sessions of their own)."""
    with open(log, "ab") as output:
        return subprocess.Popen(command(directory, *extra), stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def _children() -> dict:
    """{parent pid: [child pids]} of every process now."""
    tree = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> set:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_everything(process: subprocess.Popen) -> set:
    """SIGKILL the grader and every process it started, as the OOM killer or a power cut would
    leave them: stopped first (no new child escapes), then killed at once. Returns their pids."""
    frozen = set()
    for _ in range(20):  # until no new descendant appears
        found = ({process.pid} | descendants(process.pid)) - frozen
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        frozen |= found
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    return frozen


def killed_at_random(directory: Path, log: Path, kills: int, longest: float, seed: int) -> tuple:
    """Start the grader, SIGKILL it and its processes at a random instant, again, `kills` times
    (a run that ends first counts no kill); then the same command to the end.
    (kills, the final exit status, the pids killed)."""
    chance, done, killed = random.Random(seed), 0, set()
    while done < kills:
        process = start(directory, log)
        deadline = time.monotonic() + chance.uniform(1.0, max(1.5, longest / 2))
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is not None:  # finished before its instant: the class is done
            return done, process.returncode, killed
        killed |= kill_everything(process)
        done += 1
        with open(log, "a") as output:
            output.write(f"\n--- killed at random (kill {done}) ---\n")
    final = start(directory, log)
    return done, final.wait(timeout=600), killed


def snapshot(directory: Path) -> dict:
    """Everything a grading leaves that must not depend on kills: the gradebook (every grade,
    score, comment and checksum, its row ids aside), the journal (one line per student, timings
    aside), autograded/ and feedback/ (execution timestamps aside)."""
    directory = Path(directory)
    return {"gradebook": gradebook(directory), "journal": journal(directory),
            "autograded": tree(directory / "autograded"), "feedback": tree(directory / "feedback")}


def _plain(row: dict) -> dict:
    return {key: value for key, value in row.items() if key != "id" and not key.endswith("_id")}


def gradebook(directory: Path) -> dict:
    found = {}
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", "tiny") as gb:
        for notebook in gb.find_assignment(ASSIGNMENT).notebooks:
            for cell in [*notebook.source_cells, *notebook.grade_cells]:
                found[f"source {notebook.name}/{cell.name}/{type(cell).__name__}"] = _plain(cell.to_dict())
        for submission in gb.assignment_submissions(ASSIGNMENT):
            found[submission.student_id] = _plain(submission.to_dict())
            for notebook in submission.notebooks:
                for item in [*notebook.grades, *notebook.comments]:
                    found[f"{submission.student_id} {notebook.name}/{item.name}/{type(item).__name__}"] = _plain(item.to_dict())
    return found


def journal(directory: Path) -> dict:
    """{student: its entry without measurements}; fails if a student has more than one line."""
    state = Course(directory).state(ASSIGNMENT)
    lines = [json.loads(line)[0] for line in state.path.read_text().splitlines() if line.strip()]
    twice = sorted({student for student in lines if lines.count(student) > 1})
    assert not twice, f"graded more than once in the journal: {twice}"
    return {student: {**entry, "result": {k: v for k, v in entry["result"].items() if k not in VOLATILE},
                      "exports": _kept(directory, student, entry.get("exports", ""))}
            for student, entry in state.load().items()}


def _kept(directory: Path, student: str, digest: str) -> str:
    """The journal's digest of a student's kept exports (graders.grading.recheck) as "kept" when it is
    the manifest's on disk, so a recheck after the kill would find them: the digest itself differs
    from run to run (the kept notebook holds its cells' execution timestamps)."""
    if not digest:
        return ""
    manifest = Course(directory).work(ASSIGNMENT) / "exports" / student / "manifest.json"
    return "kept" if manifest.is_file() and hashlib.sha256(manifest.read_bytes()).hexdigest() == digest else "not the manifest"


def tree(folder: Path) -> dict:
    """{relative path: sha256}; a notebook's cells' execution timestamps left out."""
    found = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file():
            content = path.read_bytes()
            if path.suffix == ".ipynb":
                notebook = json.loads(content)
                for cell in notebook.get("cells", []):
                    cell.get("metadata", {}).pop("execution", None)
                content = json.dumps(notebook, sort_keys=True).encode()
            found[str(path.relative_to(folder))] = hashlib.sha256(content).hexdigest()
    return found


def leftovers(directory: Path, killed: set) -> list:
    """What a finished class must not leave: a stage, a killed process alive, a killed grader's
    cgroup (others' may exist: engineers share this machine)."""
    left = [str(p) for p in (Path(directory) / ".graders" / ASSIGNMENT / "stage").glob("*")]
    left += [f"pid {pid}" for pid in killed if Path(f"/proc/{pid}").exists()]
    left += [str(p) for pid in killed for p in Path("/sys/fs/cgroup").glob(f"**/onions-{pid}-*")]
    return left


def feedback(directory: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "graders", "feedback", ASSIGNMENT, "--course", str(directory)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"graders feedback exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}"


def copy(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target, symlinks=True))
