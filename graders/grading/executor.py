"""Running a student's prepared notebooks: one seam between the batch grader and the machines.

`Executor.run(job) -> Execution` takes a student's prepared folder and notebook names and gives
back an explicit result (status, detail, measurements); the executed notebooks are left in the
folder. `SandboxExecutor` runs one job in this machine's sandbox (graders.isolation.sandbox: root,
user namespace or none) with graders.inside.run_notebook inside; `LocalPool` runs many on a pool of
threads, longest expected first; graders.grading.cluster.DaskPool takes the same jobs to a Dask cluster.
"""
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import queue
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from graders import data
from graders.course.coursedir import first_line
from graders.course.gradingsplit import GradingSet
from graders.course.plain import plain, plain_data
from graders.course.status import Status
from graders.inside import hidden, runner_api
from graders.isolation import sandbox

LOG = logging.getLogger(__name__)


@dataclass
class Job:
    student: str
    folder: Path  # the prepared notebooks; the executed ones are written beside them
    notebooks: list  # names, run in this order
    recheck: bool = False  # no kernel: the hidden checks again on kept exports (graders.grading.recheck)
    execution: "Execution" = None  # already done without a sandbox (a recheck with no changed check)
    members: list = field(default_factory=list)  # a recheck group: these students' rechecks in one sandbox


@dataclass(kw_only=True)
class Measured:
    """What a sandbox measured and said of one student: an Execution's, carried into the Result."""
    cpu_seconds: float = 0.0  # of the student's sandbox, all notebooks
    peak_memory_bytes: int = 0  # of the student's sandbox
    notebooks: dict = field(default_factory=dict)  # name -> wall_seconds, cpu_seconds (its kernel's), check_...
    machine: str = ""  # the host that ran it, when not this one
    diagnoses: dict = field(default_factory=dict)  # "notebook:grade id" -> {misconception, hint, value} (failed hidden checks)

    def measured(self) -> dict:
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(Measured)}


@dataclass
class Execution(Measured):
    status: Status
    detail: str = ""
    wall_seconds: float = 0.0
    packs: dict = field(default_factory=dict)  # notebook -> {sha256, checked} of the exports the runner packed
    members: dict = field(default_factory=dict)  # a recheck group's: student -> their Execution
    not_rechecked: list = field(default_factory=list)  # notebooks (STUDENT/NAME in a group) the runner could not recheck


class Executor:
    def run(self, job: Job) -> Execution:
        raise NotImplementedError


