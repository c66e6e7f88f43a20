"""One real class, graded once per test session by nbgrader's own generate_assignment and autograde."""
import pytest

import submissions
from graders import course


class GradedClass:
    def __init__(self, directory):
        self.directory = directory
        self.table = course.grades(directory)

    def scores(self, student, notebook):
        """{grade cell: (score, max_score, needs_manual_grade)} of one notebook."""
        return {cell: grade for (name, cell), grade in self.table[student].items() if name == notebook}

    def executed(self, student, notebook):
        return course.read_notebook(self.directory / "autograded" / student / course.ASSIGNMENT / f"{notebook}.ipynb")


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    directory = course.copy_course(tmp_path_factory.mktemp("class") / "course")
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    for student, notebooks in submissions.build(directory).items():
        course.submit(directory, student, notebooks)
    course.nbgrader(directory, "autograde", course.ASSIGNMENT, log=directory / "autograde.log")
    return GradedClass(directory)
