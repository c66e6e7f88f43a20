"""Autograde a whole class: nbgrader's Autograde for everything but execution, run N at a time.

Per student, in this one process (the only one that touches the gradebook):
  1. nbgrader's Autograde with no autograde steps prepares the notebooks (overwrites the
     locked and test cells from the gradebook, ...) into a staging folder;
  2. the student's prepared notebooks run in one sandbox, on a pool of workers (their
     kernels forked from one process that imported TensorFlow once: graders.kernel_fork);
  3. nbgrader's Autograde runs again for real, its Execute step replaced by StagedExecute,
     which takes the outputs of step 2; grades, checksums, late penalties stay nbgrader's.
A student is recorded in the state file only once step 3 is done, so an interrupted batch
resumes where it stopped, and an unchanged, graded submission is skipped.
"""
import concurrent.futures
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import queue
import re
import shutil
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from traitlets.config.loader import PyFileConfigLoader

from graders import data, run_notebook, sandbox
from graders.execute import StagedExecute, autograde_preprocessors

GRADED = "graded"
MISSING_NOTEBOOK, TEST_CELL_DELETED = "missing notebook", "test cell deleted"
SCORED = (GRADED, MISSING_NOTEBOOK, TEST_CELL_DELETED)  # statuses whose gradebook scores are real
WORK = ".graders"  # state, staging and logs, inside the course directory
MATPLOTLIB_DIR = "/tmp/matplotlib"  # matplotlib's config directory in the sandbox
PRELOAD = "numpy,tensorflow,keras"  # imported once per student, shared by the kernels


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


