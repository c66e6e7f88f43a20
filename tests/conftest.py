"""One real class, graded once per test session by nbgrader's own generate_assignment and autograde."""
import concurrent.futures
import hashlib
import os
import uuid
from pathlib import Path

import pytest

import submissions
import course


class GradedClass:
    def __init__(self, directory):
        self.directory = directory
        self.table = course.grades(directory)

    def scores(self, student, notebook):
        """{grade cell: (score, max_score, needs_manual_grade)} of one notebook."""
        return {cell: grade for (name, cell), grade in self.table[student].items() if name == notebook}

    def executed(self, student, notebook):
        return course.read_notebook(self.directory / "autograded" / student / course.ASSIGNMENT / f"{notebook}.ipynb")


def handed_in_class(tmp_path_factory, name):
    """A new course with its release generated and the test class's submissions handed in."""
    directory = course.copy_course(tmp_path_factory.mktemp(name) / "course")
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    for student, notebooks in submissions.build(directory).items():
        course.submit(directory, student, notebooks)
    return directory


# The tiers (docs/internals.md, "Tests"): a test is `slow` when it grades a class, trains or runs a
# hub, through one of these fixtures or its own mark; `browser` drives Chromium; `network` installs
# from PyPI or npm. `pytest -m "not slow"` is the daily tier; CI runs everything.
SLOW_FIXTURES = {"graded_class", "batch_class", "demo_class", "dask_cluster", "cheap_local", "cluster_class",
                 "server", "term", "clean_run", "feedback_class", "formgrader", "hub", "class_course", "built",
                 "account", "lms_class", "account_clone", "account_batch", "rechecked", "regenerated", "reported",
                 "tiny_course", "edited_metadata"}
BROWSER_FIXTURES = {"browser", "formgrader", "hub"}
NETWORK_FIXTURES = {"hub", "account", "account_clone"}


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for mark, fixtures in (("slow", SLOW_FIXTURES), ("browser", BROWSER_FIXTURES), ("network", NETWORK_FIXTURES)):
            if used & fixtures:
                item.add_marker(mark)


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """The class graded by stock nbgrader's own `nbgrader autograde`: two of them side by side, each
    over half the students (--CourseDirectory.student_id_exclude the other half), so that both cores
    work; each notebook is graded on its own either way."""
    directory = handed_in_class(tmp_path_factory, "class")
    students = sorted(path.name for path in (directory / "submitted").iterdir())
    halves = [students[0::2], students[1::2]]  # sorted: the students who train fall in both

    def autograde(half: int):
        course.nbgrader(directory, "autograde", course.ASSIGNMENT, f"--CourseDirectory.student_id_exclude={','.join(halves[1 - half])}",
                        log=directory / f"autograde-{half}.log")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(autograde, (0, 1)))
    graded = GradedClass(directory)
    assert sorted(graded.table) == students, "each half graded its own students, and only them"
    return graded


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class BatchClass(GradedClass):
    """The class of graded_class plus the bad-submission corpus and the grading split's students
    (cheats.split_students), graded by `python -m graders autograde`."""

    LIMITS = dict(wall_seconds=300, memory_bytes=3 << 30, processes=512)
    SHORT = dict(LIMITS, wall_seconds=40)  # for the submissions that never finish

    def __init__(self, directory, results, expected, submitted_before):
        super().__init__(directory)
        self.results = {r.student: r for r in results}
        self.expected = expected
        self.submitted_before = submitted_before


@pytest.fixture(scope="session")
def batch_class(tmp_path_factory):
    import cheats
    import corpus
    from graders.grading import batch
    from graders.isolation import sandbox

    directory = handed_in_class(tmp_path_factory, "batch")
    reference = {name: course.read_notebook(directory / "source" / course.ASSIGNMENT / f"{name}.ipynb")
                 for name in course.NOTEBOOKS}
    for student, notebooks in cheats.split_students(reference).items():  # the grading split's, this grader only
        course.submit(directory, student, notebooks)
    secret = Path.home() / f".onions-secret-{uuid.uuid4().hex[:12]}"  # one per session: two may run at once
    secret.write_text("the grader's private file")
    try:
        bad = corpus.build(directory, secret)
        corpus.write(directory, bad)
        before = tree_digest(directory / "submitted")
        everyone = sorted(p.name for p in (directory / "submitted").iterdir())
        slow = ["fork-bomb", "infinite-loop"]
        results = batch.Batch(directory, course.ASSIGNMENT, sandbox.Limits(**BatchClass.LIMITS), workers=2).run([s for s in everyone if s not in slow])
        results += batch.Batch(directory, course.ASSIGNMENT, sandbox.Limits(**BatchClass.SHORT), workers=2).run(slow)
    finally:
        secret.unlink()
    expected = {student: status for student, (_, status) in bad.items()}
    return BatchClass(directory, results, expected, before)


@pytest.fixture(scope="session")
def demo_class(tmp_path_factory):
    """The README's demo class (release, hand-in, sandboxed batch grade, export), made once.

    Tests read it; a test that changes it (the gradebook, autograded/ ...) works on a copy.
    """
    from graders import demo

    directory = tmp_path_factory.mktemp("demo") / "course"
    # relative, as the README's `python -m graders demo --dir demo` gives it
    results = demo.run(Path(os.path.relpath(directory)))
    return directory, {r.student: r for r in results}
