"""Hidden tests that call a student's function (graders.inside.proxy): real runner, real kernels.

The calls run in the student's kernel; the hidden code never does. Each test is a notebook whose
hidden parts assert, in the checker, what the checker must see; a test cell whose hidden part fails
has an error output in the executed notebook.
"""
import json
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders import data
from graders.grading import settings
from graders.inside import proxy
from graders.isolation import sandbox

STUDENT = '''\
import numpy as np
def squares(n):
    print("LEAKED" + "-PRINT")
    if n < 1:
        raise ValueError("n must be at least 1")
    return [i * i for i in range(1, n + 1)]
def double(array):
    return array * 2
def not_data():
    return object
def forever():
    import time
    while True:
        time.sleep(0.1)
class Oops(Exception):
    pass
def raises_own():
    raise Oops("mine")
def spy():
    import inspect
    seen = [str(frame.code_context) for frame in inspect.stack()] + [repr(globals().get("In")), repr(globals().get("_ih"))]
    return "\\n".join(seen)
'''
CHECKS = {  # grade id: hidden part (each must pass)
    "calls": "assert squares(3) == [1, 4, 9] and squares(n=1) == [1]\n",
    "raises": "try:\n    squares(0)\nexcept ValueError as error:\n    assert 'at least 1' in str(error)\nelse:\n    raise AssertionError",
    "arrays": "import numpy as np\nassert (double(np.arange(4)) == np.arange(4) * 2).all() and double(2.5) == 5.0\n",
    "own exception": "from graders.inside.proxy import StudentError\ntry:\n    raises_own()\nexcept StudentError as e:\n"
                     "    assert 'Oops: mine' in str(e)\nelse:\n    raise AssertionError",
    "unseen": "assert 'SECRET-HIDDEN-MARK' not in spy()\n",
    "as when its cell ran": "assert squares(2) == [1, 4]\n",  # a later cell redefines squares
}
FAILING = {  # grade id: (hidden part, the error output it must give)
    "not data": ("not_data()\n", "CallFailed", "returned what is not data"),
    "overrun": ("try:\n    forever()\nexcept Exception:\n    pass\n", "CallFailed", "ran past the cell's time limit (3 s)"),
    "a function as argument": ("double(len)\n", "CallFailed", "an argument cannot be sent"),
}


def course_notebook(extra_cells=()) -> nbformat.NotebookNode:
    cells = [new_code_cell(STUDENT)]
    for grade_id, code in [*CHECKS.items(), *((name, code) for name, (code, *_) in FAILING.items()), *extra_cells]:
        cells.append(new_code_cell(f"pass\n### BEGIN HIDDEN TESTS\n{code}\n### END HIDDEN TESTS"))
        cells[-1].metadata["nbgrader"] = {"grade_id": grade_id}
        if grade_id == "as when its cell ran":
            cells.append(new_code_cell("def squares(n):\n    return 'redefined later'"))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def errors(folder) -> dict:
    executed = nbformat.read(str(folder / "one.executed.ipynb"), as_version=4)
    return {cell.metadata["nbgrader"]["grade_id"]: [(o.ename, o.evalue) for o in cell.outputs if o.output_type == "error"]
            for cell in executed.cells if "nbgrader" in cell.metadata}, executed


def arguments(nb, *extra):
    tests = [cell.metadata["nbgrader"]["grade_id"] for cell in nb.cells if "nbgrader" in cell.metadata]
    return ["one.ipynb", "--cell-timeout", "3", "--notebook-timeout", "120", "--preload", "numpy",
            "--test-cells", json.dumps({"one": tests}), *extra]


def test_a_hidden_test_calls_the_students_function_in_her_kernel_and_fails_each_bad_call_with_its_reason(tmp_path):
    nb = course_notebook()
    nbformat.write(nb, str(tmp_path / "one.ipynb"))
    result = subprocess.run([sys.executable, "-m", "graders.inside.run_notebook", *arguments(nb)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    found, executed = errors(tmp_path)
    assert {grade_id: found[grade_id] for grade_id in CHECKS} == {grade_id: [] for grade_id in CHECKS}, found
    for grade_id, (_, ename, reason) in FAILING.items():
        assert len(found[grade_id]) == 1 and found[grade_id][0][0] == ename and reason in found[grade_id][0][1], found
    assert "LEAKED-PRINT" not in json.dumps([cell.get("outputs") for cell in executed.cells])  # a call's prints: nowhere
    calls = next(line for line in result.stdout.splitlines() if line.startswith("RUNNER: checked one"))
    assert " call(s) " in calls and int(calls.split(" call(s) ")[0].rsplit(" ", 1)[1]) >= 10, calls


WATCHED = '''\
pass
### BEGIN HIDDEN TESTS
import os
pid, child = kernel_pid(), spawn()
state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
assert state == "T", f"the kernel runs while the checker reads: {state}"
left = open(f"/proc/{child}/stat").read().rpartition(")")[2].split()[0] if os.path.exists(f"/proc/{child}") else ""
assert left in ("", "Z"), f"a process a call started outlived it: {left}"
assert os.environ["HOME"].startswith("/proc/"), os.environ["HOME"]
### END HIDDEN TESTS
'''
BACKGROUND = '''\
import os, subprocess, sys, threading, time
def kernel_pid():
    return os.getpid()
def spawn():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True).pid
def busy():  # a thread the notebook leaves running: stopped with its kernel while the checker reads
    while True:
        time.sleep(0.001)
threading.Thread(target=busy, daemon=True).start()
'''


def test_in_the_sandbox_the_kernel_is_stopped_while_the_checker_reads_and_what_a_call_started_is_killed(tmp_path):
    isolation = sandbox.choose()
    isolation.check()
    cells = [new_code_cell(BACKGROUND), new_code_cell(WATCHED)]
    cells[1].metadata["nbgrader"] = {"grade_id": "watched"}
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "one.ipynb"))
    argv = isolation.python_module("graders.inside.run_notebook", *arguments(nb, "--sandboxed"))
    outcome = isolation.run(argv, tmp_path, sandbox.Limits(wall_seconds=120), data.students_dir(), settings.thread_env(1))
    assert outcome.returncode == 0, outcome.output
    found, _ = errors(tmp_path)
    assert found == {"watched": []}, found


def test_the_grading_labels_are_never_sent_to_the_students_code(monkeypatch):
    labels = np.arange(10, dtype=np.uint8)
    monkeypatch.setattr(data, "_checker_labels", {"mnist": labels}, raising=False)
    for argument in (labels, labels[2:], [labels.copy()], {"y": labels[::2]}):
        with pytest.raises(proxy.CallFailed, match="may not pass the grading labels"):
            proxy.refuse_grading_labels("score", [argument])
    proxy.refuse_grading_labels("score", [labels[:5].copy() + 1, "text", 3])  # other data goes