@contextlib.contextmanager
def quiet_nbgrader_warnings():
    """Hide nbgrader 0.9's SQLAlchemy 2 warnings ("Object of type <...> not in session"): they
    come on every regrade, change nothing, and would drown the progress lines. Main thread only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session")
        yield


def default_workers(memory_per_worker: int) -> int:
    """As many as there are cores, as long as each worker's memory limit fits in the machine."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        available = memory_per_worker
    return max(1, min(os.cpu_count() or 1, available // memory_per_worker))


def thread_env(workers: int) -> dict:
    """Split the cores between concurrent kernels, so TensorFlow's pools don't oversubscribe them."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
            "NBGRADER_EXECUTION": "autograde", "LANG": "C.UTF-8", "MPLCONFIGDIR": MATPLOTLIB_DIR}


class Batch:
    def __init__(self, course: Path, assignment: str, limits: sandbox.Limits, workers: int,
                 use_sandbox: bool = True, force: bool = False, log=print):
        self.course, self.assignment, self.limits = Path(course).resolve(), assignment, limits
        self.workers, self.force, self.log = workers, force, log
        self.isolation = sandbox.choose(use_sandbox)
        self.work = self.course / WORK / assignment
        self.stage = self.work / "stage"
        self.state_path = self.work / "state.json"
        self.config = PyFileConfigLoader("nbgrader_config.py", path=str(self.course)).load_config()
        self.cell_timeout = min(int(self.config.Execute.get("timeout", 300) or 300), int(limits.wall_seconds))

    # -- the work list and its state ---------------------------------------------------------
    def students(self, wanted=None) -> list:
        submitted = self.course / "submitted"
        found = sorted(p.parent.name for p in submitted.glob(f"*/{self.assignment}") if p.is_dir())
        return sorted(wanted) if wanted else found

    def fingerprint(self, student: str) -> str:
        """What the grade depends on: the submission, the assignment's source and the configuration."""
        digest = hashlib.sha256()
        folders = [self.course / "submitted" / student / self.assignment, self.course / "source" / self.assignment]
        for path in [p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()] + [self.course / "nbgrader_config.py"]:
            digest.update(str(path.relative_to(self.course)).encode() + b"\0" + path.read_bytes() + b"\0")
        digest.update(json.dumps({k: float(v) for k, v in asdict(self.limits).items()}, sort_keys=True).encode())
        return digest.hexdigest()

    def load_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(partial, self.state_path)  # a crash never leaves half a state file

    # -- nbgrader ------------------------------------------------------------------------------
    def nbgrader_autograde(self, student: str, output_directory: str, preprocessors: list) -> list:
        """nbgrader's Autograde converter for one student; returns the errors and warnings it logged."""
        config = copy.deepcopy(self.config)
        config.CourseDirectory.root = str(self.course)
        config.CourseDirectory.assignment_id = self.assignment
        config.CourseDirectory.student_id = student
        config.CourseDirectory.autograded_directory = output_directory
        config.Autograde.autograde_preprocessors = preprocessors
        config.Autograde.force = True
        config.StagedExecute.stage_directory = str(self.stage)
        return run_converter(Autograde, config)

    # -- the batch -------------------------------------------------------------------------
    def run(self, wanted=None) -> list:
        self.check_assignment()
        self.isolation.check()
        self.font_list = sandbox.font_list(self.work / "matplotlib")
        data_dir = data.cache_dir()
        if not data.cache_path().is_file():
            raise data.DataUnavailable(f"offline MNIST missing at {data.cache_path()}: build it with: python -m graders data")
        state = self.load_state()
        students = self.students(wanted)
        if not students:
            raise RuntimeError(f"no submissions in {self.course / 'submitted'}/*/{self.assignment}: "
                               "hand-ins go in submitted/<student>/<assignment>/")
        results, todo = {}, []
        for student in students:
            if not (self.course / "submitted" / student / self.assignment).is_dir():
                results[student] = Result(student, "missing submission", f"no submitted/{student}/{self.assignment}")
                continue
            known = state.get(student, {})
            if not self.force and known.get("status") == GRADED and known.get("fingerprint") == self.fingerprint(student):
                results[student] = Result(**{**known["result"], "detail": "unchanged since last graded"})
                continue
            todo.append(student)
        self.log(f"{len(students)} submissions of {self.assignment}: {len(todo)} to grade, "
                 f"{len(students) - len(todo)} skipped; {self.workers} workers\n"
                 f"{self.isolation.describe(self.limits)}")
        pool = concurrent.futures.ThreadPoolExecutor(self.workers)
        self.stopping, self.ready = False, threading.Condition()
        try:
            self._run_pool(pool, todo, state, results, data_dir)
        except BaseException:  # Ctrl-C: stop the sandboxes; what is graded is in the state file
            with self.ready:
                self.stopping = True
                self.ready.notify_all()
            sandbox.kill_running()
            pool.shutdown(wait=False)
            raise
        pool.shutdown()
        return [results[s] for s in students]

    def _run_pool(self, pool, todo, state, results, data_dir) -> None:
        """Workers take prepared students, longest expected first, while the rest are prepared."""
        waiting, started, finished = [], {}, queue.Queue()
        # seconds each notebook took before; one not yet seen goes first, to learn its cost
        expected = {name: run["wall_seconds"] for entry in state.values()
                    for name, run in entry.get("result", {}).get("notebooks", {}).items()}
        self.prepared_all = False

        def next_job():
            with self.ready:
                while not waiting and not self.prepared_all and not self.stopping:
                    self.ready.wait()
                if not waiting or self.stopping:
                    return None
                job = max(waiting, key=lambda job: sum(expected.get(name, math.inf) for name in job[1]))
                waiting.remove(job)
                return job

        def work():
            while (job := next_job()) is not None:
                run = self.execute(*job, data_dir)
                with self.ready:
                    for name, measured in run["notebooks"].items():
                        expected[name] = max(expected.get(name, 0.0), measured["wall_seconds"])
                finished.put((job[0], run))

        for _ in range(self.workers):
            pool.submit(work)
        total, done = len(todo), 0

        def progress(student, seconds):
            nonlocal done
            done += 1
            self.log(f"[{_bar(done, total)}] {done}/{total} {student}: {results[student].status} ({seconds:.0f} s)")

        for student in todo:  # nbgrader's first pass, here in the main thread, as the workers start
            started[student] = time.monotonic()
            notebooks, problem = self.prepare(student)
            if problem:
                results[student] = self.finish(student, state, problem, started[student])
                progress(student, 0)
                continue
            with self.ready:
                waiting.append((student, notebooks))
                self.ready.notify_all()
        with self.ready:
            self.prepared_all = True
            self.ready.notify_all()
        while done < total:
            student, run = finished.get()
            results[student] = self.grade(student, run, state, started[student])
            progress(student, run["wall_seconds"])

    def prepare(self, student: str):
        """Step 1: nbgrader prepares the notebooks in the staging folder. Returns (names, problem)."""
        folder = self.stage / student / self.assignment
        if folder.exists():
            shutil.rmtree(folder)
        messages = self.nbgrader_autograde(student, str(Path(WORK) / self.assignment / "stage"), [])
        errors = [m for m in messages if m.startswith("ERROR")]
        notebooks = sorted(p.stem for p in folder.glob("*.ipynb")) if folder.is_dir() else []
        if errors or not notebooks:
            return [], ("invalid notebook", reason(errors) or "nbgrader found no notebook it could read")
        return notebooks, None

    def execute(self, student: str, notebooks: list, data_dir: Path) -> dict:
        """Step 2 (on a worker): run a student's prepared notebooks, in order, in one sandbox.

        Each notebook has the wall-time limit (the runner enforces it); the sandbox's own limit
        covers them all, with room for starting up, in case the runner cannot.
        """
        folder = self.stage / student / self.assignment
        argv = self.isolation.python_module(
            "graders.run_notebook", *(f"{name}.ipynb" for name in notebooks), "--cell-timeout", str(self.cell_timeout),
            "--notebook-timeout", str(self.limits.wall_seconds), "--preload", PRELOAD,
            *(["--sandboxed"] if self.isolation.pid_namespace else []))
        limits = dataclasses.replace(self.limits, wall_seconds=self.limits.wall_seconds * len(notebooks) + 60)
        try:
            outcome = self.isolation.run(argv, folder, limits, data_dir, *self.environment())
        except sandbox.SandboxUnavailable as error:
            return {"status": "sandbox refused", "detail": str(error), "wall_seconds": 0.0, "notebooks": {}}
        except Exception as error:  # keep the batch going; this student gets the status
            return {"status": "execution failed", "detail": f"{type(error).__name__}: {error}", "wall_seconds": 0.0, "notebooks": {}}
        status, detail = GRADED, ""
        runner_says = [line[len("RUNNER: "):] for line in outcome.output.splitlines() if line.startswith("RUNNER: ")]
        failure = next((line for line in runner_says if not line.startswith(("ran ", "checked "))), "")
        # the cause first: a fork bomb may then time out, crash its kernel or even finish
        if outcome.process_limit_hit:
            status, detail = "too many processes", f"reached the limit of {self.limits.processes} processes and threads"
        elif outcome.oom_killed:
            status, detail = "killed for memory", f"over the {self.limits.memory_bytes >> 20} MB limit"
        elif outcome.timed_out or outcome.returncode == run_notebook.TIMED_OUT:
            status, detail = "timed out", f"still running after {self.limits.wall_seconds:g} s"
        elif outcome.returncode != 0:
            reason = failure or _first_line(outcome.output.splitlines()[-3:])
            status = "kernel crashed" if outcome.returncode == run_notebook.KERNEL_DIED else (
                "sandbox refused" if "bwrap" in outcome.output else "execution failed")
            detail = reason[:300]
        return {"status": status, "detail": detail, "wall_seconds": outcome.wall_seconds,
                "cpu_seconds": outcome.cpu_seconds, "peak_memory_bytes": outcome.peak_memory_bytes,
                "notebooks": _measured(runner_says)}

    def environment(self):
        """(variables, files to show in the sandbox) of every run: matplotlib's font list is built once."""
        files = {f"{MATPLOTLIB_DIR}/{self.font_list.name}": self.font_list} if self.font_list else {}
        return thread_env(self.workers), files

    def grade(self, student: str, run: dict, state: dict, started: float) -> Result:
        """Step 3: nbgrader's Autograde with the sandbox's outputs, then the gradebook's verdict."""
        if run["status"] != GRADED:
            return self.finish(student, state, (run["status"], run["detail"]), started, run)
        messages = self.nbgrader_autograde(student, self.config.CourseDirectory.get("autograded_directory", "autograded"),
                                           autograde_preprocessors(StagedExecute))
        errors = [m for m in messages if m.startswith("ERROR")]
        if errors:
            invalid = [m for m in errors if "InvalidExecution" in m]
            return self.finish(student, state, ("invalid result" if invalid else "nbgrader error", reason(invalid or errors)), started, run)
        return self.finish(student, state, None, started, run)

    def finish(self, student, state, problem, started, run=None) -> Result:
        run = run or {}
        result = Result(student, problem[0] if problem else GRADED, problem[1] if problem else "",
                        seconds=time.monotonic() - started, cpu_seconds=run.get("cpu_seconds", 0.0),
                        peak_memory_bytes=run.get("peak_memory_bytes", 0), notebooks=run.get("notebooks", {}))
        if not problem:
            result.score, result.max_score, result.status, result.detail = self.verdict(student)
        shutil.rmtree(self.stage / student, ignore_errors=True)
        state[student] = {"status": result.status, "fingerprint": self.fingerprint(student), "result": asdict(result)}
        self.save_state(state)
        return result

    def check_assignment(self) -> None:
        """Stop before grading if nbgrader does not know the assignment (its release was never generated)."""
        fix = f"run `nbgrader generate_assignment {self.assignment}` in {self.course} first"
        if not (self.course / "gradebook.db").is_file():
            raise RuntimeError(f"{self.course} has no gradebook.db: {fix}")
        with Gradebook(f"sqlite:///{self.course / 'gradebook.db'}", self.config.CourseDirectory.get("course_id", "")) as gb:
            try:
                gb.find_assignment(self.assignment)
            except MissingEntry:
                raise RuntimeError(f"nbgrader does not know the assignment {self.assignment} (not in gradebook.db): {fix}") from None

    def verdict(self, student: str):
        """Score, max score, and what nbgrader graded silently: missing notebooks, deleted test cells."""
        with Gradebook(f"sqlite:///{self.course / 'gradebook.db'}", self.config.CourseDirectory.get("course_id", "")) as gb:
            submission = gb.find_submission(self.assignment, student)
            missing, deleted = [], []
            folder = self.course / "submitted" / student / self.assignment
            for notebook in submission.notebooks:
                if not (folder / f"{notebook.name}.ipynb").is_file():
                    missing.append(notebook.name)
                    continue
                for grade in notebook.grades:
                    if grade.cell.cell_type == "code" and grade.auto_score is None and not _is_solution(gb, grade):
                        deleted.append(f"{notebook.name}/{grade.name}")
            score, max_score = submission.score, submission.max_score
        if missing:
            return score, max_score, MISSING_NOTEBOOK, ", ".join(missing) + " (scored 0)"
        if deleted:
            return score, max_score, TEST_CELL_DELETED, ", ".join(deleted) + " (needs manual grading)"
        return score, max_score, GRADED, ""


def _is_solution(gradebook, grade) -> bool:
    try:
        gradebook.find_solution_cell(grade.name, grade.notebook.name, grade.assignment.name)
        return True
    except Exception:
        return False


def run_converter(converter, config) -> list:
    """Run one of nbgrader's converters (Autograde, GenerateFeedback) for the student in `config`;
    return the warnings and errors it logged (and an exception it raised) as "LEVEL message"."""
    messages = []
    handler = _Collect(messages)
    logger = logging.getLogger(f"graders.nbgrader.{converter.__name__}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with quiet_nbgrader_warnings():
            converter(coursedir=CourseDirectory(config=config), config=config, log=logger).start()
    except Exception as error:
        messages.append(f"ERROR {type(error).__name__}: {error}")
    finally:
        logger.removeHandler(handler)
    return messages


class _Collect(logging.Handler):
    def __init__(self, messages):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record):
        self.messages.append(f"{record.levelname} {record.getMessage()}")


def reason(messages) -> str:
    """The exception at the bottom of the first traceback nbgrader logged, else its first error."""
    for message in messages:
        if "Traceback (most recent call last)" in message:
            last = [line.strip() for line in message.splitlines() if line.strip()][-1]
            return last.removeprefix("ERROR ")[:300]
    return _first_line(m.removeprefix("ERROR ") for m in messages)


def _measured(runner_says) -> dict:
    """{notebook: {wall_seconds, cpu_seconds, check_...}} from the runner's "ran NAME ..." and "checked NAME ..." lines."""
    measured = {}
    for line in runner_says:
        match = re.fullmatch(r"ran (\S+) in ([\d.]+) s, kernel CPU ([\d.]+) s", line)
        if match:
            measured[match[1]] = {"wall_seconds": float(match[2]), "cpu_seconds": float(match[3])}
        match = re.fullmatch(r"checked (\S+) in ([\d.]+) s, checker CPU ([\d.]+) s, exports ([\d.]+) s", line)
        if match and match[1] in measured:
            measured[match[1]].update(check_wall_seconds=float(match[2]), check_cpu_seconds=float(match[3]),
                                      export_seconds=float(match[4]))
    return measured


def _first_line(lines) -> str:
    for line in lines:
        for part in str(line).splitlines():
            if part.strip() and "Traceback" not in part:
                return part.strip()[:300]
    return ""


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = width * done // max(total, 1)
    return "#" * filled + "-" * (width - filled)


def summary(results: list) -> str:
    lines = [f"{'student':<24} {'score':>6} {'max':>5}  {'status':<18} detail"]
    for r in results:
        score = f"{r.score:g}" if r.status in SCORED or r.score else "-"
        lines.append(f"{r.student:<24} {score:>6} {r.max_score:>5g}  {r.status:<18} {r.detail}")
    counts = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines.append("; ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return "\n".join(lines)
