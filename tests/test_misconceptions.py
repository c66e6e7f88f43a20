"""The lesson's well-known wrong answers, each recognised by the checker on exported data (the
way the batch grader runs hidden parts: `graders.inside.hidden.run_check`), and only that one; a
correct answer matches none. Values are what a student's kernel exports: numbers, real keras
models (not trained: the checks read their shapes and outputs), Histories."""
import os
import tempfile

import nbformat
import numpy as np
import pytest

import course
from graders.inside import artifacts, hidden

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

CYL, MNIST = course.NOTEBOOKS


def hidden_part(notebook: str, grade_id: str) -> str:
    nb = nbformat.read(str(course.REPO / "source" / course.ASSIGNMENT / f"{notebook}.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return hidden.split(cell.source)[1]


def diagnosed(notebook: str, grade_id: str, values: dict) -> tuple:
    """(run_check's result, the names of every misconception whose predicate holds)."""
    code = hidden_part(notebook, grade_id)
    names = hidden.free_names(code)
    with tempfile.TemporaryDirectory() as folder:
        artifacts.export(values, names, folder)
        result = hidden.run_check({"cell_id": grade_id, "code": code, "folder": folder, "names": names})
        loaded, _ = artifacts.load(folder, names)
    namespace = {"__name__": "__hidden__", **loaded}
    try:
        exec(compile(code, grade_id, "exec"), namespace)
    except BaseException:  # noqa: B902
        pass
    matching = []
    for name, predicate, _ in namespace.get(hidden.TABLE, []):
        try:
            if predicate():
                matching.append(name)
        except Exception:
            pass
    return result, matching


def cifar_model(extra: str = "after the last pooling"):
    inputs = keras.Input(shape=(32, 32, 3))
    x = keras.layers.Conv2D(32, (3, 3), activation="relu")(inputs)
    if extra == "first":
        x = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    if extra == "after the last pooling":
        x = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def mnist_model(activation="softmax", dropout_rate=None):
    inputs = keras.Input(shape=(28, 28, 1))
    x = keras.layers.Conv2D(4, (3, 3), activation="relu")(inputs)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation=activation)(x))


def history(**metrics):
    made = keras.callbacks.History()
    made.history = {key: list(values) for key, values in metrics.items()}
    return made


Q1, Q2 = {"n_parameters": 307300}, {"n_parameters": 307300, "n_conv_parameters": 2700, "ratio": 307300 / 2700}
CASES = {  # (notebook, grade cell, the student's values, the misconception, the student's value as recorded)
    "biases forgotten": (CYL, "q1_test", {"n_parameters": 307200}, 307200),
    "inputs only, no units": (CYL, "q1_test", {"n_parameters": 3072}, 3072),
    "a bias per kernel added": (CYL, "q2_test", {**Q2, "n_conv_parameters": 2800, "ratio": 307300 / 2800}, 2800),
    "one kernel only": (CYL, "q2_test", {**Q2, "n_conv_parameters": 27, "ratio": 307300 / 27}, 27),
    "extra layer left out": (CYL, "q3_model_test", {"model": lambda: cifar_model(None)}, "47370 parameters"),
    "extra layer in the wrong place": (CYL, "q3_model_test", {"model": lambda: cifar_model("first")}, "56618 parameters"),
    "more": (CYL, "q3_answer_test", {"q3_answer": "more"}, "more"),
    "precision and recall on logits": (MNIST, "metrics_test", {
        "model": lambda: mnist_model(None), "DATASET": "mnist",
        "_validation_inputs": np.random.default_rng(0).random((200, 28, 28, 1), dtype=np.float32),
        "history": history(accuracy=[0.9], precision=[0.3], recall=[0.99], val_accuracy=[0.95],
                           val_precision=[0.3], val_recall=[0.99])}, "val_recall"),
    "precision and recall missing (sparse labels)": (MNIST, "metrics_test", {
        "model": lambda: mnist_model(), "DATASET": "mnist",
        "_validation_inputs": np.random.default_rng(0).random((200, 28, 28, 1), dtype=np.float32),
        "history": history(accuracy=[0.9], val_accuracy=[0.95])}, "accuracy"),
    "sign reversed": (MNIST, "gap_test", {"train_val_gap": -0.015,
                                          "history": history(accuracy=[0.96, 0.975], val_accuracy=[0.97, 0.96])}, -0.015),
    "rate at or below the lesson's": (MNIST, "dropout_test", {
        "dropout_rate": 0.1, "model_dropout": lambda: mnist_model(dropout_rate=0.1),
        "history_dropout": history(accuracy=[0.9], val_accuracy=[0.95])}, 0.1),
}
CORRECT = {  # the right answers: every check passes, no diagnosis
    "q1_test": (CYL, Q1), "q2_test": (CYL, Q2), "q3_model_test": (CYL, {"model": lambda: cifar_model()}),
    "q3_answer_test": (CYL, {"q3_answer": "fewer"}),
    "gap_test": (MNIST, {"train_val_gap": 0.015, "history": history(accuracy=[0.96, 0.975], val_accuracy=[0.97, 0.96])}),
    "dropout_test": (MNIST, {"dropout_rate": 0.5, "model_dropout": lambda: mnist_model(dropout_rate=0.5),
                             "history_dropout": history(accuracy=[0.9], val_accuracy=[0.95])}),
}


