"""Autograde a whole class: nbgrader's Autograde for everything but execution, run N at a time.

Per student, in this one process (the only one that touches the gradebook):
  1. prepare: nbgrader's Autograde with no autograde steps overwrites the locked and test cells
     from the gradebook, ... into a staging folder;
  2. execute: a pool (graders.grading.executor's LocalPool: sandboxes on this machine; or
     graders.grading.cluster's DaskPool: the same on a cluster's workers) runs the prepared notebooks
     and leaves the executed ones beside them;
  3. grade: nbgrader's Autograde runs again for real, its Execute step replaced by
     StagedExecute, which takes the outputs of step 2; grades, checksums, late penalties stay nbgrader's.
A student is recorded in the batch state only once step 3 is done, so an interrupted batch
resumes where it stopped, and an unchanged, graded submission is skipped.
"""
import functools
import hashlib
import json
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.preprocessors import Execute

from graders import data
from graders.course import gradingsplit
from graders.course.coursedir import Course, CourseError, DiskFull
from graders.course.plain import plain, plain_data
from graders.course.status import SCORED, Status
from graders.grading import recheck
from graders.grading.executor import Execution, Job, LocalPool, SandboxExecutor
from graders.grading.settings import GradersBatch, font_files, thread_env
from graders.grading.steps import NbgraderSteps
from graders.isolation import sandbox


@dataclass
class Result:
    student: str
    status: str
    detail: str = ""
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the student's sandbox, all notebooks
    peak_memory_bytes: int = 0  # of the student's sandbox
    notebooks: dict = field(default_factory=dict)  # name -> wall_seconds, cpu_seconds (its kernel's), check_...
    machine: str = ""  # the cluster worker's host that ran it (empty: this machine)
    diagnoses: dict = field(default_factory=dict)  # "notebook:grade id" -> {misconception, hint, value}
    foreign_cells: list = field(default_factory=list)  # nbgrader's warnings of graders.grading.execute.DropForeignCells


def fingerprint(course: Course, assignment: str, student: str, limits: sandbox.Limits, shared: bytes = None) -> str:
    """What a grade depends on: the submission, the assignment's source, the configuration, the limits.
    `shared`: `assignment_files(course, assignment)` if already read (it is the same for every student)."""
    digest = hashlib.sha256()
    for path in _files(course.folder("submitted", assignment, student)):
        digest.update(_hashed(course, path))
    digest.update(assignment_files(course, assignment) if shared is None else shared)
    digest.update(json.dumps({k: float(v) for k, v in asdict(limits).items()}, sort_keys=True).encode())
    return digest.hexdigest()


def assignment_files(course: Course, assignment: str) -> bytes:
    """The source folder and nbgrader_config.py as the fingerprint hashes them, after the submission."""
    paths = _files(course.folder("source", assignment)) + [course.root / "nbgrader_config.py"]
    return b"".join(_hashed(course, path) for path in paths)


def _files(folder: Path) -> list:
    return [path for path in sorted(folder.rglob("*")) if path.is_file()]


def _hashed(course: Course, path: Path) -> bytes:
    return str(path.relative_to(course.root)).encode() + b"\0" + path.read_bytes() + b"\0"


