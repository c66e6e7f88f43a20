"""graders.inside.hidden and artifacts: the hidden part cut off, test cells from the gradebook, plain data."""
import json
import math

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from graders.inside import artifacts, hidden


def test_split_hides_everything_from_the_first_begin_including_code_after_end():
    source = "assert a\n### BEGIN HIDDEN TESTS\nassert b\n### END HIDDEN TESTS\nassert c\n### BEGIN HIDDEN TESTS\nassert d"
    assert hidden.split(source) == ("assert a\n", "assert b\nassert c\nassert d")
    assert hidden.split("### BEGIN HIDDEN TESTS   \nassert b\n") == ("", "assert b\n")


@pytest.mark.parametrize("meta, expected", [
    ({"grade": True, "locked": True, "grade_id": "q1_test", "solution": False}, True),
    # what the submission's metadata says does not count: the grade id is the gradebook's test cell
    ({"grade": True, "locked": False, "grade_id": "q1_test"}, True),
    ({"grade": False, "locked": False, "grade_id": "q1_test", "solution": True}, True),
    ({"grade": True, "locked": True, "grade_id": "q1", "solution": False}, False),  # an answer, says the gradebook
    ({"grade": True, "locked": True, "grade_id": ""}, False),
    ({"grade": True, "locked": True, "grade_id": ["q1_test"]}, False),
    (None, False)])
def test_is_test_cell_takes_the_gradebooks_test_cells_whatever_the_metadata_says(meta, expected):
    cell = new_code_cell("assert x", metadata={"nbgrader": meta} if meta else {})
    assert hidden.is_test_cell(cell, ["q1_test", "q2_test"]) is expected
    assert hidden.is_test_cell(cell, []) is False
    assert hidden.is_test_cell(new_markdown_cell("x", metadata=cell.metadata), ["q1_test"]) is False


def test_free_names_skips_what_the_code_binds_anywhere():
    code = ("import os.path\nfrom numpy import testing as npt\n"
            "def close(v, *rest, tol=1e-3):\n    return abs(v - target) < tol\n"
            "try:\n    npt.assert_equal(len(history), epochs)\nexcept AssertionError as err:\n    raise\n"
            "assert all(close(v) for v in values) and os.path.exists(path)\n"
            "assert {k: w for k, w in weights.items()} and (n := count) > 0 and n\n")
    assert hidden.free_names(code) == ["target", "history", "epochs", "values", "path", "weights", "count"]


def test_plain_and_unplain_keep_types_through_json():
    value = {"t": (1, [2.5, ("s", None)]), "l": [True, False, -0.0], "nested": {"e": ()},
             "special": [math.inf, -math.inf], "np": [np.int64(3), np.float32(0.5), np.bool_(True), np.str_("s")]}
    back = artifacts.unplain(json.loads(json.dumps(artifacts.plain(value), allow_nan=False)))
    assert back == {"t": (1, [2.5, ("s", None)]), "l": [True, False, -0.0], "nested": {"e": ()},
                    "special": [math.inf, -math.inf], "np": [3, 0.5, True, "s"]}
    assert [type(x) for x in back["np"]] == [int, float, bool, str] and type(back["t"][1][1]) is tuple
    for nan in (math.nan, np.float64("nan"), np.float32("nan")):  # strict JSON: NaN is tagged, not written bare
        back = artifacts.unplain(json.loads(json.dumps(artifacts.plain(nan), allow_nan=False)))
        assert type(back) is float and math.isnan(back)


@pytest.mark.parametrize("value", [{np.str_("k"): 1}, {(1, 2): 3}, {1, 2}, b"bytes", 1j, object(), [np.datetime64("2024")]])
def test_plain_refuses_what_is_not_plain_data(value):
    with pytest.raises(artifacts.Refused):
        artifacts.plain(value)


@pytest.mark.parametrize("tree", [{"float": "1.5"}, {"list": "abc"}, {"tuple": 1}, {"a": 1, "b": 2}, {"set": []}, [1, 2], {}])
def test_unplain_refuses_malformed_trees(tree):
    with pytest.raises(artifacts.Refused):
        artifacts.unplain(tree)