class SandboxExecutor(Executor):
    """One job in a sandbox of this machine: every notebook under `limits.wall_seconds`, the
    whole run under that times the notebooks plus a minute for starting up."""

    def __init__(self, isolation: sandbox.Isolation, limits: sandbox.Limits, cell_timeout: int, preload: str,
                 data_dir: Path, env: dict, files: dict, delimiters=None, grading: GradingSet = None,
                 test_cells=None):
        """`data_dir`: the students' view of the datasets (graders.data.students_dir), shown at /data;
        `delimiters`: the course's hidden-test delimiters (Course.hidden_delimiters), else nbgrader's;
        `grading`: the course's grading set (graders.course.gradingsplit): its images shown at
        /grading, its labels staged for the checker alone; `test_cells`: {notebook: [grade id]} from the
        gradebook (graders.grading.steps), else none."""
        self.isolation, self.limits, self.cell_timeout, self.preload = isolation, limits, cell_timeout, preload
        self.grading = grading or GradingSet("", Path("/nonexistent"))
        self.data_dir, self.env, self.files = data_dir, {**env, **self.grading.env()}, {**files, **self.grading.files()}
        self.delimiters = list(delimiters or (hidden.BEGIN, hidden.END))
        self.test_cells = dict(test_cells or {})

    def argv(self, job: Job) -> list:
        """The runner's command line for `job`, as the sandbox runs it."""
        return self.isolation.python_module(
            "graders.inside.run_notebook", *(f"{name}.ipynb" for name in job.notebooks), "--cell-timeout", str(self.cell_timeout),
            "--notebook-timeout", str(self.limits.wall_seconds), "--preload", "" if job.recheck else self.preload,
            "--hidden-delimiters", *self.delimiters, "--test-cells", json.dumps(self.test_cells, sort_keys=True),
            *(["--recheck"] if job.recheck else []),
            *(["--sandboxed"] if self.isolation.pid_namespace else []))

    def run(self, job: Job) -> Execution:
        if job.members:
            return self.run_group(job)
        argv = self.argv(job)
        limits = dataclasses.replace(self.limits, wall_seconds=self.limits.wall_seconds * len(job.notebooks) + 60)
        try:
            self.grading.stage_labels(job.folder)  # for the checker alone: the runner removes them first
            self.data_dir.mkdir(parents=True, exist_ok=True)  # a course without datasets may have none
            outcome = self.isolation.run(argv, job.folder, limits, self.data_dir, self.env, self.files)
        except sandbox.SandboxUnavailable as error:
            return Execution(Status.SANDBOX_REFUSED, str(error))
        except Exception as error:  # a bug of the grader's: its traceback kept, the batch goes on
            LOG.exception("the grader failed while running %s's sandbox (a bug in onions, not the student's code)", job.student)
            return Execution(Status.EXECUTION_FAILED, f"the grader failed ({type(error).__name__}: {error}): a bug in "
                                                      "onions, not in the submission; its traceback is in the grader's log")
        finally:  # never into autograded/ (the runner removed them, unless it never started)
            shutil.rmtree(job.folder / data.LABELS_FOLDER, ignore_errors=True)
        status, detail = classify(outcome, self.limits)
        return Execution(status, detail, outcome.wall_seconds, cpu_seconds=outcome.cpu_seconds,
                         peak_memory_bytes=outcome.peak_memory_bytes, notebooks=measurements(outcome.report),
                         diagnoses=diagnoses(outcome.report), packs=packs(outcome.report),
                         not_rechecked=[str(item["not_rechecked"]) for item in outcome.report if "not_rechecked" in item])

    def run_group(self, group: Job) -> Execution:
        """Several students' rechecks in one sandbox: one runner, one checker, their imports paid once
        (graders.grading.recheck.group). Each student's files are linked into the group's folder as
        STUDENT/NAME; a student the group could not recheck (its runner said so, or the sandbox
        ended early) is run again alone, so one bad export costs its own student only."""
        shutil.rmtree(group.folder, ignore_errors=True)
        try:
            for member in group.members:
                (group.folder / member.student).mkdir(parents=True)
                for name in member.notebooks:
                    for suffix in (".ipynb", runner_api.PACK, runner_api.PREVIOUS):
                        os.link(member.folder / f"{name}{suffix}", group.folder / member.student / f"{name}{suffix}")
        except OSError:  # no links here (another file system): each alone, as without groups
            shutil.rmtree(group.folder, ignore_errors=True)
            return Execution(Status.GRADED, members={member.student: self.run(member) for member in group.members})
        together = self.run(dataclasses.replace(group, members=[]))
        refused = set(together.not_rechecked)
        share = 1 / len(group.members)  # the sandbox's CPU and memory, shared alike
        executions = {}
        for member in group.members:
            keys = {f"{member.student}/{name}": name for name in member.notebooks}
            if any(key in refused or not (group.folder / f"{key}.executed.ipynb").is_file() for key in keys):
                executions[member.student] = self.run(member)
                continue
            for key, name in keys.items():
                os.replace(group.folder / f"{key}.executed.ipynb", member.folder / f"{name}.executed.ipynb")
            executions[member.student] = Execution(
                Status.GRADED, "", together.wall_seconds, cpu_seconds=together.cpu_seconds * share,
                peak_memory_bytes=together.peak_memory_bytes, notebooks={keys[k]: v for k, v in together.notebooks.items() if k in keys},
                diagnoses={f"{keys[k.rpartition(':')[0]]}:{k.rpartition(':')[2]}": v for k, v in together.diagnoses.items()
                           if k.rpartition(":")[0] in keys})
        shutil.rmtree(group.folder, ignore_errors=True)
        return dataclasses.replace(together, members=executions, notebooks={})  # the members hold their own


def classify(outcome: sandbox.Outcome, limits: sandbox.Limits) -> tuple:
    """(status, detail) of a sandboxed run, from its limits and the runner's private report;
    the cause first: a fork bomb may then time out, crash its kernel or even finish. Once the
    runner has started, the words are the runner's (its private line) or the grader's, never the
    sandbox's stdout, which student code can write."""
    if outcome.process_limit_hit:
        return Status.TOO_MANY_PROCESSES, f"reached the limit of {limits.processes} processes and threads"
    if outcome.oom_killed:
        return Status.KILLED_FOR_MEMORY, f"over the {limits.memory_bytes >> 20} MB limit"
    if outcome.timed_out or outcome.returncode == runner_api.TIMED_OUT:
        return Status.TIMED_OUT, f"still running after {limits.wall_seconds:g} s"
    if outcome.returncode == 0 and outcome.refused:  # outputs handed back over the quota, or not outputs
        return Status.EXECUTION_FAILED, plain(outcome.refused[0])
    if outcome.returncode == 0:
        return Status.GRADED, ""
    failure = plain(next((item["text"] for item in outcome.report if item.get("failure")), ""))
    if not any(item.get("started") for item in outcome.report):  # the sandbox never ran the runner: bwrap's words
        return Status.SANDBOX_REFUSED, plain(first_line(outcome.output.splitlines()[-3:])) or f"exit status {outcome.returncode}"
    if outcome.returncode == runner_api.NOT_RECHECKABLE:
        return Status.EXECUTION_FAILED, f"not rechecked: {failure}"
    if outcome.returncode == runner_api.KERNEL_DIED:
        return Status.KERNEL_CRASHED, failure
    if failure and outcome.returncode in (runner_api.UNREADABLE, runner_api.CHECKER_STOPPED):
        return Status.EXECUTION_FAILED, failure
    return Status.EXECUTION_FAILED, ended(outcome.returncode)


