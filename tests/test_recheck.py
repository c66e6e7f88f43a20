"""`autograde --recheck` on a copy of the suite's graded class: the accuracy bar raised (0.97 ->
0.99) and Q1's hidden check widened (307200, the biases forgotten, now accepted) in source/, then
`nbgrader generate_assignment`; only the hidden checks run again, on the kept exports.

The expected scores are derived exactly, without training anyone again: every cell but the two
edited ones keeps its score; Q1 now passes for 307200; the accuracy cell fails for a trained
student only if its grading accuracy, computed here from its kept exports, is below 0.99. Two
cheap students are also regraded in full (--force) and compared cell for cell.
"""
import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import course

CHEAP = ["q1-no-bias", "blank"]  # no training


def edit(root, name, grade_id, old, new):
    path = root / "source" / course.ASSIGNMENT / f"{name}.ipynb"
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            source = "".join(cell["source"])
            assert old in source, f"{grade_id} no longer holds {old!r}: update tests/test_recheck.py"
            cell["source"] = source.replace(old, new)
    path.write_text(json.dumps(notebook, indent=1))


def autograde(root, *args):
    limits = course_limits()
    return subprocess.run([sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, *limits, *args],
                          cwd=root, capture_output=True, text=True)


def course_limits():
    from conftest import BatchClass
    limits = BatchClass.LIMITS
    return ["--timeout", str(limits["wall_seconds"]), "--memory", str(limits["memory_bytes"]),
            "--processes", str(limits["processes"])]


def grading_accuracy(store, folder, course_dir):
    """The reference's accuracy on the grading images, from its kept exports, as the check computes it:
    with the labels of the course's grading secret, in its order."""
    from graders.course import gradingsplit
    from graders.inside import artifacts
    artifacts.unpack((store / "mnist_exercise.exports.tar.xz").read_bytes(), folder)
    cell = next(path for path in folder.iterdir() if (path / "_grading_inputs.npy").exists())
    values, _ = artifacts.load(str(cell), ["model", "_grading_inputs", "DATASET"])
    outputs = np.concatenate([np.asarray(values["model"](values["_grading_inputs"][i:i + 1000], training=False))
                              for i in range(0, len(values["_grading_inputs"]), 1000)])
    labels = np.load(gradingsplit.build(gradingsplit.course_secret(course_dir)).labels(values["DATASET"]))
    return float(np.mean(np.argmax(outputs, axis=-1) == labels))


@pytest.fixture(scope="module")
def rechecked(batch_class, tmp_path_factory):
    root = tmp_path_factory.mktemp("recheck") / "course"
    shutil.copytree(batch_class.directory, root, symlinks=True)
    before = course.grades(root)
    diagnosed = diagnoses(root)
    # a changed submission (an answer cell: the test cells' public parts come from the gradebook)
    submitted = root / "submitted" / "q2-with-bias" / course.ASSIGNMENT / "check_your_learning.ipynb"
    submitted.write_text(submitted.read_text().replace("n_kernels * (kernel_height", "n_kernels * ( kernel_height"))
    works = root / ".graders" / course.ASSIGNMENT / "exports"
    (works / "q3-more" / "check_your_learning.exports.tar.xz").write_bytes(b"tampered")
    (works / "q1-inputs-only" / "check_your_learning.previous.ipynb").unlink()
    accuracy = grading_accuracy(works / "reference", tmp_path_factory.mktemp("unpacked"), root)
    edit(root, "mnist_exercise", "accuracy_test", '{"mnist": 0.97,', '{"mnist": 0.99,')
    edit(root, "check_your_learning", "q1_test", "assert n_parameters == 307300,", "assert n_parameters in (307300, 307200),")
    course.nbgrader(root, "generate_assignment", course.ASSIGNMENT, "--force")
    students = ["reference", "blank", "q1-no-bias", "q1-inputs-only", "q2-with-bias", "q3-more", "q3-no-extra-layer"]
    run = autograde(root, "--recheck", *[f"--student={s}" for s in students])
    return root, before, course.grades(root), run.stdout + run.stderr, accuracy, diagnosed


def diagnoses(root):
    """{student: the diagnoses of their hidden checks} from the batch state, as feedback reads them."""
    found = {}
    for line in (root / ".graders" / course.ASSIGNMENT / "state.jsonl").read_text().splitlines():
        student, entry = json.loads(line)
        found[student] = entry["result"].get("diagnoses", {})
    return found


def line(output, student):
    return next(text for text in output.splitlines() if text.startswith(student + " "))


def test_recheck_scores_equal_a_full_regrade(rechecked):
    root, before, after, output, accuracy, _ = rechecked
    assert "rechecked (2 hidden checks run again)" in line(output, "reference"), output
    assert "rechecked (1 hidden check run again)" in line(output, "q1-no-bias"), output
    assert "rechecked (0 hidden checks run again)" in line(output, "blank"), output  # no sandbox: nothing changed for it
    expected = dict(before["reference"])
    if accuracy < 0.99:
        expected[("mnist_exercise", "accuracy_test")] = (0.0, 3.0, False)
    assert after["reference"] == expected
    expected = {**before["q1-no-bias"], ("check_your_learning", "q1_test"): (1.0, 1.0, False)}
    assert after["q1-no-bias"] == expected
    assert after["blank"] == before["blank"]


