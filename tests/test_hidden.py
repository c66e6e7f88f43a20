"""Hidden tests run outside the student's kernel: what stock nbgrader lets cheats win, the batch grader does not."""
import math

import numpy as np
import pytest

import cheats
from graders.course import status
from graders.inside import artifacts, hidden


@pytest.mark.parametrize("student", sorted(cheats.WINS_ON_STOCK))
def test_every_cheat_wins_its_cell_on_stock_nbgrader(graded_class, student):
    """The cheats are real: with the hidden tests in the student's kernel, each scores the cell it cheats on."""
    notebook = cheats.CHEATS[student][0]
    scores = graded_class.scores(student, notebook)
    baseline = graded_class.scores(cheats.baseline(student), notebook)
    for cell in cheats.WINS_ON_STOCK[student]:
        assert baseline[cell][0] == baseline[cell][1] or cheats.baseline(student) == "mnist-weak", cell
        assert scores[cell][0] == scores[cell][1], f"{student} no longer fools stock nbgrader on {cell}: {scores[cell]}"


@pytest.mark.parametrize("student", sorted(cheats.CHEATS))
def test_every_cheat_loses_exactly_the_points_of_the_cell_it_cheats_on(batch_class, student):
    notebook, _, cheated = cheats.CHEATS[student]
    assert batch_class.results[student].status in status.SCORED, batch_class.results[student]  # one notebook handed in
    baseline = batch_class.scores(cheats.baseline(student), notebook)
    scores = batch_class.scores(student, notebook)
    assert set(scores) == set(baseline)
    for cell, (score, maximum, _) in scores.items():
        expected = 0 if cell == cheated else baseline[cell][0]
        assert score == expected, f"{student}: {cell} scored {score}, expected {expected} of {maximum}"


def test_the_weak_model_loses_only_accuracy_in_both_graders(batch_class, graded_class):
    """The baseline of the exercise's cheats: honest, trained on two batches."""
    for table in (batch_class, graded_class):
        scores = table.scores("mnist-weak", "mnist_exercise")
        failed = {cell for cell, (score, maximum, manual) in scores.items() if not manual and score < maximum}
        assert failed == {"accuracy_test"}, failed


def test_a_failed_hidden_check_shows_its_message_and_never_its_code(batch_class):
    executed = batch_class.executed("cheat-lying-int", "check_your_learning")
    cell = next(c for c in executed.cells if c.id == "q1_test")
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [
        ("AssertionError", "Q1: n_parameters is not the parameter count of Dense(100) on 32x32x3 pixels")]
    assert "307300" not in "".join(errors[0].traceback)
    assert "### BEGIN HIDDEN TESTS" in cell.source  # the cell as nbgrader prepared it: checksums hold


def test_split_keeps_the_public_part_for_the_kernel():
    source = "assert x > 0\n### BEGIN HIDDEN TESTS\nimport numpy as np\nassert np.all(x == y), 'msg'\n### END HIDDEN TESTS\n"
    public, code = hidden.split(source)
    assert public == "assert x > 0\n" and "BEGIN" not in code and "np.all(x == y)" in code
    assert hidden.free_names(code) == ["x", "y"]  # np is its own; builtins never come from the student
    assert hidden.split("assert x\n") == ("assert x\n", None)
    # nbgrader hides any line holding its delimiter, so the checker takes the same lines
    assert hidden.split("ok = 1\n# BEGIN HIDDEN TESTS ###\nassert secret\n# END HIDDEN TESTS ###\n") == ("ok = 1\n", "assert secret\n")
    assert hidden.free_names("abs(ratio - [v for v in values][0])\nall(isinstance(q, int) for q in qs)") == ["ratio", "values", "qs"]


def test_exported_values_are_the_plain_data_the_liars_hold(tmp_path):
    class Lying(int):
        def __eq__(self, other):
            return True
        __hash__ = int.__hash__

        def __index__(self):
            return 307300

    class LyingFloat(float):
        def __float__(self):
            return 113.8

    namespace = {"count": Lying(5), "ratio": LyingFloat(1.5), "history_like": {"a": [np.float32(0.5), math.inf]},
                 "numbers": np.arange(6).reshape(2, 3), "shape": (np.int64(2), 3), "module": np, "f": lambda: 1,
                 "mixed": {1: "x"}}
    artifacts.export(namespace, [*namespace, "missing"], str(tmp_path))
    values, refused = artifacts.load(str(tmp_path), [*namespace, "missing"])
    assert type(values["count"]) is int and values["count"] == 5
    assert type(values["ratio"]) is float and values["ratio"] == 1.5
    assert values["history_like"] == {"a": [0.5, math.inf]} and type(values["history_like"]["a"][0]) is float
    assert np.array_equal(values["numbers"], np.arange(6).reshape(2, 3)) and values["shape"] == (2, 3)
    assert values["module"] == np and values["module"] is not np and values["module"].__name__ == "numpy"  # a name only
    assert "missing" not in values and "missing" not in refused
    assert "function" in refused["f"] and "keys" in refused["mixed"]
