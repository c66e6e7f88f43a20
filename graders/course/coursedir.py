"""The course directory as nbgrader configures it, in one place.

`Course` loads `nbgrader_config.py` once, names folders through nbgrader's `CourseDirectory`,
opens the gradebook one way, runs nbgrader's converters and keeps the batch grader's records
(`BatchState`). The batch grader, feedback, the report and intake all stand on it.

Importing it also keeps, for the process, two things nbgrader rebuilds at every step though they
depend on nothing a student hands in (below, "nbgrader without its repeated set-up").
"""
import contextlib
import copy
import dataclasses
import errno
import json
import logging
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import jsonschema
import nbgrader.api
import nbgrader.nbgraderformat.common
import sqlalchemy
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from traitlets import Float
from traitlets.config import Configurable
from traitlets.config.loader import PyFileConfigLoader

from graders.course.status import Status
from graders.errors import GradersError
from graders.files import write_atomically

WORK = ".graders"  # the batch grader's state, staging and logs, inside the course directory


class GradersGradebook(Configurable):
    """How the grader opens the course's gradebook (c.GradersGradebook.* in nbgrader_config.py)."""
    busy_timeout = Float(120, help="seconds the grader waits for another writer of an SQLite gradebook "
                         "(Formgrader, a TA) to let go of its lock before 'database is locked'; SQLite's own "
                         "default is 5").tag(config=True)


# -- nbgrader without its repeated set-up -----------------------------------------------------------
# Per student the batch grader runs nbgrader's Autograde twice; in them nbgrader opens its Gradebook
# about 20 times and validates every graded cell's metadata three times. What it ran and wrote stays
# the same (the same SQL on the same database, the same validation); only the set-up is kept.

_engines, _engines_lock = {}, threading.Lock()
_busy_seconds = {}  # gradebook URL -> its course's c.GradersGradebook.busy_timeout (Course sets it)


def _shared_engine(url, **kwargs):
    """nbgrader's `create_engine`: one SQLAlchemy engine per database for the process. nbgrader's
    Gradebook makes a new engine at every open, and with it an empty cache of compiled statements,
    so every query was compiled anew (a third of the batch's main process). Gradebook.close still
    closes the connections (engine.dispose), so nothing stays open between opens."""
    if str(url).startswith("sqlite") and "connect_args" not in kwargs:
        # Formgrader may be writing the same gradebook: wait for its lock as long as a loaded
        # machine may hold it, not SQLite's default 5 s ("database is locked" into a status)
        default = GradersGradebook.class_traits()["busy_timeout"].default_value
        kwargs["connect_args"] = {"timeout": _busy_seconds.get(str(url), default)}
    key = (str(url), repr(sorted(kwargs.items())))
    with _engines_lock:
        if key not in _engines:
            _engines[key] = sqlalchemy.create_engine(url, **kwargs)
        return _engines[key]


class _SchemasCheckedOnce:
    """`jsonschema.validate` as nbgrader's cell-metadata validator calls it, with each schema checked
    against its metaschema once instead of at every cell (most of the cost of validating a cell)."""

    def __init__(self):
        self.validators, self.lock = [], threading.Lock()  # (schema, its validator): one per schema version

    def validate(self, instance, schema):
        with self.lock:
            validator = next((v for known, v in self.validators if known == schema), None)
            if validator is None:
                schema = copy.deepcopy(schema)
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                validator = cls(schema)
                self.validators.append((schema, validator))
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error


nbgrader.api.create_engine = _shared_engine
nbgrader.nbgraderformat.common.jsonschema = _SchemasCheckedOnce()


class CourseError(GradersError):
    """Something is wrong with the course directory: one line naming it and the fix."""


class DiskFull(CourseError):
    """The disk holding the course filled up: the batch stops (no student gets a status from it)."""

    MARKERS = ("No space left on device", "database or disk is full", "Disk quota exceeded")
    LOW = 16 << 20  # below this the disk counts as full: a student who fills the sandbox's own tmpfs does not stop the batch

    @classmethod
    def check(cls, texts, path) -> None:
        """Raise if any of `texts` (an error's messages) says a disk is full and the one holding
        `path` nearly is (the message may be a student's own, from inside the sandbox)."""
        if any(marker in str(text) for text in texts for marker in cls.MARKERS) and _free(path)[1] < cls.LOW:
            raise cls.at(path)

    @classmethod
    def at(cls, path) -> "DiskFull":
        mount, free = _free(path)
        return cls(f"the disk holding {path} ({mount}, {free >> 20} MB free) is full: free space there and run the "
                   "same command again; graded students are kept")


def _free(path) -> tuple:
    """(the mount point holding `path`, its bytes free)."""
    mount = Path(path).resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        return mount, os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    except OSError:
        return mount, 0


