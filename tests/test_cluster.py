"""Grading on a Dask cluster (`autograde --scheduler`, `python -m graders worker`): a real
`dask scheduler` on 127.0.0.1 and real workers, each its own process group, as on N machines.

The demo class and part of the bad-submission corpus are graded once through the scheduler
while one worker is SIGKILLed holding a student; everything is compared with the local pool's
grades of the same hand-ins (the demo_class and batch_class fixtures).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import corpus
import course
from graders.course.coursedir import BatchState
from graders.course.status import SCORED
from graders.grading import batch, cluster
from graders.isolation import limiters, sandbox

CHEAP = ["invalid-json", "missing-notebook", "deleted-test-cell", "os-exit", "edited-locked-cells"]  # from the corpus
LIMITS = ["--timeout", "300", "--memory", "3G"]


class Cluster:
    """A scheduler and workers on this machine; a worker is killed by its process group."""

    def __init__(self, folder: Path, course_dir: Path, tls: dict = None):
        self.folder, self.course_dir, self.workers, self.tls = folder, course_dir, [], tls or {}
        self.file = folder / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(self.file), *self.tls_options(),
             *(["--protocol", "tls"] if tls else [])],
            stdout=open(folder / "scheduler.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if self.file.is_file() and self.file.stat().st_size:
                break
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]

    def start_worker(self, name: str, cwd: Path = None, wait: bool = True):
        log = self.folder / f"{name}.log"
        worker = subprocess.Popen([sys.executable, "-m", "graders", "worker", "--scheduler-file", str(self.file),
                                   "--cores", "1", "--name", name, "--course", str(self.course_dir), *self.tls_options()],
                                  cwd=cwd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            with self.client() as client:
                deadline = time.monotonic() + 120
                while name not in {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}:
                    assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                    time.sleep(0.2)
            self.workers.append(worker)
        return worker, log

    def tls_options(self) -> list:
        return [arg for option, path in self.tls.items() for arg in (f"--{option.replace('_', '-')}", path)]

    def client(self):
        return cluster.connect(self.address, self.tls)

    def autograde(self, course_dir: Path, *args, **popen):
        command = [sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, "--course", str(course_dir),
                   "--scheduler-file", str(self.file), *LIMITS, *self.tls_options(), *args]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)

    def stop(self):
        for process in [*self.workers, self.scheduler]:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def executing(dask_worker=None):
    """Run on each worker: the keys of the tasks it is running."""
    return [str(key) for key in dask_worker.state.executing]


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


def sandbox_leftovers() -> list:
    """As root: processes of the sandbox user, and cgroups whose maker died."""
    if os.geteuid() != 0:
        return []
    processes = subprocess.run(["pgrep", "-u", "onions-sandbox"], capture_output=True, text=True).stdout.split()
    cgroups = [str(p) for parent in limiters.cgroup_parents() for p in parent.glob("onions-*-*")  # where the sweep looks
               if p.name.split("-")[1].isdigit() and not limiters.alive(int(p.name.split("-")[1]))]
    return processes + cgroups


def hand_in(directory: Path, demo_dir: Path) -> dict:
    """A new course with the demo class's hand-ins and the CHEAP corpus students: {student: expected status}."""
    course.copy_course(directory)
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    shutil.copytree(demo_dir / "submitted", directory / "submitted")
    bad = {student: entry for student, entry in corpus.build(directory).items() if student in CHEAP}
    corpus.write(directory, bad)
    return {student: status for student, (_, status) in bad.items()}


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, demo_class):
    folder = tmp_path_factory.mktemp("cluster")
    running = Cluster(folder, demo_class[0])
    try:
        running.start_worker("worker-a")
        running.start_worker("worker-b")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cheap_local(tmp_path_factory, demo_class):
    """The CHEAP corpus students graded by the local pool (the demo's are in demo_class)."""
    directory = tmp_path_factory.mktemp("cheap-local") / "course"
    hand_in(directory, demo_class[0])
    results = batch.Batch(directory, course.ASSIGNMENT, sandbox.Limits(wall_seconds=300, memory_bytes=3 << 30), workers=2).run(CHEAP)
    return directory, {r.student: r for r in results}