def test_a_check_not_run_again_keeps_its_score_and_diagnosis_and_a_changed_one_gets_new_ones(rechecked):
    """q3-no-extra-layer (Q3's model check failed with a misconception; only Q1 was edited): its Q3
    result and hint stay (that check is not run again); q1-no-bias's Q1
    diagnosis ("biases forgotten") is gone now that its answer passes."""
    root, before, after, output, _, diagnosed = rechecked
    assert "rechecked (1 hidden check run again)" in line(output, "q3-no-extra-layer"), output
    assert after["q3-no-extra-layer"] == before["q3-no-extra-layer"]
    now = diagnoses(root)
    key = "check_your_learning:q3_model_test"
    assert diagnosed["q3-no-extra-layer"][key]["misconception"] == "extra layer left out"
    assert now["q3-no-extra-layer"] == diagnosed["q3-no-extra-layer"]
    assert "check_your_learning:q1_test" in diagnosed["q1-no-bias"]
    assert "check_your_learning:q1_test" not in now["q1-no-bias"]


def test_feedback_follows_the_recheck(rechecked):
    """`graders feedback` after a recheck: the hints of the checks kept and none of the one that
    passes now, and not a line of the new hidden parts."""
    root = rechecked[0]
    run = subprocess.run([sys.executable, "-m", "graders", "feedback", course.ASSIGNMENT, "--student", "q3-no-extra-layer",
                          "--student", "q1-no-bias"], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    page = {student: (root / "feedback" / student / course.ASSIGNMENT / "check_your_learning.html").read_text()
            for student in ("q3-no-extra-layer", "q1-no-bias")}
    assert "add the extra Conv2D layer" in page["q3-no-extra-layer"]
    assert "Count the biases too" not in page["q1-no-bias"]
    for text in page.values():
        assert "(307300, 307200)" not in text and "BEGIN HIDDEN" not in text


def test_fallbacks_fail_closed(rechecked):
    root, before, after, output, _, _ = rechecked
    assert "full grading: changed since it was graded: submission" in line(output, "q2-with-bias"), output
    assert "full grading: the kept check_your_learning.exports.tar.xz is missing or altered" in line(output, "q3-more"), output
    assert "full grading: the kept check_your_learning.previous.ipynb is missing or altered" in line(output, "q1-inputs-only")
    for student in ["q2-with-bias", "q3-more", "q1-inputs-only"]:  # graded in full: as before but Q1's edit
        assert after[student] == before[student], student


def test_a_full_regrade_of_cheap_students_agrees(rechecked):
    root, _, after, _, _, _ = rechecked
    copy = root.parent / "full"
    shutil.copytree(root, copy, symlinks=True)
    run = autograde(copy, "--force", *[f"--student={s}" for s in CHEAP])
    assert run.returncode in (0, 1), run.stderr
    full = course.grades(copy)
    for student in CHEAP:
        assert full[student] == after[student], student


def test_the_fingerprint_ignores_hidden_parts_and_sees_public_parts_and_submissions(tmp_path):
    """No kernel, no batch: a hidden part edited (nbgrader's checksum with it) is a recheck; a
    public part, a submission, the limits each change their own part of the fingerprint."""
    from graders.course.coursedir import Course
    from graders.grading import recheck
    from graders.isolation import sandbox

    root = course.copy_course(tmp_path / "course")
    source = course.read_notebook(root / "source" / course.ASSIGNMENT / "check_your_learning.ipynb")
    course.submit(root, "ada", {"check_your_learning": source})
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    the_course, limits = Course(root), sandbox.Limits(wall_seconds=300, memory_bytes=3 << 30, processes=512)

    def parts(notebook, limits=limits):
        import nbformat
        nbformat.write(notebook, str(prepared / "check_your_learning.ipynb"))
        return recheck.fingerprint(the_course, course.ASSIGNMENT, "ada", prepared, ["check_your_learning"], limits,
                                   the_course.hidden_delimiters(), {"check_your_learning": ["q1_test"]})

    def edited(old, new, checksum=None):
        notebook = copy.deepcopy(source)
        cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q1_test")
        assert old in cell.source
        cell.source = cell.source.replace(old, new)
        if checksum:
            cell.metadata["nbgrader"]["checksum"] = checksum
        return notebook

    first = parts(source)
    assert parts(edited("assert n_parameters == 307300,", "assert n_parameters in (307300, 307200),", "another")) == first
    public = parts(edited("### BEGIN HIDDEN TESTS", "print('a public line')\n### BEGIN HIDDEN TESTS"))
    assert [part for part in first if first[part] != public[part]] == ["notebooks' public parts"]
    longer = parts(source, sandbox.Limits(wall_seconds=600, memory_bytes=3 << 30, processes=512))
    assert [part for part in first if first[part] != longer[part]] == ["limits"]
    (root / "submitted" / "ada" / course.ASSIGNMENT / "extra.txt").write_text("x")
    assert [part for part, digest in parts(source).items() if first[part] != digest] == ["submission"]
