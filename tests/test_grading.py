"""Grades that nbgrader's real autograde gives real submissions, executed by a real kernel."""
import json
import re

import pytest

import submissions
import course


@pytest.mark.parametrize("notebook", course.NOTEBOOKS)
def test_reference_solution_gets_full_marks_on_every_autograded_cell(graded_class, notebook):
    scores = graded_class.scores("reference", notebook)
    tests = {cell: (score, maximum) for cell, (score, maximum, manual) in scores.items() if not manual}
    assert tests and all(score == maximum for score, maximum in tests.values()), tests
    written = {cell for cell, (_, _, manual) in scores.items() if manual}
    assert written == ({"metrics_written", "overfitting_written", "dropout_written"} if notebook == "mnist_exercise" else set())


@pytest.mark.parametrize("notebook", course.NOTEBOOKS)
def test_untouched_release_scores_zero_and_runs_cleanly_elsewhere(graded_class, notebook):
    scores = graded_class.scores("blank", notebook)
    assert scores and all(score == 0 and not manual for score, _, manual in scores.values()), scores
    for cell in graded_class.executed("blank", notebook).cells:
        answer_or_test = cell.metadata.get("nbgrader", {}).get("solution") or cell.metadata.get("nbgrader", {}).get("grade")
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if not answer_or_test:
            assert not errors, f"{notebook}/{cell.id} fails for an untouched release: {errors[0].evalue}"


@pytest.mark.parametrize("student", sorted(submissions.WRONG_ANSWERS))
def test_a_wrong_answer_loses_exactly_its_questions_points(graded_class, student):
    notebook, *_, failing = submissions.WRONG_ANSWERS[student]
    reference = graded_class.scores("reference", notebook)
    scores = graded_class.scores(student, notebook)
    assert set(scores) == set(reference)
    for cell, (score, maximum, _) in scores.items():
        expected = 0 if cell in failing else reference[cell][0]
        assert score == expected, f"{student}: {cell} scored {score}, expected {expected} of {maximum}"


@pytest.mark.parametrize("student", sorted(submissions.FASHION_STUDENTS))
def test_fashion_mnist_is_graded_against_its_own_bar(graded_class, student):
    """The reference solution on Fashion-MNIST gets full marks; trained on 640 images it loses
    exactly the accuracy points. Both really trained on Fashion-MNIST (accuracy far below MNIST's)."""
    _, failing = submissions.FASHION_STUDENTS[student]
    reference = graded_class.scores("reference", "mnist_exercise")
    scores = graded_class.scores(student, "mnist_exercise")
    assert set(scores) == set(reference)
    for cell, (score, maximum, _) in scores.items():
        expected = 0 if cell in failing else reference[cell][0]
        assert score == expected, f"{student}: {cell} scored {score}, expected {expected} of {maximum}"
    training = submissions.cell(graded_class.executed(student, "mnist_exercise"), "training_answer")
    val_accuracy = float(re.findall(r"val_accuracy: ([0-9.]+)", "".join(o.get("text", "") for o in training.outputs))[-1])
    assert (0.84 <= val_accuracy < 0.95) if not failing else (val_accuracy < 0.84), val_accuracy


@pytest.mark.parametrize("notebook", course.NOTEBOOKS)
def test_stderr_noise_does_not_cost_a_correct_answer_any_point(graded_class, notebook):
    assert graded_class.scores("stderr-noise", notebook) == graded_class.scores("reference", notebook)
    executed = graded_class.executed("stderr-noise", notebook)
    noisy_tests = [c.id for c in executed.cells if c.metadata.get("nbgrader", {}).get("grade")
                   and any(submissions.NOISE.decode() in o.get("text", "") for o in c.get("outputs", []))]
    assert noisy_tests, "the noise never reached a test cell, so this test proved nothing"


def test_keras_precision_and_recall_match_numpy_for_the_reference_model(graded_class):
    executed = graded_class.executed("stderr-noise", "mnist_exercise")
    probe = submissions.cell(executed, "metrics_probe")
    line = next(text for o in probe.outputs for text in o.get("text", "").splitlines() if text.startswith("PROBE "))
    values = json.loads(line[len("PROBE "):])
    assert values["keras_precision"] == pytest.approx(values["numpy_precision"], abs=2e-3)
    assert values["keras_recall"] == pytest.approx(values["numpy_recall"], abs=2e-3)
    assert values["numpy_recall"] > 0.95