class Course:
    def __init__(self, root):
        self.root = Path(root).resolve()
        if not (self.root / "nbgrader_config.py").is_file():
            raise CourseError(f"{self.root} has no nbgrader_config.py: run in the course directory or pass --course")
        self.config = PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()
        if "AutogradeApp" in self.config:  # outdated, and merged into Autograde, as nbgrader's AutogradeApp does
            logging.getLogger(__name__).warning("Use Autograde in nbgrader_config.py, not AutogradeApp: "
                           + ", ".join(f"AutogradeApp.{key} = {value!r}" for key, value in self.config.AutogradeApp.items()))
            self.config.Autograde.merge(self.config.AutogradeApp)
            del self.config.AutogradeApp
        self.config.CourseDirectory.root = str(self.root)
        self.directory = CourseDirectory(config=self.config)
        _busy_seconds[self.directory.db_url] = GradersGradebook(config=self.config).busy_timeout

    def hidden_delimiters(self) -> tuple:
        """(begin, end): the hidden-test delimiters as this course configures nbgrader's ClearHiddenTests,
        for the runner's split and feedback's redaction alike."""
        from nbgrader.preprocessors import ClearHiddenTests

        clear = ClearHiddenTests(config=self.config)
        return clear.begin_test_delimeter, clear.end_test_delimeter

    def config_for(self, assignment: str, student: str = "."):
        """A copy of the configuration aimed at one assignment (and student), for nbgrader's converters."""
        config = copy.deepcopy(self.config)
        config.CourseDirectory.assignment_id = assignment
        config.CourseDirectory.student_id = student
        return config

    def folder(self, kind: str, assignment: str, student: str = ".") -> Path:
        """`kind` is "source", "release", "submitted", "autograded" or "feedback", as nbgrader names it."""
        name = getattr(self.directory, f"{kind}_directory")
        return Path(self.directory.format_path(name, student, assignment))

    def students(self, assignment: str, excluded: bool = False) -> list:
        """Everyone with a submitted/<student>/<assignment> folder, but those the course excludes
        (nbgrader's c.CourseDirectory.student_id_exclude); with `excluded`, those only."""
        pattern = f"*/{assignment}"
        found = sorted(p.parent.name for p in (self.root / self.directory.submitted_directory).glob(pattern) if p.is_dir())
        return [student for student in found if (student in self.excluded()) == excluded]

    def excluded(self) -> set:
        """The students nbgrader's commands leave out (c.CourseDirectory.student_id_exclude, comma-separated)."""
        return {student for student in self.directory.student_id_exclude.split(",") if student}

    def work(self, assignment: str) -> Path:
        return self.root / WORK / assignment

    def state(self, assignment: str) -> "BatchState":
        return BatchState(self.work(assignment))

    @contextlib.contextmanager
    def gradebook(self):
        """nbgrader's Gradebook; a missing SQLite file is an error here (nbgrader would make an empty one)."""
        url = self.directory.db_url
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
            raise CourseError(f"no gradebook at {url[len('sqlite:///'):]}: run nbgrader generate_assignment "
                              "(and grade) first, or point --course at the course directory")
        with Gradebook(url, self.directory.course_id) as gradebook:
            yield gradebook

    def check_assignment(self, assignment: str) -> None:
        """Stop before grading if nbgrader does not know the assignment (its release was never generated)."""
        fix = f"run `nbgrader generate_assignment {assignment}` in {self.root} first"
        try:
            with self.gradebook() as gradebook:
                gradebook.find_assignment(assignment)
        except CourseError:
            raise CourseError(f"{self.root} has no gradebook.db: {fix}") from None
        except MissingEntry:
            raise CourseError(f"nbgrader does not know the assignment {assignment} (not in gradebook.db): {fix}") from None


    def verdict(self, assignment: str, student: str):
        """(score, max score, status, detail) of a graded submission, with what nbgrader graded
        silently: missing notebooks (scored 0), deleted test cells (left for manual grading)."""
        missing, deleted = [], []
        folder = self.folder("submitted", assignment, student)
        with self.gradebook() as gb:
            submission = gb.find_submission(assignment, student)
            for notebook in submission.notebooks:
                if not (folder / f"{notebook.name}.ipynb").is_file():
                    missing.append(notebook.name)
                    continue
                answers = {cell.name for cell in notebook.notebook.solution_cells}
                deleted += [f"{notebook.name}/{grade.name}" for grade in notebook.grades
                            if grade.cell.cell_type == "code" and grade.auto_score is None and grade.name not in answers]
            (score, late), max_score = penalised(submission), submission.max_score
        if missing:
            return score, max_score, Status.MISSING_NOTEBOOK, "; ".join(filter(None, [", ".join(missing) + " (scored 0)", late]))
        if deleted:
            return score, max_score, Status.TEST_CELL_DELETED, "; ".join(filter(None, [", ".join(deleted) + " (needs manual grading)", late]))
        return score, max_score, Status.GRADED, late


