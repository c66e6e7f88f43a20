"""The main job, end to end on a demo class: release, a student's self-check, LMS hand-in,
batch autograde, feedback, export, class report.

Runs in a course directory of its own (a copy of source/ and nbgrader_config.py), with
nbgrader's own commands, its embedded SQLite gradebook and the sandboxed batch grader.
"""
import copy
import logging
import shutil
from pathlib import Path

import nbformat

from graders.course.coursedir import run_nbgrader
from graders.edges import intake
from graders.errors import GradersError
from graders.grading import batch, settings
from graders.isolation import sandbox
from graders.outputs import feedback, report, selfcheck

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]  # the course this demo copies
ASSIGNMENT = "lesson08"
NOTEBOOKS = ("check_your_learning", "mnist_exercise")

MARKER = ".onions-demo"  # a directory holding it was made by this demo and may be replaced

HOSTILE = """try:
    print(open("../../source/lesson08/check_your_learning.ipynb").read()[:80])
except OSError as error:
    print("could not read the hidden tests:", error)
"""


WRITTEN = "(The demo student's answer, in their own words.)"
# the lesson's well-known mistakes (docs/instructors.md, "Misconceptions"), as {cell id: answer}
COUNTING = {"q1_answer": "n_input_items = width * height * channels\nn_parameters = n_input_items * n_hidden_neurons",
            "q2_answer": "n_conv_parameters = n_kernels * (kernel_height * kernel_width * kernel_channels + 1)\n"
                         "ratio = n_parameters / n_conv_parameters",
            "q3_answer": ""}  # 307,200 (biases forgotten), 2,800 (a bias per kernel), the lesson's model as it was
MIXED_CYL = {"q1_answer": "n_parameters = width * height * channels",  # 3,072: inputs only
             "q2_answer": "n_conv_parameters = kernel_height * kernel_width * kernel_channels\n"
                          "ratio = n_parameters / n_conv_parameters",  # 27: one kernel
             "q3_answer": "", "q3_more_or_fewer": 'q3_answer = "more"'}
EXTRA_LAYER_FIRST = ('x = keras.layers.Conv2D(32, (3, 3), activation="relu")(inputs)\n',  # the extra layer, misplaced
                     'x = keras.layers.Conv2D(32, (3, 3), activation="relu")(inputs)\n'
                     'x = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)\n')
LOGITS = [('outputs = keras.layers.Dense(10, activation="softmax")(x)', "outputs = keras.layers.Dense(10)(x)"),
          ('loss="categorical_crossentropy"', "loss=keras.losses.CategoricalCrossentropy(from_logits=True)")]
MIXED_MNIST = {"gap_answer": 'train_val_gap = float(history.history["val_accuracy"][-1] - history.history["accuracy"][-1])',
               "dropout_answer": "dropout_rate = 0.1\nmodel_dropout = build_model(dropout_rate)\n"
                                 "history_dropout = model_dropout.fit(train_data, epochs=1, validation_data=test_data, verbose=2)"}


def copy_course(directory: Path) -> None:
    """A new course in `directory` (empty or new) holding this course's source/ and nbgrader_config.py."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise GradersError(f"{directory} is not empty: choose a new directory or remove it first")
    shutil.copytree(REPO / "source", directory / "source")
    shutil.copy2(REPO / "nbgrader_config.py", directory / "nbgrader_config.py")


def _edited(notebook, cell_id, old, new):
    notebook = copy.deepcopy(notebook)
    cell = next(c for c in notebook.cells if c.get("id") == cell_id)
    assert old in cell.source, (cell_id, old)
    cell.source = cell.source.replace(old, new)
    return notebook


def solutions(source) -> dict:
    """{cell id: the code between the solution markers} of the instructor's notebook (indented as there)."""
    found = {}
    for cell in source.cells:
        lines = cell.source.split("\n")
        marks = [i for i, line in enumerate(lines) if "BEGIN SOLUTION" in line or "END SOLUTION" in line]
        if cell.cell_type == "code" and len(marks) == 2:
            found[cell.get("id")] = "\n".join(lines[marks[0] + 1:marks[1]])
    return found


def hand_in(release, answers: dict, written: str = WRITTEN):
    """The released notebook with `answers` ({cell id: code}) where `# YOUR CODE HERE` stands and
    `written` in every written answer: as a student fills it in, with no solution marker."""
    notebook = copy.deepcopy(release)
    for cell in notebook.cells:
        if cell.get("id") in answers and cell.cell_type == "code":
            lines = cell.source.split("\n")
            at = next(i for i, line in enumerate(lines) if line.strip() == "# YOUR CODE HERE")
            assert lines[at + 1].strip() == "raise NotImplementedError()", cell.source
            lines[at:at + 2] = answers[cell.get("id")].split("\n")
            cell.source = "\n".join(lines)
        elif cell.cell_type == "markdown" and cell.source.strip() == "YOUR ANSWER HERE":
            cell.source = written
    return notebook


