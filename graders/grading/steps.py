"""nbgrader's own Autograde, run twice per student by the batch: once to prepare (no execution:
locked and test cells restored from the gradebook into a staging folder), once to grade (the
outputs the sandbox produced, taken by StagedExecute). Only this process writes the gradebook."""
import shutil
from pathlib import Path

from nbgrader.converters import Autograde

from graders.course.coursedir import WORK, Course, DiskFull, reason, run_converter
from graders.course.status import Status
from graders.grading.execute import FOREIGN, StagedExecute, autograde_preprocessors


class NbgraderSteps:
    def __init__(self, course: Course, assignment: str):
        self.course, self.assignment = course, assignment
        self.stage = course.work(assignment) / "stage"

    def autograde(self, student: str, output_directory: str, preprocessors: list) -> list:
        """nbgrader's Autograde converter for one student; returns the errors and warnings it logged."""
        config = self.course.config_for(self.assignment, student)
        config.CourseDirectory.autograded_directory = output_directory
        config.Autograde.autograde_preprocessors = preprocessors
        config.Autograde.force = True
        config.StagedExecute.stage_directory = str(self.stage)
        messages = run_converter(Autograde, config)
        DiskFull.check(messages, self.course.root)  # the batch stops: no student's status says "disk full"
        return messages

    def prepare(self, student: str):
        """Step 1: nbgrader prepares the notebooks in the staging folder. Returns (names, problem,
        the foreign cells it graded as ordinary ones: graders.grading.execute.DropForeignCells)."""
        folder = self.stage / student / self.assignment
        if folder.exists():
            shutil.rmtree(folder)
        messages = self.autograde(student, str(Path(WORK) / self.assignment / "stage"), [])
        foreign = [m.split(" ", 1)[1] for m in messages if m.startswith(f"WARNING {FOREIGN}")]
        errors = [m for m in messages if m.startswith("ERROR")]
        notebooks = sorted(p.stem for p in folder.glob("*.ipynb")) if folder.is_dir() else []
        if errors or not notebooks:
            return [], (Status.INVALID_NOTEBOOK, reason(errors) or "nbgrader found no notebook it could read"), foreign
        return notebooks, None, foreign

    def grade(self, student: str):
        """Step 3: nbgrader's Autograde on the sandbox's outputs; returns a problem or None."""
        messages = self.autograde(student, self.course.directory.autograded_directory, autograde_preprocessors(StagedExecute))
        errors = [m for m in messages if m.startswith("ERROR")]
        invalid = [m for m in errors if "InvalidExecution" in m]
        if errors:
            return Status.INVALID_RESULT if invalid else Status.NBGRADER_ERROR, reason(invalid or errors)
        return None