def built(values: dict) -> dict:
    return {name: value() if callable(value) else value for name, value in values.items()}


@pytest.mark.parametrize("misconception", sorted(CASES))
def test_each_misconception_is_recognised_and_only_it(misconception):
    notebook, grade_id, values, shown = CASES[misconception]
    result, matching = diagnosed(notebook, grade_id, built(values))
    assert result and len(result) == 3, result
    assert matching == [misconception], matching
    diagnosis = result[2]
    assert diagnosis["misconception"] == misconception and diagnosis["hint"], diagnosis
    assert shown == diagnosis["value"] or str(shown) in str(diagnosis["value"]), diagnosis
    # the hint and name never give the expected value away
    for secret in ("307300", "307,300", "2700", "2,700", "36138", "36,138", "fewer"):
        assert secret not in diagnosis["hint"] + diagnosis["misconception"], (secret, diagnosis)


@pytest.mark.parametrize("grade_id", sorted(CORRECT))
def test_a_correct_answer_passes_and_matches_no_misconception(grade_id):
    notebook, values = CORRECT[grade_id]
    result, matching = diagnosed(notebook, grade_id, built(values))
    assert result is None and matching == [], (result, matching)


def test_an_unknown_mistake_is_other_and_a_raising_predicate_does_not_match():
    result, matching = diagnosed(CYL, "q1_test", {"n_parameters": 12})
    assert result[2] == {"misconception": hidden.OTHER, "hint": "", "value": 12} and matching == []
    namespace = {hidden.TABLE: [("raises", lambda: 1 / 0, "h"), ("later", lambda: True, "hint")], hidden.VALUE: lambda: [1]}
    assert hidden.diagnose(namespace) == {"misconception": "later", "hint": "hint", "value": [1]}
    assert hidden.diagnose({}) is None


def test_the_runners_diagnoses_are_gathered_per_notebook_and_cell_and_nothing_else():
    from graders.grading import executor
    report = [{"notebook": "check_your_learning", "wall_seconds": 1.0, "text": "ran"},
              {"notebook": "check_your_learning", "cell": "q1_test", "text": "diagnosed",
               "diagnosis": {"misconception": "biases forgotten", "hint": "Count the biases too.", "value": 307200}},
              {"notebook": "mnist_exercise", "cell": "gap_test", "diagnosis": "not a dict"},
              {"cell": "q2_test", "diagnosis": {"misconception": "x"}}]
    assert executor.diagnoses(report) == {"check_your_learning:q1_test": {
        "misconception": "biases forgotten", "hint": "Count the biases too.", "value": 307200}}


def test_the_recorded_value_is_an_example_not_a_dump():
    big = hidden.diagnose({hidden.TABLE: [], hidden.VALUE: lambda: [["x" * 300] * 20] * 20})
    assert isinstance(big["value"], str) and len(big["value"]) == 200
    assert hidden.diagnose({hidden.TABLE: [], hidden.VALUE: lambda: np.float32(0.5)})["value"] == 0.5
