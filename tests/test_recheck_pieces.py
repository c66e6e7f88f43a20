"""A recheck's pieces: the exports' pack, the merge of old outputs, keras imported once by the checker."""
import copy
import json

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from graders.inside import artifacts, hidden, run_notebook


def test_a_pack_round_trips_keeps_identical_arrays_once_and_unpacks_data_only(tmp_path):
    import io
    import tarfile
    for cell in ("003", "007"):
        artifacts.export({"x": np.zeros((200, 28, 28), "float32"), "n": 3}, ["x", "n"], str(tmp_path / "src" / cell))
    artifacts.export({"forged": 1}, ["forged"], str(tmp_path / "src" / "005"))  # not a check the runner ran
    packed = artifacts.pack(tmp_path / "src", [3, 7])
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:xz") as archive:
        assert sum(member.islnk() for member in archive.getmembers()) >= 1  # the second array is a link
    artifacts.unpack(packed, tmp_path / "out")
    values, _ = artifacts.load(str(tmp_path / "out" / "007"), ["x", "n"])
    assert json.loads((tmp_path / "out" / artifacts.CHECKED).read_text()) == [3, 7]
    assert not (tmp_path / "out" / "005").exists()
    assert values["n"] == 3 and np.array_equal(values["x"], np.zeros((200, 28, 28), "float32"))
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:xz") as archive:
        info = tarfile.TarInfo("../escape")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(tarfile.TarError):
        artifacts.unpack(evil.getvalue(), tmp_path / "out2")
    assert not (tmp_path / "escape").exists()


def _graded(public, hidden_part, error=True):
    cell = new_code_cell(f"{public}\n### BEGIN HIDDEN TESTS\n{hidden_part}\n### END HIDDEN TESTS")
    cell.metadata = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1}}
    cell.id = "t"
    cell.outputs = [new_output("error", ename="AssertionError", evalue="old", traceback=[])] if error else []
    answer = new_code_cell("x = 1")
    answer.id, answer.outputs = "a", [new_output("stream", name="stdout", text="hi\n")]
    return new_notebook(cells=[answer, cell])


def test_merge_takes_the_old_outputs_drops_the_old_checks_error_and_refuses_what_it_cannot_reproduce():
    previous = _graded("assert x", "assert x == 2")
    notebook = _graded("assert x", "assert x in (1, 2)", error=False)
    notebook.cells[0].outputs = []
    checks = run_notebook.merge(notebook, previous, {1}, (hidden.BEGIN, hidden.END), ["t"])
    assert [(index, code.strip()) for index, _, code, _ in checks] == [(1, "assert x in (1, 2)")]
    assert notebook.cells[0].outputs == previous.cells[0].outputs and notebook.cells[1].outputs == []
    for changed, message in [(_graded("assert x > 0", "assert x == 2"), "is not the one graded"),
                             (_graded("assert x", "assert y == 2"), "reads y, which was not exported")]:
        with pytest.raises(run_notebook.RecheckError, match=message):
            run_notebook.merge(changed, copy.deepcopy(previous), {1}, (hidden.BEGIN, hidden.END), ["t"])
    same, carried = _graded("assert x", "assert x == 2", error=False), []  # an unchanged check keeps its old output
    assert run_notebook.merge(same, copy.deepcopy(previous), {1}, (hidden.BEGIN, hidden.END), ["t"], carried) == []
    assert carried == [1] and same.cells[1].outputs == previous.cells[1].outputs
    unchecked = _graded("assert x", "assert x == 2", error=False)
    unchecked.cells[1].source = "assert x\n"  # graded without a hidden part: no exports
    with pytest.raises(run_notebook.RecheckError, match="has a hidden part now"):
        run_notebook.merge(_graded("assert x", "assert x == 2"), unchecked, set(), (hidden.BEGIN, hidden.END), ["t"])


def test_the_checker_imports_keras_once_only_for_exports_that_need_it(tmp_path):
    """A recheck preloads nothing: the checker imports keras itself when a check loads a model or a
    history, so each request's child inherits it instead of importing it again. A module is a name
    (nothing is imported), and an entry the check does not read is never looked at."""
    for name, manifest, expected in [("model", {"model": {"kind": "model", "file": "model.keras"}}, True),
                                     ("history", {"h": {"kind": "history", "history": {}}}, True),
                                     ("module", {"keras": {"kind": "module", "name": "keras.layers"}}, False),
                                     ("unread", {"n": {"kind": "value", "value": 3}, "m": {"kind": "model"}}, False),
                                     ("numbers", {"n": {"kind": "value", "value": 3}, "np": {"kind": "module", "name": "numpy"}}, False),
                                     ("not json", None, False)]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / artifacts.MANIFEST).write_text(json.dumps(manifest) if manifest else "{not json")
        assert artifacts.needs_keras(str(folder), ["model", "h", "keras", "n", "np"]) is expected, name
    assert artifacts.needs_keras(str(tmp_path / "missing"), ["model"]) is False