def ended(returncode: int) -> str:
    """How the runner ended, in the grader's words: it died before it could say why (killed by
    student code, say)."""
    number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 192 else 0  # bwrap: 128 + signal
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the runner was killed ({name}) before it finished"
    return f"the runner ended with exit status {returncode} before it finished"


def measurements(report: list) -> dict:
    """{notebook: {wall_seconds, cpu_seconds, check_wall_seconds, check_cpu_seconds, export_seconds}}."""
    measured = {}
    for item in report:
        name = item.get("notebook")
        if isinstance(name, str):
            numbers = {key: float(value) for key, value in item.items()
                       if key.endswith("seconds") and isinstance(value, (int, float))}
            measured.setdefault(name, {}).update(numbers)
    return measured


def packs(report: list) -> dict:
    """{notebook: {sha256, checked}}: the digest of its packed exports and the test cells (indices)
    the checker ran, as the runner said before any file could be changed (NAME.exports.tar.xz)."""
    return {item["notebook"]: {"sha256": item["pack_sha256"], "checked": [int(i) for i in item.get("checked", [])]}
            for item in report if isinstance(item.get("notebook"), str) and isinstance(item.get("pack_sha256"), str)}


def diagnoses(report: list) -> dict:
    """{"notebook:grade id": {misconception, hint, value(, passed)}}: what the checker made of each
    failed hidden check that declares misconceptions, and each passed one with a notice that held
    (graders.inside.hidden.diagnose)."""
    found = {}
    for item in report:
        diagnosis, notebook, cell = item.get("diagnosis"), item.get("notebook"), item.get("cell")
        if isinstance(diagnosis, dict) and isinstance(notebook, str) and isinstance(cell, str):
            found[plain(f"{notebook}:{cell}")] = plain_data(
                {"misconception": str(diagnosis.get("misconception", "")), "hint": str(diagnosis.get("hint", "")),
                 "value": diagnosis.get("value"), **({"passed": True} if diagnosis.get("passed") is True else {})}, 1000)
    return found


class LocalPool:
    """Runs jobs on `workers` threads, each through `executor`: the longest expected job first
    (`expected`: seconds per notebook name, learnt as jobs finish; an unknown one counts as
    longest, to learn its cost). `add` jobs as they are prepared, then `close`; `finished()`
    yields (job, execution) as they end."""

    def __init__(self, executor: Executor, workers: int, expected: dict):
        self.executor, self.expected = executor, dict(expected)
        self.waiting, self.closed, self.stopping = [], False, False
        self.ready, self.done = threading.Condition(), queue.Queue()
        self.count = 0
        self.threads = concurrent.futures.ThreadPoolExecutor(workers)
        for _ in range(workers):
            self.threads.submit(self._work)

    def add(self, job: Job) -> None:
        with self.ready:
            self.waiting.append(job)
            self.count += 1  # jobs not yet yielded by finished()
            self.ready.notify_all()

    def close(self) -> None:
        """No more jobs will be added."""
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def finished(self, wait: bool = True):
        """(job, execution) as jobs end: all that remain (`wait`), or only those already done."""
        while self.count:
            try:
                item = self.done.get(block=wait)
            except queue.Empty:
                return
            self.count -= 1
            yield item

    def stop(self) -> None:
        """Ctrl-C: no new job starts, the running sandboxes are killed."""
        with self.ready:
            self.stopping = True
            self.ready.notify_all()
        sandbox.kill_running()
        self.threads.shutdown(wait=False)

    def shutdown(self) -> None:
        self.threads.shutdown()

    def _next(self):
        with self.ready:
            while not self.waiting and not self.closed and not self.stopping:
                self.ready.wait()
            if not self.waiting or self.stopping:
                return None
            job = max(self.waiting, key=lambda job: sum(self.expected.get(name, math.inf) for name in job.notebooks))
            self.waiting.remove(job)
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            execution = self.executor.run(job)
            with self.ready:
                for name, measured in execution.notebooks.items():
                    if "wall_seconds" in measured:
                        self.expected[name] = max(self.expected.get(name, 0.0), measured["wall_seconds"])
            self.done.put((job, execution))
