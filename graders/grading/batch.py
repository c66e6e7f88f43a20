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
import logging
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.preprocessors import Execute

from graders import data
from graders.course import gradingsplit
from graders.course.coursedir import Course, CourseError, DiskFull, files_under, hashed_files, limits_bytes
from graders.course.grading_lock import grading_lock
from graders.course.plain import plain, plain_data
from graders.course.status import SCORED, Status
from graders.grading import recheck
from graders.grading.executor import Execution, Job, LocalPool, Measured, SandboxExecutor
from graders.grading.settings import GradersBatch, font_files, thread_env
from graders.grading.steps import NbgraderSteps
from graders.isolation import sandbox

logger = logging.getLogger(__name__)


@dataclass
class Result(Measured):
    """A student's line of the summary and of the journal: the verdict, and what the sandbox measured."""
    student: str
    status: str
    detail: str = ""
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0
    foreign_cells: list = field(default_factory=list)  # nbgrader's warnings of graders.grading.execute.DropForeignCells


@dataclass
class Student:
    """One student's way through a batch, from preparation to the journal (distributed's TaskState is
    the model): what `job` fills and `grade` and `finish` read, in one place, gone once recorded."""
    name: str
    started: float = field(default_factory=time.monotonic)
    job: Job = None
    foreign: list = field(default_factory=list)  # the foreign cells nbgrader's preparation graded as ordinary ones
    produced_by: str = ""  # what the kept exports depend on (graders.grading.recheck.fingerprint)
    mode: str = ""  # with --recheck: "rechecked (N hidden checks run again)" or "full grading: why"
    carried: dict = field(default_factory=dict)  # the diagnoses of the checks a recheck does not run again
    exports: str = ""  # the kept exports' manifest digest, for the journal


def fingerprint(course: Course, assignment: str, student: str, limits: sandbox.Limits, shared: bytes = None) -> str:
    """What a grade depends on: the submission, the assignment's source, the configuration, the limits.
    `shared`: `assignment_files(course, assignment)` if already read (it is the same for every student)."""
    digest = hashlib.sha256(hashed_files(course, files_under(course.folder("submitted", assignment, student))))
    digest.update(assignment_files(course, assignment) if shared is None else shared)
    digest.update(limits_bytes(limits))
    return digest.hexdigest()