@pytest.fixture(scope="module")
def cluster_class(tmp_path_factory, dask_cluster, demo_class):
    """The demo class (but demo-mixed: one student who trains is enough here) and the CHEAP corpus
    students graded through the scheduler, one worker SIGKILLed while it runs the demo's
    reference student (which trains for minutes)."""
    directory = tmp_path_factory.mktemp("cluster-class") / "course"
    bad = hand_in(directory, demo_class[0])
    shutil.rmtree(directory / "submitted" / "demo-mixed")
    grading = dask_cluster.autograde(directory)
    killed = None
    with dask_cluster.client() as client:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and grading.poll() is None:
            for address, keys in client.run(executing).items():
                if any("demo-reference" in key for key in keys):
                    time.sleep(5)  # its sandbox is up and training
                    pgid = client.run(os.getpgrp, workers=[address])[address]
                    names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
                    pids = client.run(os.getpid, workers=[address])[address]
                    killed = (names[address], pgid, pids)
                    os.killpg(pgid, signal.SIGKILL)
                    break
            time.sleep(0.5)
    output, _ = grading.communicate(timeout=1800)
    assert killed, f"no worker was ever seen running demo-reference:\n{output}"
    dask_cluster.start_worker("worker-c")  # the cluster is whole again for the next tests
    return directory, grading.returncode, output, killed, bad


def test_the_cluster_grades_like_the_local_pool_cell_for_cell(cluster_class, demo_class, cheap_local):
    directory, returncode, output, _, bad = cluster_class
    assert returncode == 1, output  # the demo and the corpus hold students that cannot be graded
    graded, local = course.grades(directory), {**course.grades(demo_class[0]), **course.grades(cheap_local[0])}
    students = sorted(s for s in demo_class[1] if s != "demo-mixed") + sorted(bad)
    state = BatchState(directory / ".graders" / course.ASSIGNMENT).load()
    for student in students:
        expected = {**demo_class[1], **cheap_local[1]}[student].status
        assert state[student]["status"] == expected == bad.get(student, expected), (student, state[student], output)
        assert graded.get(student) == local.get(student), student
    assert "demo-reference" in graded and graded["demo-reference"] == local["demo-reference"]
    lines = output.splitlines()
    header = [line for line in lines if not line.startswith("made this course's grading secret")][0]  # a new course's first line
    assert "on the Dask cluster at tcp://127.0.0.1:" in header
    summary = {line.split()[0]: line for line in lines if line.split()[:1] and line.split()[0] in students}
    assert "machine" in next(line for line in lines if line.startswith("student"))
    assert f" {socket.gethostname()} " in summary["demo-reference"] and " - " in summary["demo-broken"]  # never executed


def test_a_worker_killed_mid_student_loses_nothing_and_grades_everyone_once(cluster_class):
    directory, _, output, (name, pgid, pid), _ = cluster_class
    journal = (directory / ".graders" / course.ASSIGNMENT / "state.jsonl").read_text().splitlines()
    recorded = [json.loads(line)[0] for line in journal if line.strip()]
    assert len(recorded) == len(set(recorded)), recorded  # each student recorded once
    progress = [line for line in output.splitlines() if line.startswith("[")]
    assert len(progress) == len(set(recorded)) and sum("demo-reference:" in line for line in progress) == 1, output
    assert "demo-reference: graded" in output
    assert course.grades(directory).keys() >= set(recorded) - {"demo-broken", "invalid-json"}
    assert not sandbox_leftovers(), sandbox_leftovers()
    assert not list(Path("/sys/fs/cgroup").glob(f"**/onions-{pid}-*")), "the killed worker's cgroups are left"


