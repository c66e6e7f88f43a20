"""nbgrader's own Autograde, run twice per student by the batch: once to prepare (no execution:
locked and test cells restored from the gradebook into a staging folder), once to grade (the
outputs the sandbox produced, taken by StagedExecute). Only this process writes the gradebook."""
import shutil
from pathlib import Path

from nbgrader.converters import Autograde
from nbgrader.utils import parse_utc

from graders.course.coursedir import WORK, Course, DiskFull, reason, run_converter
from graders.course.plain import plain
from graders.course.status import Status
from graders.grading.execute import FOREIGN, StagedExecute, autograde_preprocessors
from graders.grading.screen import screen
from graders.isolation.handover import SIDE_EFFECTS, plain_path


class NbgraderSteps:
    def __init__(self, course: Course, assignment: str, max_bytes: int = 64 << 20, max_cells: int = 2000):
        self.course, self.assignment = course, assignment
        self.stage = course.work(assignment) / "stage"
        self.renumbered = course.work(assignment) / "renumbered"  # <student>/<assignment>: copies with cell ids fixed
        self.max_bytes, self.max_cells = max_bytes, max_cells
        self.copied = set()  # students whose both passes read their copy in `renumbered`
        self.notes = {}  # student -> one line per cell id given anew (graders.grading.screen)

    def autograde(self, student: str, output_directory: str, preprocessors: list) -> list:
        """nbgrader's Autograde converter for one student; returns the errors and warnings it logged."""
        config = self.course.config_for(self.assignment, student)
        config.CourseDirectory.autograded_directory = output_directory
        config.Autograde.autograde_preprocessors = preprocessors
        config.Autograde.force = True
        config.StagedExecute.stage_directory = str(self.stage)
        if student in self.copied:
            config.CourseDirectory.submitted_directory = str(Path(WORK) / self.assignment / "renumbered")
        messages = run_converter(Autograde, config)
        DiskFull.check(messages, self.course.root)  # the batch stops: no student's status says "disk full"
        return messages

    def prepare(self, student: str):
        """Step 1: nbgrader prepares the notebooks in the staging folder. Returns (names, problem,
        the foreign cells it graded as ordinary ones: graders.grading.execute.DropForeignCells)."""
        folder = self.stage / student / self.assignment
        if folder.exists():
            shutil.rmtree(folder)
        screened = self.screen(student)
        if screened.problem:
            return [], (Status.INVALID_NOTEBOOK, screened.problem), []
        late = unreadable_timestamp(self.course.folder("submitted", self.assignment, student))
        if late:
            return [], (Status.INVALID_TIMESTAMP, late), []
        messages = self.autograde(student, str(Path(WORK) / self.assignment / "stage"), [])
        foreign = [m.split(" ", 1)[1] for m in messages if m.startswith(f"WARNING {FOREIGN}")]
        errors = [m for m in messages if m.startswith("ERROR")]
        notebooks = sorted(p.stem for p in folder.glob("*.ipynb")) if folder.is_dir() else []
        if any(f"No student with ID '{student}' exists in the database" in m for m in errors):
            return [], (Status.UNKNOWN_STUDENT, f"{plain(student, 80)} is not in the gradebook and the course sets "
                        f"c.Autograde.create_student = False: add them (nbgrader db student add {plain(student, 80)}) "
                        "and grade again"), foreign
        if errors or not notebooks:
            return [], (Status.INVALID_NOTEBOOK, reason(errors) or "nbgrader found no notebook it could read"), foreign
        return notebooks, None, foreign

    def screen(self, student: str):
        """graders.grading.screen on the submission; where cell ids need fixing, nbgrader's passes
        read a copy with them fixed (the same ids both times), never the submission itself."""
        self.forget(student)
        submitted = self.course.folder("submitted", self.assignment, student)
        screened = screen(submitted, self.max_bytes, self.max_cells)
        if screened.fixed and not screened.problem:
            copy = self.renumbered / student / self.assignment
            shutil.copytree(submitted, copy, symlinks=True)
            for name, content in screened.fixed.items():
                (copy / name).write_bytes(content)
            self.copied.add(student)
            self.notes[student] = screened.notes
        return screened

    def forget(self, student: str) -> None:
        """The student's copy with fixed cell ids, once graded (or before a new preparation)."""
        self.copied.discard(student)
        self.notes.pop(student, None)
        shutil.rmtree(self.renumbered / student, ignore_errors=True)

    def test_cells(self) -> dict:
        """{notebook: [grade id]}: the assignment's test cells as the gradebook knows them (graded,
        not an answer, locked: nbgrader restores their source), so that whether a cell's hidden part
        goes to the checker never depends on the metadata a submission wrote (graders.inside.hidden)."""
        with self.course.gradebook() as gradebook:
            found = {}
            for notebook in gradebook.find_assignment(self.assignment).notebooks:
                answers = {cell.name for cell in notebook.solution_cells}
                locked = {cell.name for cell in notebook.source_cells if cell.locked}
                found[notebook.name] = sorted(cell.name for cell in notebook.grade_cells
                                              if cell.cell_type == "code" and cell.name not in answers and cell.name in locked)
            return found

    def grade(self, student: str):
        """Step 3: nbgrader's Autograde on the sandbox's outputs; returns a problem or None."""
        messages = self.autograde(student, self.course.directory.autograded_directory, autograde_preprocessors(StagedExecute))
        errors = [m for m in messages if m.startswith("ERROR")]
        invalid = [m for m in errors if "InvalidExecution" in m]
        if errors:
            return Status.INVALID_RESULT if invalid else Status.NBGRADER_ERROR, reason(invalid or errors)
        self.place_side_effects(student)
        return None

    def place_side_effects(self, student: str) -> None:
        """The files the notebooks wrote (graders.inside.side_effects) into autograded/STUDENT/ASSIGNMENT/,
        as nbgrader's own run leaves them there, with the mode nbgrader gave the graded notebooks; never
        over a graded notebook or the timestamp, never through a link."""
        source = self.stage / student / self.assignment / SIDE_EFFECTS
        destination = self.course.folder("autograded", self.assignment, student)
        if not source.is_dir() or not destination.is_dir():
            return
        graded = sorted(destination.glob("*.ipynb"))
        mode = graded[0].stat().st_mode & 0o7777 if graded else 0o444
        kept = {path.name for path in graded} | {"timestamp.txt", "submission_secret.txt"}
        for path in sorted(source.rglob("*")):
            name = path.relative_to(source)
            if path.is_symlink() or not path.is_file() or not plain_path(name.as_posix()) or str(name) in kept:
                continue
            if any(Path(destination, *name.parts[:depth]).is_symlink() for depth in range(1, len(name.parts) + 1)):
                continue  # a link nbgrader copied from the submission: never written through
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)  # a handed-in file the notebook rewrote: its new content, as in nbgrader's run
            shutil.copyfile(path, target)
            target.chmod(mode)


def unreadable_timestamp(submitted: Path) -> str:
    """Why the submission's timestamp.txt is not a date nbgrader can read, or "" (none, empty or fine:
    nbgrader itself fails on it with an AttributeError, CourseDirectory.fail does not exist)."""
    path = submitted / "timestamp.txt"
    try:
        text = path.read_text(errors="replace").strip() if path.is_file() else ""
        if text:
            parse_utc(text)
    except ValueError:
        return (f"timestamp.txt holds {plain(text, 60)!r}, not a date, so nbgrader cannot tell whether it is late: "
                f"correct it (as nbgrader writes it: 2026-12-01 17:00:00.000000 UTC) or remove it, and grade again")
    except OSError as error:
        return f"timestamp.txt cannot be read ({error.strerror})"
    return ""