def students(directory: Path) -> dict:
    """{student: {file name: bytes}}: a small class with the usual troubles and the usual mistakes,
    each handed in as students make them, from the release."""
    def load(folder, name):
        return nbformat.read(str(directory / folder / ASSIGNMENT / f"{name}.ipynb"), as_version=4)

    def files(cyl, mnist):
        return {"check_your_learning.ipynb": nbformat.writes(cyl).encode(), "mnist_exercise.ipynb": nbformat.writes(mnist).encode()}

    cyl, mnist = NOTEBOOKS
    blank = {name: load("release", name) for name in NOTEBOOKS}
    right = {name: solutions(load("source", name)) for name in NOTEBOOKS}
    reference = {name: hand_in(blank[name], right[name]) for name in NOTEBOOKS}
    partial = hand_in(blank[cyl], {**right[cyl], "q3_more_or_fewer": 'q3_answer = "more"'})
    hostile = _edited(reference[cyl], "q1_answer", "width, height", HOSTILE + "width, height")
    crash = _edited(reference[cyl], "q1_answer", "width, height", "import os\nos._exit(1)\nwidth, height")
    counting = hand_in(blank[cyl], {**right[cyl], **COUNTING})
    mixed_cyl = _edited(hand_in(blank[cyl], {**right[cyl], **MIXED_CYL}), "q3_answer", *EXTRA_LAYER_FIRST)
    training = right[mnist]["training_answer"]
    for old, new in LOGITS:
        assert old in training, old
        training = training.replace(old, new)
    mixed_mnist = hand_in(blank[mnist], {**right[mnist], **MIXED_MNIST, "training_answer": training})
    broken = files(reference[cyl], blank[mnist])
    broken["check_your_learning.ipynb"] = broken["check_your_learning.ipynb"][:500]
    return {
        "demo-reference": files(reference[cyl], reference[mnist]),  # full marks on every autograded cell
        "demo-partial": files(partial, blank[mnist]),  # Q3 "more", the exercise not done
        "demo-counting": files(counting, blank[mnist]),  # Q1 without biases, Q2 with them, Q3 without the extra layer
        "demo-mixed": files(mixed_cyl, mixed_mnist),  # COUNTING's others, and the exercise's usual mistakes
        "demo-blank": files(blank[cyl], blank[mnist]),  # the release handed in untouched
        "demo-hostile": files(hostile, blank[mnist]),  # tries to read the hidden tests
        "demo-crash": files(crash, blank[mnist]),  # kills its own kernel
        "demo-broken": broken,  # a notebook cut short: not valid JSON
    }


def run(directory: Path, use_sandbox: bool = True) -> list:
    directory = Path(directory).resolve()  # nbgrader runs in it: a relative path would point elsewhere
    if (directory / MARKER).is_file():
        shutil.rmtree(directory)
    copy_course(directory)
    (directory / MARKER).write_text("made by: python -m graders demo (replaced on the next run)\n")
    nbgrader_log = directory / "nbgrader.log"
    logger.info(f"demo class in {directory}")
    run_nbgrader(directory, "generate_assignment", ASSIGNMENT, "--force", log=nbgrader_log)
    logger.info(f"generated release/{ASSIGNMENT} with nbgrader generate_assignment")
    handed_in = students(directory)
    draft = directory / "student-draft" / "check_your_learning.ipynb"  # demo-partial's, before handing in
    draft.parent.mkdir()
    draft.write_bytes(handed_in["demo-partial"]["check_your_learning.ipynb"])
    logger.info("a student checks their notebook before handing it in: python -m graders selfcheck check_your_learning.ipynb")
    logger.info(selfcheck.report(str(draft.relative_to(directory)), selfcheck.check(draft)))
    archive = intake.lms_archive(directory / "lms-download.zip", handed_in)
    logger.info(f"the class hands in through an LMS: {archive.name}, as Canvas' 'Download Submissions' names it")
    intake.intake(directory, archive, ASSIGNMENT)
    limits = sandbox.Limits()
    grader = batch.Batch(directory, ASSIGNMENT, limits, settings.default_workers(limits.memory_bytes),
                         use_sandbox=use_sandbox)
    results = grader.run()
    logger.info(batch.summary(results))
    feedback.Feedback(directory, ASSIGNMENT).run()
    run_nbgrader(directory, "export", "--to", str(directory / "grades.csv"), log=nbgrader_log)
    logger.info(f"grades exported by nbgrader export: {directory / 'grades.csv'}")
    logger.info(f"written answers: TAs grade them in formgrader (docs/tas.md, 'Grade the written answers in formgrader'): "
                f"cd {directory} && jupyter server, then open /formgrader")
    path = report.write_report(directory, ASSIGNMENT)
    logger.info(f"class report: {path}")
    return results