def test_plain_tcp_off_the_loopback_is_refused_before_anything_is_sent(tmp_path):
    for command in (["autograde", course.ASSIGNMENT, "--scheduler", "tcp://10.11.12.13:8786"],
                    ["worker", "tcp://10.11.12.13:8786"], ["worker", "10.11.12.13:8786"]):
        result = subprocess.run([sys.executable, "-m", "graders", *command], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 1, result
        assert result.stderr.startswith("error: refusing ") and "tls://" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = subprocess.run([sys.executable, "-m", "graders", "worker", "tls://10.11.12.13:8786"], capture_output=True, text=True)
    assert result.returncode == 1 and "needs --tls-ca-file, --tls-cert and --tls-key" in result.stderr, result.stderr


def test_a_worker_with_other_code_is_refused(dask_cluster, cluster_class, tmp_path):
    changed = tmp_path / "graders"
    shutil.copytree(Path(cluster.__file__).parents[1], changed, ignore=shutil.ignore_patterns("__pycache__"))
    with open(changed / "course" / "status.py", "a") as file:
        file.write("\n# a different version of the grader\n")
    worker, log = dask_cluster.start_worker("worker-changed", cwd=tmp_path, wait=False)
    assert worker.wait(timeout=120) == 1, log.read_text()
    said = log.read_text().strip()
    assert said.startswith("error: this machine's code or pins") and "scripts/setup" in said and len(said.splitlines()) == 1, said


def test_ctrl_c_stops_the_workers_sandboxes_and_the_same_command_resumes(dask_cluster, cluster_class, demo_class, tmp_path):
    directory = tmp_path / "course"
    hand_in(directory, demo_class[0])
    for trains in ("demo-reference", "demo-mixed"):  # no training here
        shutil.rmtree(directory / "submitted" / trains)
    students = sorted(p.name for p in (directory / "submitted").iterdir())
    grading = dask_cluster.autograde(directory)
    seen = []
    for line in grading.stdout:
        seen.append(line)
        if line.startswith("[") and " on " in line:  # a student graded by a worker: others are running
            grading.send_signal(signal.SIGINT)
            break
    rest, _ = grading.communicate(timeout=120)
    assert grading.returncode == 130 and "run the same command again to resume" in rest, "".join(seen) + rest
    time.sleep(2)
    assert not sandbox_leftovers(), sandbox_leftovers()
    before = BatchState(directory / ".graders" / course.ASSIGNMENT).load()
    assert 1 <= len(before) < len(students)
    skipped = sum(entry["status"] in SCORED for entry in before.values())  # the others are tried again
    again = dask_cluster.autograde(directory)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 1, output
    assert f"{len(students) - skipped} to grade, {skipped} skipped" in output.splitlines()[0], output
    state = BatchState(directory / ".graders" / course.ASSIGNMENT).load()
    assert sorted(state) == students
    assert state["demo-partial"]["status"] == "graded" and state["demo-crash"]["status"] == "kernel crashed"


def test_tls_between_scheduler_workers_and_grader_as_the_readme_says(tmp_path, demo_class):
    """The README's openssl commands make a private authority and a node's certificate."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", "365", "-subj", "/CN=onions-ca", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:3072", "-nodes", "-subj", "/CN=node", "-keyout", "node.key", "-out", "node.csr")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "365", "-out", "node.pem")
    tls = {"tls_ca_file": str(tmp_path / "ca.pem"), "tls_cert": str(tmp_path / "node.pem"), "tls_key": str(tmp_path / "node.key")}
    directory = tmp_path / "course"
    hand_in(directory, demo_class[0])
    secure = Cluster(tmp_path, directory, tls)
    try:
        assert secure.address.startswith("tls://127.0.0.1:")
        secure.start_worker("worker-tls")
        grading = secure.autograde(directory, "--student", "demo-partial")
        output, _ = grading.communicate(timeout=600)
        assert grading.returncode == 0 and "on the Dask cluster at tls://127.0.0.1:" in output, output
        assert course.grades(directory)["demo-partial"] == course.grades(demo_class[0])["demo-partial"]
    finally:
        secure.stop()


def test_losing_the_scheduler_stops_the_batch_in_a_line_and_keeps_what_is_graded(tmp_path, demo_class):
    directory = tmp_path / "course"
    hand_in(directory, demo_class[0])
    for student in (directory / "submitted").glob("demo-*"):  # the CHEAP corpus and two of the demo's are enough
        if student.name not in ("demo-partial", "demo-blank"):
            shutil.rmtree(student)
    students = sorted(p.name for p in (directory / "submitted").iterdir())
    (tmp_path / "first").mkdir()
    first = Cluster(tmp_path / "first", directory)
    try:
        first.start_worker("worker-first")
        grading = first.autograde(directory)
        seen = []
        for line in grading.stdout:
            seen.append(line)
            if line.startswith("[") and " on " in line:
                os.killpg(first.scheduler.pid, signal.SIGKILL)
                break
        rest, _ = grading.communicate(timeout=300)
    finally:
        first.stop()
    said = [line for line in rest.splitlines() if line.startswith("error:")]
    assert grading.returncode == 1 and len(said) == 1 and "lost the Dask scheduler" in said[0], "".join(seen) + rest
    assert "Traceback" not in rest, rest
    kept = BatchState(directory / ".graders" / course.ASSIGNMENT).load()
    assert kept and all(entry["status"] != "execution failed" for entry in kept.values()), kept
    (tmp_path / "second").mkdir()
    second = Cluster(tmp_path / "second", directory)
    try:
        second.start_worker("worker-second")
        again = second.autograde(directory)
        output, _ = again.communicate(timeout=600)
    finally:
        second.stop()
    skipped = sum(entry["status"] in SCORED for entry in kept.values())  # scored and unchanged: skipped
    assert f"{len(students) - skipped} to grade, {skipped} skipped" in output.splitlines()[0], output
    assert sorted(BatchState(directory / ".graders" / course.ASSIGNMENT).load()) == students