def penalised(submission) -> tuple:
    """(score, note): nbgrader's score after its late penalty, as `nbgrader export` computes it."""
    penalty = submission.late_submission_penalty or 0.0
    note = f"late: -{penalty:g} (nbgrader's late penalty)" if penalty else ""
    return max(0.0, submission.score - penalty), note


class BatchState:
    """The batch grader's record of each student (and the watcher's of each hand-in): an append-only
    journal, one JSON line per graded student, so recording one of 10,000 students does not rewrite
    everyone. Loading keeps each student's last line; a line cut short by a crash is ignored."""

    def __init__(self, work: Path, name: str = "state.jsonl"):
        self.work = Path(work)
        self.path = self.work / name

    def load(self) -> dict:
        state = {}
        try:
            with open(self.path, encoding="utf-8") as journal:
                lines = list(journal)
        except OSError:  # the batch's journal may still be the earlier versions' state.json
            return self._from_state_json() if self.path.name == "state.jsonl" else {}
        for line in lines:
            try:
                student, entry = json.loads(line)
            except ValueError:  # torn by a crash: that student is graded again
                continue
            state[student] = entry
        if len(lines) > 2 * len(state) + 100:
            self.rewrite(state)
        return state

    def _from_state_json(self) -> dict:
        """The earlier versions' state.json (one JSON object), moved into a journal once."""
        try:
            state = json.loads((self.work / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict):
            return {}
        self.rewrite(state)
        (self.work / "state.json").unlink()
        return state

    def record(self, student: str, entry: dict) -> None:
        """Append one line and fsync it. A line torn by a kill or a full disk is closed first, so
        the torn line alone is lost, never the good one written after it."""
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "ab") as journal:
                torn = journal.tell() > 0 and _last_byte(self.path) != b"\n"
                journal.write((b"\n" if torn else b"") + json.dumps([student, entry], sort_keys=True).encode() + b"\n")
                journal.flush()
                os.fsync(journal.fileno())
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull.at(self.path) from None
            raise

    def rewrite(self, state: dict) -> None:
        """Replace the journal with one line per student of `state`; a crash leaves the old one whole."""
        lines = "".join(json.dumps([student, entry], sort_keys=True) + "\n" for student, entry in sorted(state.items()))
        write_atomically(self.path, lambda journal: journal.write(lines.encode("utf-8")))


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as journal:
        journal.seek(-1, os.SEEK_END)
        return journal.read(1)


def run_nbgrader(course: Path, *args: str, log: Path = None) -> subprocess.CompletedProcess:
    """Run an nbgrader command in `course` with this interpreter; output to `log` if given.

    nbgrader starts `alembic` and Jupyter kernels by name, so this venv's bin/ goes first on PATH.
    """
    env = dict(os.environ)
    # ipykernel stops forwarding file-descriptor output (TensorFlow's C++ logs) to the notebook
    # when it sees this variable; grading must behave the same when run from the tests.
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "nbgrader", *args]
    if log is None:
        result = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True)
        output = result.stdout + result.stderr
    else:
        with open(log, "a") as stream:
            result = subprocess.run(command, cwd=course, env=env, stdout=stream, stderr=subprocess.STDOUT)
        output = f"see {log}"
    if result.returncode != 0:
        raise GradersError(f"nbgrader {' '.join(args)} failed (exit {result.returncode}): {output[-2000:]}")
    return result


@contextlib.contextmanager
def quiet_nbgrader_warnings():
    """Hide nbgrader 0.9's SQLAlchemy 2 warnings ("Object of type <...> not in session"): they
    come on every regrade, change nothing, and would drown the progress lines. Main thread only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session")
        yield


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
    return first_line(m.removeprefix("ERROR ") for m in messages)


def hashed_files(course: Course, paths) -> bytes:
    """Files as the grade's fingerprints hash them (graders.grading.batch and recheck): each one's
    path in the course, then its bytes."""
    return b"".join(str(path.relative_to(course.root)).encode() + b"\0" + path.read_bytes() + b"\0" for path in paths)


def files_under(folder: Path) -> list:
    return [path for path in sorted(folder.rglob("*")) if path.is_file()]


def limits_bytes(limits) -> bytes:
    """A sandbox's limits (graders.isolation.sandbox.Limits) as the fingerprints hash them."""
    return json.dumps({k: float(v) for k, v in dataclasses.asdict(limits).items()}, sort_keys=True).encode()


def first_line(lines) -> str:
    for line in lines:
        for part in str(line).splitlines():
            if part.strip() and "Traceback" not in part:
                return part.strip()[:300]
    return ""
