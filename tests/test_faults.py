"""Crash safety by fault injection (issue 25), on a tiny class of cheap students (tests/faults.py):

- the grader and every process it started SIGKILLed at random instants, then the same command
  until done: gradebook, journal, autograded/ and feedback equal to an uninterrupted run's;
- the course on a small tmpfs that fills while grading (root): one line naming the disk,
  nothing graded lost, the same command completes identically once space is freed;
- a TA saving grades and comments through Formgrader's API while the batch regrades the same
  gradebook: no "database is locked" in a status, no TA edit lost.
The long loops (many kills, 2,000 students) are bench/faults.py and bench/main_process.py.
"""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

import faults
from test_formgrader import free_port, wait_until_answers

STUDENTS = 8


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The class, and a copy of it graded without interruption (with its feedback)."""
    root = tmp_path_factory.mktemp("faults")
    pristine = root / "pristine"
    names = faults.make_class(pristine, STUDENTS)
    graded = faults.copy(pristine, root / "clean")
    started = time.monotonic()
    process = faults.start(graded, root / "clean.log")
    assert process.wait(timeout=600) == 0, (root / "clean.log").read_text()[-3000:]
    seconds = time.monotonic() - started
    faults.feedback(graded)
    return pristine, names, faults.snapshot(graded), seconds, graded


def test_killed_at_random_instants_the_same_command_ends_identical(clean_run, tmp_path):
    pristine, names, expected, seconds, _ = clean_run
    directory = faults.copy(pristine, tmp_path / "course")
    kills, status, killed = faults.killed_at_random(directory, tmp_path / "grader.log", kills=3, longest=seconds, seed=25)
    assert status == 0, (tmp_path / "grader.log").read_text()[-3000:]
    faults.feedback(directory)
    print(f"{kills} kills survived ({len(killed)} processes killed)")
    got = faults.snapshot(directory)
    assert set(got["journal"]) == set(names)
    for part in expected:
        assert got[part] == expected[part], part
    assert not faults.leftovers(directory, killed)


@pytest.mark.skipif(os.geteuid() != 0, reason="a size-limited tmpfs needs root")
def test_a_full_disk_stops_in_one_line_and_the_same_command_completes_identically(clean_run, tmp_path):
    pristine, names, expected, _, _ = clean_run
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "onions-faults", str(mount)], check=True)
    try:
        directory = faults.copy(pristine, mount / "course")
        ballast, journal = mount / "ballast", directory / ".graders" / faults.ASSIGNMENT / "state.jsonl"
        grader = subprocess.Popen(faults.command(directory), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while grader.poll() is None and not (journal.exists() and journal.read_text().count("\n") >= 2):
            time.sleep(0.05)
        with open(ballast, "wb", buffering=0) as filler:  # the disk fills while grading
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        stdout, stderr = grader.communicate(timeout=600)
        process = subprocess.CompletedProcess(grader.args, grader.returncode, stdout, stderr)
        lines = process.stderr.strip().splitlines()
        assert process.returncode == 1 and len(lines) == 1 and "is full" in lines[0] and str(mount) in lines[0], process.stderr
        with sqlite3.connect(directory / "gradebook.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        before = faults.journal(directory)
        assert before, "nothing was graded before the disk filled: give it more room"
        ballast.unlink()
        assert subprocess.run(faults.command(directory), capture_output=True, timeout=600).returncode == 0
        faults.feedback(directory)
        got = faults.snapshot(directory)
        assert {s: e for s, e in got["journal"].items() if s in before} == before  # nothing graded lost
        for part in expected:
            assert got[part] == expected[part], part
        print(f"1 disk-full event survived ({len(before)} graded before it): {lines[0]}")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class Formgrader:
    """A Jupyter server with nbgrader's formgrader on `directory`, as tests/test_formgrader.py starts it."""

    def __init__(self, directory: Path, folder: Path):
        self.token, self.port = os.urandom(16).hex(), free_port()
        self.base, log = f"http://127.0.0.1:{self.port}", folder / "jupyter-server.log"
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(folder / "runtime"), JUPYTER_CONFIG_DIR=str(folder / "config"))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = [sys.executable, "-m", "jupyter", "server", "--ip=127.0.0.1", f"--port={self.port}", "--no-browser",
                   "--allow-root", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={directory}"]
        with open(log, "w") as output:
            self.server = subprocess.Popen(command, cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT)
        wait_until_answers(f"{self.base}/formgrader/manage_assignments?token={self.token}", self.server, log)
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.opener.open(f"{self.base}/formgrader?token={self.token}", timeout=30).read()  # sets _xsrf
        self.xsrf = next(cookie.value for cookie in self.cookies if cookie.name == "_xsrf")

    def put(self, kind: str, item_id: str, body: dict) -> int:
        request = urllib.request.Request(f"{self.base}/formgrader/api/{kind}/{item_id}", method="PUT",
                                         data=json.dumps(body).encode(),
                                         headers={"X-XSRFToken": self.xsrf, "Authorization": f"token {self.token}"})
        with self.opener.open(request, timeout=60) as response:
            return response.status

    def stop(self):
        self.server.terminate()
        try:
            self.server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


def test_a_ta_grading_in_formgrader_while_the_batch_regrades_loses_nothing(clean_run, tmp_path):
    _, names, _, _, graded = clean_run
    directory = faults.copy(graded, tmp_path / "course")
    journal = directory / ".graders" / faults.ASSIGNMENT / "state.jsonl"
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", "tiny") as gb:
        cells = {s.student_id: (s.notebooks[0].grades[0].id, s.notebooks[0].comments[0].id)
                 for s in gb.assignment_submissions(faults.ASSIGNMENT)}
    server = Formgrader(directory, tmp_path)
    written, failures, overlapping = {}, [], []
    try:
        batch = faults.start(directory, tmp_path / "regrade.log", "--force")  # rewrites every student's grades

        def ta():
            while batch.poll() is None and journal.read_text().count("\n") <= len(names):
                time.sleep(0.05)  # until the batch writes the gradebook: its first regrade is recorded
            for round_ in range(4):
                for number, student in enumerate(names):
                    grade_id, comment_id = cells[student]
                    score, comment = (number + round_) % 3, f"round {round_}: seen by the TA"
                    try:
                        server.put("grade", grade_id, {"manual_score": score})
                        server.put("comment", comment_id, {"manual_comment": comment})
                        written[student] = (score, comment)
                        overlapping.append(batch.poll() is None)
                    except Exception as error:
                        failures.append(f"{student}: {error}")
        writer = threading.Thread(target=ta)
        writer.start()
        writer.join(timeout=300)
        assert batch.wait(timeout=600) == 0, (tmp_path / "regrade.log").read_text()[-3000:]
    finally:
        server.stop()
    assert not failures, failures[:3]
    assert sum(overlapping) >= len(names), "the TA's writes did not overlap the batch's"
    assert "locked" not in (tmp_path / "regrade.log").read_text()
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", "tiny") as gb:
        for student, (score, comment) in written.items():
            grade, note = gb.find_grade_by_id(cells[student][0]), gb.find_comment_by_id(cells[student][1])
            assert (grade.manual_score, note.manual_comment) == (score, comment), student
            assert grade.auto_score is not None
    print(f"{2 * len(overlapping)} Formgrader writes, {2 * sum(overlapping)} while the batch regraded; none lost")


def test_a_line_torn_by_a_kill_costs_only_itself(tmp_path):
    """Without closing the torn line first, the next student's good line was glued to it and lost."""
    from graders.course.coursedir import BatchState

    state = BatchState(tmp_path)
    state.record("a", {"status": "graded"})
    with open(state.path, "a") as journal:
        journal.write('["b", {"status": "gra')  # the grader killed mid-write
    state.record("c", {"status": "graded"})
    assert set(state.load()) == {"a", "c"}


def slow_task(token, student, files, notebooks, settings):
    """run_task's stand-in: a student who takes a moment."""
    import time as clock

    from graders.course.status import Status
    from graders.grading.executor import Execution

    clock.sleep(0.05)
    return Execution(Status.GRADED, student), {}


def test_the_dask_window_sends_at_most_its_size_and_yields_everyone_once(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from graders.grading import cluster
    from graders.grading.executor import Job

    monkeypatch.setattr(cluster, "run_task", slow_task)
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "squares.ipynb").write_text("{}")
    resources = {cluster.MEMORY: 1 << 30, cluster.code_resource(): 2}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, resources=resources, dashboard_address=None) as dask, \
            Client(dask) as client:
        pool = cluster.DaskPool(client, {}, 1 << 30, window=3)
        seen, most = [], 0
        for number in range(12):
            pool.add(Job(f"s{number:02d}", tmp_path / "prepared", ["squares"]))
            most = max(most, len(pool.jobs))
            seen += [job.student for job, _ in pool.finished(wait=False)]
        pool.close()
        seen += [job.student for job, execution in pool.finished()]
        assert most <= 3 and sorted(seen) == [f"s{number:02d}" for number in range(12)]