class CtrlC:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered: raised where a library
    swallows it (seen once, mid-preparation, on a cluster), `check` raises it again at the next
    student. Only on the main thread, where signals are ours."""

    def __init__(self):
        self.seen, self.previous = False, None

    def __enter__(self):
        self.seen = False
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self.interrupt)
        return self

    def interrupt(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class Batch:
    def __init__(self, course: Path, assignment: str, limits: sandbox.Limits, workers: int,
                 use_sandbox: bool = True, force: bool = False, log=print, cluster=None, recheck: bool = False):
        """`cluster`: (scheduler address, TLS files) to execute on a Dask cluster (graders.grading.cluster);
        `recheck`: regrade everyone, running only the hidden checks where the kept exports allow
        (graders.grading.recheck), else in full."""
        if recheck and cluster:
            raise CourseError("--recheck runs on this machine: leave out --scheduler (the checks take seconds)")
        self.course, self.assignment, self.limits = Course(course), assignment, limits
        self.workers, self.force, self.log, self.cluster = workers, force or recheck, log, cluster
        self.recheck, self.jobs, self.modes, self.produced_by, self.exports, self.kept = recheck, {}, {}, {}, {}, {}
        self.carried = {}  # student -> the diagnoses of the checks a recheck does not run again
        self.ctrl_c = CtrlC()
        self.foreign = {}  # student -> the foreign cells nbgrader's preparation graded as ordinary ones
        self.isolation = sandbox.choose(use_sandbox)
        self.settings = GradersBatch(config=self.course.config)
        self.state = self.course.state(assignment)
        self.nbgrader = NbgraderSteps(self.course, assignment, self.settings.max_notebook_bytes, self.settings.max_cells)
        # one cell timeout: nbgrader's Execute.timeout, within the notebook's
        self.cell_timeout = min(int(Execute(config=self.course.config).timeout or 30), int(limits.wall_seconds))

    def run(self, wanted=None) -> list:
        self.course.check_assignment(self.assignment)
        if not self.cluster:  # else each worker checks its own machine before it joins
            self.isolation.check()
            for name in self.settings.datasets:  # the students' view
                data.load_view(name)
        self.secret = gradingsplit.course_secret(self.course.root, self.settings.grading_secret_file, self.log)
        self.grading = gradingsplit.build(self.secret, () if self.cluster else self.settings.datasets)
        state, students = self.state.load(), sorted(wanted) if wanted else self.course.students(self.assignment)
        self.kept = {student: entry.get("exports", "") for student, entry in state.items()}  # manifest digests
        if not students:
            raise CourseError(f"no submissions in {self.course.root / self.course.directory.submitted_directory}/*/"
                              f"{self.assignment}: hand-ins go in submitted/<student>/<assignment>/")
        results, todo = {}, []
        for student in students:
            known = state.get(student, {})
            if not self.course.folder("submitted", self.assignment, student).is_dir():
                results[student] = Result(student, Status.MISSING_SUBMISSION, f"no submitted/{student}/{self.assignment}")
            elif not self.force and known.get("status") in SCORED and known.get("fingerprint") == self.fingerprint(student):
                # scored (graded, or a notebook missing ...): the same submission would score the same
                detail = "; ".join(filter(None, ["unchanged since last graded", known["result"].get("detail")]))
                results[student] = Result(**{**known["result"], "detail": detail})
            else:
                todo.append(student)
        expected = {name: run["wall_seconds"] for entry in state.values()
                    for name, run in entry.get("result", {}).get("notebooks", {}).items() if "wall_seconds" in run}
        pool = self.cluster_pool() if self.cluster else LocalPool(self.executor(), self.workers, expected)
        where = pool.describe() if self.cluster else f"{self.workers} workers\n{self.isolation.describe(self.limits)}"
        self.log(f"{len(students)} submissions of {self.assignment}: {len(todo)} to grade, "
                 f"{len(students) - len(todo)} skipped; {where}")
        with self.ctrl_c:
            try:
                self._grade_all(pool, todo, results)
            except BaseException:  # Ctrl-C: stop the sandboxes; what is graded is in the state
                pool.stop()
                raise
        pool.shutdown()
        return [results[s] for s in students]

    def fingerprint(self, student: str) -> str:
        return fingerprint(self.course, self.assignment, student, self.limits, self._assignment_files)

    @functools.cached_property
    def test_cells(self) -> dict:
        """{notebook: [grade id]} of the assignment's test cells, from the gradebook, once per batch."""
        return self.nbgrader.test_cells()

    @functools.cached_property
    def _assignment_files(self) -> bytes:
        """What every student's fingerprint hashes after the submission: read once per batch instead
        of once per student (twice for a student a re-run skips)."""
        return assignment_files(self.course, self.assignment)

    def executor(self) -> SandboxExecutor:
        files = font_files(self.course.work(self.assignment) / "matplotlib", self.settings.matplotlib_fonts)
        return SandboxExecutor(self.isolation, self.limits, self.cell_timeout, ",".join(self.settings.preload),
                               data.students_dir(), thread_env(self.workers), files, self.course.hidden_delimiters(),
                               self.grading, self.test_cells)

    def cluster_pool(self):
        from graders.grading import cluster

        address, tls = self.cluster
        settings = {"limits": asdict(self.limits), "cell_timeout": self.cell_timeout, "preload": ",".join(self.settings.preload),
                    "env": thread_env(1), "matplotlib_fonts": self.settings.matplotlib_fonts,
                    "delimiters": list(self.course.hidden_delimiters()), "test_cells": self.test_cells,
                    "grading": {"secret": self.secret.hex(), "digests": self.grading.digests}}  # over TLS, as the hidden tests
        client = cluster.connect(address, tls)
        try:
            return cluster.DaskPool(client, settings, self.limits.memory_bytes, self.log,
                                    self.settings.cluster_window)
        except BaseException:
            client.close()
            raise

    def _grade_all(self, pool, todo: list, results: dict) -> None:
        """Prepare here, in the main thread, while the pool executes; grade what came back between
        two preparations, so a large class is recorded as it goes, not all at the end."""
        started, done = {}, 0

        def progress(student, seconds):
            nonlocal done
            self.ctrl_c.check()
            done += 1
            machine = f" on {plain(results[student].machine)}" if results[student].machine else ""
            self.log(f"[{_bar(done, len(todo))}] {done}/{len(todo)} {plain(student, 0)}: {results[student].status} "
                     f"({seconds:.0f} s){machine}")

        waiting, size = [], recheck.group_size(len(todo), self.workers, self.settings.recheck_group)  # rechecks, grouped: graders.grading.recheck
        for student in todo:
            self.ctrl_c.check()
            started[student] = time.monotonic()
            notebooks, problem, self.foreign[student] = self.nbgrader.prepare(student)
            if problem:
                results[student] = self.finish(student, problem, started[student])
                progress(student, 0)
            elif (job := self.job(student, notebooks)).execution:  # a recheck with no changed check: no sandbox
                results[student] = self.grade(student, job.execution, started[student])
                progress(student, 0)
            elif job.recheck:
                waiting.append(job)
            else:
                pool.add(job)
            if len(waiting) == size or (waiting and student == todo[-1]):
                pool.add(recheck.group(waiting, self.nbgrader.stage, len(started)) if len(waiting) > 1 else waiting[0])
                waiting = []
            for returned, execution in pool.finished(wait=False):
                for job, execution in recheck.each(returned, execution):
                    results[job.student] = self.grade(job.student, execution, started[job.student])
                    progress(job.student, execution.wall_seconds)
        pool.close()
        for returned, execution in pool.finished():
            for job, execution in recheck.each(returned, execution):
                results[job.student] = self.grade(job.student, execution, started[job.student])
                progress(job.student, execution.wall_seconds)

    def job(self, student: str, notebooks: list) -> Job:
        """A full grading, or with --recheck and kept exports that allow it, the hidden checks only."""
        prepared, delimiters = self.nbgrader.stage / student / self.assignment, self.course.hidden_delimiters()
        self.produced_by[student] = recheck.fingerprint(self.course, self.assignment, student, prepared, notebooks,
                                                        self.limits, delimiters, self.test_cells, self.grading.key)
        self.jobs[student] = job = Job(student, prepared, notebooks)
        if self.recheck:
            store = recheck.folder(self.course, self.assignment, student)
            why, plan = recheck.plan(store, self.kept.get(student, ""), self.produced_by[student], prepared, notebooks,
                                     delimiters, self.test_cells)
            if why:
                self.modes[student] = f"full grading: {why}"
                return job
            job.recheck, self.carried[student] = True, plan.carried
            self.modes[student] = f"rechecked ({plan.checks} hidden check{'' if plan.checks == 1 else 's'} run again)"
            if plan.checks:
                recheck.stage(store, prepared, notebooks)
            else:
                recheck.write_executed(plan.merged, prepared)
                job.execution = Execution(Status.GRADED)
        return job

    def grade(self, student: str, execution, started: float) -> Result:
        """Step 3 (graders.grading.steps), then the gradebook's verdict; a full grading's exports are kept."""
        DiskFull.check([execution.detail], self.nbgrader.stage)  # the runner could not write its notebooks back
        problem = None if execution.status == Status.GRADED else (execution.status, execution.detail)
        problem = problem or self.nbgrader.grade(student)
        job, store = self.jobs.pop(student), recheck.folder(self.course, self.assignment, student)
        if job.recheck:  # the kept exports stay as they were
            self.exports[student] = self.kept.get(student, "")
            execution.diagnoses = {**self.carried.pop(student, {}), **execution.diagnoses}
        elif problem:
            shutil.rmtree(store, ignore_errors=True)
        else:
            self.exports[student] = recheck.keep(store, job.folder, job.notebooks, execution.packs, self.produced_by[student],
                                                 execution.diagnoses, self.settings.kept_notebook_bytes)
        return self.finish(student, problem, started, execution)

    def finish(self, student, problem, started, execution=None) -> Result:
        result = Result(student, *(problem or (Status.GRADED, "")), seconds=time.monotonic() - started)
        if execution:
            result.cpu_seconds, result.peak_memory_bytes = execution.cpu_seconds, execution.peak_memory_bytes
            result.notebooks, result.machine = execution.notebooks, execution.machine
            result.diagnoses = dict(getattr(execution, "diagnoses", {}) or {})
        if not problem:
            result.score, result.max_score, result.status, result.detail = self.course.verdict(self.assignment, student)
        # student text (grade ids, messages about the notebook) made plain before the journal and the terminal
        result.foreign_cells = [plain(cell) for cell in self.foreign.pop(student, [])]
        renumbered = self.nbgrader.notes.get(student, [])  # cell ids fixed before nbgrader read them
        result.detail = plain("; ".join(filter(None, [self.modes.pop(student, ""), result.detail, *result.foreign_cells,
                                                      *renumbered])), 1000)
        result.diagnoses, result.machine = plain_data(result.diagnoses, 1000), plain(result.machine)
        shutil.rmtree(self.nbgrader.stage / student, ignore_errors=True)
        self.nbgrader.forget(student)
        self.state.record(student, {"status": result.status, "fingerprint": self.fingerprint(student), "result": asdict(result),
                                    "exports": self.exports.pop(student, "")})
        return result


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = width * done // max(total, 1)
    return "#" * filled + "-" * (width - filled)


def summary(results: list) -> str:
    machines = any(r.machine for r in results)  # a column of its own when a cluster graded
    lines = [f"{'student':<24} {'score':>6} {'max':>5}  {'status':<18} " + ("machine".ljust(16) + " " if machines else "") + "detail"]
    for r in results:
        score = f"{r.score:g}" if r.status in SCORED or r.score else "-"
        machine = f"{(plain(r.machine) or '-'):<16} " if machines else ""
        lines.append(f"{plain(r.student, 0):<24} {score:>6} {r.max_score:>5g}  {plain(r.status):<18} {machine}{plain(r.detail, 0)}")
    counts = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines.append("; ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return "\n".join(lines)