def assignment_files(course: Course, assignment: str) -> bytes:
    """The source folder and nbgrader_config.py as the fingerprint hashes them, after the submission."""
    return hashed_files(course, files_under(course.folder("source", assignment)) + [course.root / "nbgrader_config.py"])


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
                 use_sandbox: bool = True, force: bool = False, cluster=None, recheck: bool = False):
        """`cluster`: (scheduler address, TLS files) to execute on a Dask cluster (graders.grading.cluster);
        `recheck`: regrade everyone, running only the hidden checks where the kept exports allow
        (graders.grading.recheck), else in full."""
        if recheck and cluster:
            raise CourseError("--recheck runs on this machine: leave out --scheduler (the checks take seconds)")
        self.course, self.assignment, self.limits = Course(course), assignment, limits
        self.workers, self.force, self.cluster = workers, force or recheck, cluster
        self.recheck, self.students, self.kept = recheck, {}, {}  # kept: student -> manifest digest, from the journal
        self.ctrl_c = CtrlC()
        self.isolation = sandbox.choose(use_sandbox)
        self.settings = GradersBatch(config=self.course.config)
        self.state = self.course.state(assignment)
        self.nbgrader = NbgraderSteps(self.course, assignment, self.settings.max_notebook_bytes, self.settings.max_cells)
        # one cell timeout: nbgrader's Execute.timeout, within the notebook's
        self.cell_timeout = min(int(Execute(config=self.course.config).timeout or 30), int(limits.wall_seconds))

    def run(self, wanted=None) -> list:
        self.course.check_assignment(self.assignment)
        with grading_lock(self.course.work(self.assignment), f"the batch (python -m graders autograde {self.assignment})"):
            if not self.cluster:  # else each worker checks its own machine before it joins
                self.isolation.check()
                for name in self.settings.datasets:  # the students' view
                    data.load_view(name)
            self.secret = gradingsplit.course_secret(self.course.root, self.settings.grading_secret_file)
            self.grading = gradingsplit.build(self.secret, () if self.cluster else self.settings.datasets)
            state, students = self.state.load(), chosen(self.course, self.assignment, wanted)
            self.kept = {student: entry.get("exports", "") for student, entry in state.items()}  # manifest digests
            results, todo = sort_out(self, students, state)
            pool = cluster_pool(self) if self.cluster else local_pool(self, state)
            where = pool.describe() if self.cluster else f"{self.workers} workers\n{self.isolation.describe(self.limits)}"
            logger.info(f"{len(students)} submissions of {self.assignment}: {len(todo)} to grade, "
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
        """What every fingerprint hashes after the submission: read once per batch, not per student."""
        return assignment_files(self.course, self.assignment)

    def _grade_all(self, pool, todo: list, results: dict) -> None:
        """Prepare here, in the main thread, while the pool executes; grade what came back between
        two preparations, so a large class is recorded as it goes, not all at the end."""
        done = 0

        def recorded(student: Student, result: Result, seconds: float = 0) -> None:
            nonlocal done
            results[student.name], done = result, done + 1
            self.ctrl_c.check()
            machine = f" on {plain(result.machine)}" if result.machine else ""
            logger.info(f"[{_bar(done, len(todo))}] {done}/{len(todo)} {plain(student.name, 0)}: {result.status} "
                        f"({seconds:.0f} s){machine}")

        def collect(wait: bool) -> None:
            for returned, execution in pool.finished(wait=wait):
                for job, execution in recheck.each(returned, execution):
                    recorded(self.students[job.student], self.grade(self.students[job.student], execution), execution.wall_seconds)

        waiting, size = [], recheck.group_size(len(todo), self.workers, self.settings.recheck_group)  # rechecks, grouped
        for number, name in enumerate(todo, 1):
            self.ctrl_c.check()
            student = self.students[name] = Student(name)
            notebooks, problem, student.foreign = self.nbgrader.prepare(name)
            if problem:
                recorded(student, self.finish(student, problem))
            elif (job := self.job(student, notebooks)).execution:  # a recheck with no changed check: no sandbox
                recorded(student, self.grade(student, job.execution))
            elif job.recheck:
                waiting.append(job)
            else:
                pool.add(job)
            if len(waiting) == size or (waiting and name == todo[-1]):
                pool.add(recheck.group(waiting, self.nbgrader.stage, number) if len(waiting) > 1 else waiting[0])
                waiting = []
            collect(wait=False)
        pool.close()
        collect(wait=True)

    def job(self, student: Student, notebooks: list) -> Job:
        """A full grading, or with --recheck and kept exports that allow it, the hidden checks only."""
        prepared, delimiters = self.nbgrader.stage / student.name / self.assignment, self.course.hidden_delimiters()
        student.produced_by = recheck.fingerprint(self.course, self.assignment, student.name, prepared, notebooks,
                                                  self.limits, delimiters, self.test_cells, self.grading.key)
        student.job = job = Job(student.name, prepared, notebooks)
        if self.recheck:
            store = recheck.folder(self.course, self.assignment, student.name)
            why, plan = recheck.plan(store, self.kept.get(student.name, ""), student.produced_by, prepared, notebooks,
                                     delimiters, self.test_cells)
            if why:
                student.mode = f"full grading: {why}"
                return job
            job.recheck, student.carried = True, plan.carried
            student.mode = f"rechecked ({plan.checks} hidden check{'' if plan.checks == 1 else 's'} run again)"
            if plan.checks:
                recheck.stage(store, prepared, notebooks)
            else:
                recheck.write_executed(plan.merged, prepared)
                job.execution = Execution(Status.GRADED)
        return job

    def grade(self, student: Student, execution: Execution) -> Result:
        """Step 3 (graders.grading.steps), then the gradebook's verdict; a full grading's exports are kept."""
        DiskFull.check([execution.detail], self.nbgrader.stage)  # the runner could not write its notebooks back
        problem = None if execution.status == Status.GRADED else (execution.status, execution.detail)
        problem = problem or self.nbgrader.grade(student.name)
        job, store = student.job, recheck.folder(self.course, self.assignment, student.name)
        if job.recheck:  # the kept exports stay as they were
            student.exports = self.kept.get(student.name, "")
            execution.diagnoses = {**student.carried, **execution.diagnoses}
        elif problem:
            shutil.rmtree(store, ignore_errors=True)
        else:
            student.exports = recheck.keep(store, job.folder, job.notebooks, execution.packs, student.produced_by,
                                           execution.diagnoses, self.settings.kept_notebook_bytes)
        return self.finish(student, problem, execution)

    def finish(self, student: Student, problem, execution: Execution = None) -> Result:
        """The student's Result, made plain (student text, before the journal and the terminal), and recorded."""
        result = Result(student.name, *(problem or (Status.GRADED, "")), seconds=time.monotonic() - student.started,
                        **(execution.measured() if execution else {}))
        if not problem:
            result.score, result.max_score, result.status, result.detail = self.course.verdict(self.assignment, student.name)
        result.foreign_cells = [plain(cell) for cell in student.foreign]
        renumbered = self.nbgrader.notes.get(student.name, [])  # cell ids fixed before nbgrader read them
        result.detail = plain("; ".join(filter(None, [student.mode, result.detail, *result.foreign_cells, *renumbered])), 1000)
        result.diagnoses, result.machine = plain_data(dict(result.diagnoses or {}), 1000), plain(result.machine)
        shutil.rmtree(self.nbgrader.stage / student.name, ignore_errors=True)
        self.nbgrader.forget(student.name)
        self.state.record(student.name, {"status": result.status, "fingerprint": self.fingerprint(student.name),
                                         "result": asdict(result), "exports": student.exports})
        self.students.pop(student.name, None)
        return result


def chosen(course: Course, assignment: str, wanted=None) -> list:
    """The students to grade: `wanted`, or everyone who handed in; as nbgrader's autograde, never one the
    course excludes (c.CourseDirectory.student_id_exclude: neither graded nor in the gradebook)."""
    students = sorted(wanted) if wanted else course.students(assignment)
    excluded = sorted(set(students if wanted else course.students(assignment, excluded=True)) & course.excluded())
    if excluded:
        logger.info(f"excluded (c.CourseDirectory.student_id_exclude): {', '.join(plain(s, 80) for s in excluded)}")
    return [student for student in students if student not in excluded]


def sort_out(batch: Batch, students: list, state: dict) -> tuple:
    """({student: Result} of those with nothing to grade, [the students to grade]): a missing hand-in,
    or (without --force) a scored submission whose fingerprint is unchanged, would score the same."""
    if not students:
        raise CourseError(f"no submissions in {batch.course.root / batch.course.directory.submitted_directory}/*/"
                          f"{batch.assignment}: hand-ins go in submitted/<student>/<assignment>/")
    results, todo = {}, []
    for student in students:
        known = state.get(student, {})
        folder = batch.course.folder("submitted", batch.assignment, student)
        if not folder.is_dir():
            results[student] = Result(student, Status.MISSING_SUBMISSION, f"no submitted/{student}/{batch.assignment}")
        elif not any(folder.glob("*.ipynb")):  # nbgrader skips it: nothing to grade, nothing in the gradebook
            results[student] = Result(student, Status.MISSING_SUBMISSION,
                                      f"submitted/{student}/{batch.assignment} holds no notebook")
        elif not batch.force and known.get("status") in SCORED and known.get("fingerprint") == batch.fingerprint(student):
            detail = "; ".join(filter(None, ["unchanged since last graded", known["result"].get("detail")]))
            results[student] = Result(**{**known["result"], "detail": detail})
        else:
            todo.append(student)
    return results, todo


def local_pool(batch: Batch, state: dict) -> LocalPool:
    """Sandboxes on this machine, `batch.workers` at once, the notebooks slow in the journal first."""
    files = font_files(batch.course.work(batch.assignment) / "matplotlib", batch.settings.matplotlib_fonts)
    executor = SandboxExecutor(batch.isolation, batch.limits, batch.cell_timeout, ",".join(batch.settings.preload),
                               data.students_dir(), thread_env(batch.workers), files, batch.course.hidden_delimiters(),
                               batch.grading, batch.test_cells)
    expected = {name: run["wall_seconds"] for entry in state.values()
                for name, run in entry.get("result", {}).get("notebooks", {}).items() if "wall_seconds" in run}
    return LocalPool(executor, batch.workers, expected)


def cluster_pool(batch: Batch):
    """The Dask pool of `batch.cluster` (graders.grading.cluster): what every worker needs to grade as here."""
    from graders.grading import cluster

    address, tls = batch.cluster
    settings = {"limits": asdict(batch.limits), "cell_timeout": batch.cell_timeout, "preload": ",".join(batch.settings.preload),
                "env": thread_env(1), "matplotlib_fonts": batch.settings.matplotlib_fonts,
                "delimiters": list(batch.course.hidden_delimiters()), "test_cells": batch.test_cells,
                "grading": {"secret": batch.secret.hex(), "digests": batch.grading.digests}}  # over TLS, as the hidden tests
    client = cluster.connect(address, tls)
    try:
        return cluster.DaskPool(client, settings, batch.limits.memory_bytes, batch.settings.cluster_window)
    except BaseException:
        client.close()
        raise


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
