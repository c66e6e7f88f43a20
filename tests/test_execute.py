"""graders.grading.execute: the outputs the sandbox sent back, taken into nbgrader's notebook."""
import copy
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from graders.grading import execute


def notebook(*outputs):
    meta = {"nbgrader": {"grade": True, "points": 1}}
    return new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("print(1)", metadata=meta, outputs=list(outputs))])


def executed(ours, *outputs, count=3):
    """What the sandbox returns for `ours`: the same cells, with outputs."""
    theirs = copy.deepcopy(ours)
    theirs.cells[1].update(outputs=list(outputs), execution_count=count)
    return theirs


def test_copy_outputs_takes_outputs_and_counts_and_nothing_else():
    ours = notebook()
    theirs = executed(ours, new_output("stream", name="stdout", text="1\n"))
    theirs.cells[1].metadata = {"nbgrader": {"grade": True, "points": 100}}
    execute.copy_outputs(theirs, ours)
    assert ours.cells[1].outputs == [new_output("stream", name="stdout", text="1\n")]
    assert ours.cells[1].execution_count == 3
    assert ours.cells[1].metadata["nbgrader"]["points"] == 1
    execute.copy_outputs(executed(ours, new_output("stream", name="stdout", text="z" * 10 ** 6)), ours)
    assert len(json.dumps(ours.cells[1].outputs)) < execute.MAX_OUTPUT_CHARS  # capped on the way in


@pytest.mark.parametrize("change", [lambda cells: cells[1].update(source="print(2)"),
                                    lambda cells: cells[1].update(id="other-id"),
                                    lambda cells: cells.__setitem__(1, new_markdown_cell("print(1)", id=cells[1].id)),
                                    lambda cells: cells.append(new_code_cell("print(3)"))], ids=["source", "id", "type", "count"])
def test_copy_outputs_refuses_a_changed_cell_or_cell_count(change):
    ours = notebook()
    theirs = executed(ours, new_output("stream", name="stdout", text="1\n"))
    change(theirs.cells)
    with pytest.raises(execute.InvalidExecution):
        execute.copy_outputs(theirs, ours)
    assert ours.cells[1].outputs == []


def test_capped_leaves_small_outputs_and_cuts_huge_ones_with_a_note():
    small = new_output("stream", name="stderr", text="warning\n")
    assert execute.capped(small) is small
    big = execute.capped(new_output("stream", name="stderr", text="x" * 10 ** 6))
    assert big.name == "stderr" and big.text.startswith("x" * (execute.MAX_OUTPUT_CHARS // 2))
    assert "1,000,0" in big.text and "cut" in big.text and len(json.dumps(big)) < execute.MAX_OUTPUT_CHARS
    rich = execute.capped(new_output("display_data", data={"text/plain": "y" * 10 ** 6}))
    assert rich.output_type == "stream" and len(json.dumps(rich)) < execute.MAX_OUTPUT_CHARS
    error = execute.capped(new_output("error", ename="E", evalue="v" * 10 ** 6, traceback=["t" * 5000] * 500))
    assert len(error.traceback) == 20 and max(map(len, error.traceback)) == 2000 and len(error.evalue) == 2000


def test_read_executed_refuses_missing_oversized_and_invalid_notebooks(tmp_path):
    path = tmp_path / "n.executed.ipynb"
    with pytest.raises(execute.InvalidExecution, match="no executed notebook"):
        execute.read_executed(path, 1 << 20)
    nbformat.write(notebook(), str(path))
    assert execute.read_executed(path, 1 << 20).cells[0].source == "# Title"
    with pytest.raises(execute.InvalidExecution, match="limit"):
        execute.read_executed(path, 100)
    for text in ("{not json", json.dumps({"cells": "none", "nbformat": 4, "nbformat_minor": 5, "metadata": {}})):
        with pytest.raises(execute.InvalidExecution, match="not a valid notebook"):
            path.write_text(text)
            execute.read_executed(path, 1 << 20)


def test_relabel_stderr_turns_stderr_into_stdout_and_counts():
    nb = notebook(new_output("stream", name="stderr", text="E0000 tf\n"), new_output("stream", name="stdout", text="ok"),
                  new_output("stream", name="stderr", text="warn"), new_output("error", ename="E", evalue="", traceback=[]))
    assert execute.relabel_stderr(nb) == 2
    assert [o.get("name") for o in nb.cells[1].outputs] == ["stdout", "stdout", "stdout", None]
    assert execute.relabel_stderr(nb) == 0
