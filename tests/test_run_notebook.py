"""The sandbox's runner: notebooks in kernels forked from one zygote behave as freshly launched ones."""
import json
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from graders import data
from graders.grading import settings
from graders.inside import run_notebook
from graders.isolation import sandbox

PROBE = """\
import json, os, sys
import numpy
print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "path": sys.path, "sid": os.getsid(0) == os.getpid(),
                  "random": numpy.random.randint(1 << 30), "numpy_preloaded": PRELOADED, "marker": os.environ.get("MARKER"),
                  "leftover": "leftover" in globals()}))
leftover = 1
"""


def notebook(*sources):
    nb = new_notebook(cells=[new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def tests_of(*names, cells=("t",)) -> list:
    """--test-cells for `names` (NAME.ipynb or STUDENT/NAME.ipynb): as the gradebook would say them."""
    return ["--test-cells", json.dumps({name.rpartition("/")[2].removesuffix(".ipynb"): list(cells) for name in names})]


def run(folder, *names, timeout=60, notebook_timeout=120, extra=()):
    command = [sys.executable, "-m", "graders.inside.run_notebook", *names, "--cell-timeout", str(timeout),
               "--notebook-timeout", str(notebook_timeout), "--preload", "numpy", *tests_of(*names), *extra]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, env={"MARKER": "set", "PATH": "/usr/bin:/bin"})


def outputs(folder, name):
    nb = nbformat.read(str(folder / f"{name}.executed.ipynb"), as_version=4)
    return [[o for o in cell.outputs] for cell in nb.cells]


def test_each_notebook_gets_a_fresh_kernel_of_its_own(tmp_path):
    probe = "PRELOADED = 'numpy' in __import__('sys').modules\n" + PROBE
    for name in ("one", "two"):
        nbformat.write(notebook(probe), str(tmp_path / f"{name}.ipynb"))
    result = run(tmp_path, "one.ipynb", "two.ipynb")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = [json.loads(outputs(tmp_path, name)[0][0]["text"]) for name in ("one", "two")]
    assert seen[0]["pid"] != seen[1]["pid"] and seen[0]["random"] != seen[1]["random"]
    for kernel in seen:
        assert kernel["cwd"] == str(tmp_path) and kernel["sid"] and kernel["marker"] == "set"
        assert kernel["numpy_preloaded"] and not kernel["leftover"]
        assert "" in kernel["path"] and str(tmp_path) not in kernel["path"]  # as ipykernel_launcher's
    assert [line.split()[2] for line in result.stdout.splitlines() if line.startswith("RUNNER: ran ")] == ["one", "two"]


def test_no_notebook_is_on_disk_while_student_code_runs(tmp_path):
    look = "import os\nprint(sorted(name for name in os.listdir('.') if name.endswith('.ipynb')))"
    nbformat.write(notebook(look, "SECRET = 'hidden line'"), str(tmp_path / "one.ipynb"))
    nbformat.write(notebook(look), str(tmp_path / "two.ipynb"))
    result = run(tmp_path, "one.ipynb", "two.ipynb")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs(tmp_path, "one")[0][0]["text"] == outputs(tmp_path, "two")[0][0]["text"] == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.executed.ipynb", "one.exports.tar.xz",  # packs: for --recheck
                                                          "two.executed.ipynb", "two.exports.tar.xz"]


def test_a_cell_past_its_timeout_is_interrupted_and_the_rest_runs(tmp_path):
    nbformat.write(notebook("import time\nwhile True: time.sleep(0.1)", "print('after')"), str(tmp_path / "loop.ipynb"))
    result = run(tmp_path, "loop.ipynb", timeout=5)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = outputs(tmp_path, "loop")
    assert any(o.get("ename") == "CellTimeoutError" for o in cells[0]) and cells[1][0]["text"] == "after\n"


@pytest.mark.parametrize("code, status, message, notebook_timeout", [
    ("import time\nwhile True: time.sleep(0.1)", run_notebook.TIMED_OUT, "timed out: first.ipynb still running after 8 s", 8),
    ("import os\nos._exit(3)", run_notebook.KERNEL_DIED, "kernel died: first.ipynb", 120),
    ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", run_notebook.KERNEL_DIED, "", 120),  # the zygote: no hang
], ids=["past its wall time", "its kernel dies", "it kills the zygote"])
def test_a_failing_notebook_is_reported_and_stops_the_run(tmp_path, code, status, message, notebook_timeout):
    nbformat.write(notebook(code), str(tmp_path / "first.ipynb"))
    nbformat.write(notebook("print('never')"), str(tmp_path / "next.ipynb"))
    result = run(tmp_path, "first.ipynb", "next.ipynb", notebook_timeout=notebook_timeout)
    assert result.returncode == status, result.stdout + result.stderr
    assert f"RUNNER: {message}" in result.stdout
    assert not (tmp_path / "next.executed.ipynb").exists()


LINGER = """\
import subprocess, sys
# a process of its own session that would forge the executed notebook, and outlive this one
subprocess.Popen([sys.executable, "-c", "import time\\nwhile True:\\n    time.sleep(0.1)\\n"
                  "    try: open('one.executed.ipynb', 'w').write('forged')\\n    except OSError: pass"],
                 start_new_session=True)
"""

INSPECT = """\
import os
alive = [pid for pid in os.listdir('/proc') if pid.isdigit() and b'forged' in open(f'/proc/{pid}/cmdline', 'rb').read()]
runner = open(f'/proc/{os.getppid()}/stat').read().rpartition(')')[2].split()[1]  # the zygote's parent
try:
    open(f'/proc/{runner}/mem', 'rb')
    print('RUNNER MEMORY OPEN')
except OSError as error:
    print('runner closed:', type(error).__name__)
print('lingering:', alive)
"""


def test_in_the_sandbox_nothing_a_notebook_started_outlives_it_or_touches_the_runner(tmp_path):
    isolation = sandbox.choose()
    isolation.check()
    nbformat.write(notebook(LINGER, "import time\ntime.sleep(1)"), str(tmp_path / "one.ipynb"))
    nbformat.write(notebook(INSPECT, "import time\ntime.sleep(1)"), str(tmp_path / "two.ipynb"))
    argv = isolation.python_module("graders.inside.run_notebook", "one.ipynb", "two.ipynb", "--preload", "numpy", "--sandboxed",
                                  "--cell-timeout", "60", *tests_of("one.ipynb", "two.ipynb"))
    outcome = isolation.run(argv, tmp_path, sandbox.Limits(wall_seconds=120), data.students_dir(), settings.thread_env(1))
    assert outcome.returncode == 0, outcome.output
    assert outputs(tmp_path, "two")[0][0]["text"] == "runner closed: PermissionError\nlingering: []\n"
    assert len(outputs(tmp_path, "one")) == 2  # a notebook, not 'forged'


def test_killing_leftovers_outside_the_sandbox_is_refused(tmp_path):
    nbformat.write(notebook("print('ran')"), str(tmp_path / "one.ipynb"))
    result = subprocess.run([sys.executable, "-m", "graders.inside.run_notebook", "one.ipynb", "--sandboxed", "--cell-timeout", "60",
                             *tests_of("one.ipynb")],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and "refusing to kill this user's processes" in result.stderr
    assert not (tmp_path / "one.executed.ipynb").exists()


def test_the_runner_executes_with_the_settings_of_nbgraders_own_execute_step():
    from nbgrader.preprocessors import Execute
    execute = Execute()
    assert {name: getattr(execute, name) for name in run_notebook.EXECUTE_SETTINGS} == run_notebook.EXECUTE_SETTINGS


def test_a_recheck_group_rechecks_each_student_and_leaves_out_the_one_it_cannot(tmp_path):
    """--recheck on several students' notebooks (STUDENT/NAME: graders.grading.recheck's groups):
    the new hidden part runs on each student's kept exports; a student whose pack is unreadable is
    reported by name and gets no executed notebook (the batch then rechecks it alone), the others do."""
    def graded(hidden_part):
        nb = notebook("x = 1\nprint(x)", f"assert x\n### BEGIN HIDDEN TESTS\nassert {hidden_part}\n### END HIDDEN TESTS")
        nb.cells[0].id, nb.cells[1].id = "answer", "test"
        nb.cells[1].metadata = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1}}
        return nb

    nbformat.write(graded("x == 2"), str(tmp_path / "one.ipynb"))
    assert run(tmp_path, "one.ipynb").returncode == 0
    assert [o["ename"] for o in outputs(tmp_path, "one")[1] if o["output_type"] == "error"] == ["AssertionError"]
    group = tmp_path / "group"
    for student in ("alice", "bob", "carol"):
        (group / student).mkdir(parents=True)
        nbformat.write(graded("x in (1, 2)"), str(group / student / "one.ipynb"))
        shutil.copy(tmp_path / "one.executed.ipynb", group / student / f"one{run_notebook.PREVIOUS}")
        shutil.copy(tmp_path / "one.exports.tar.xz", group / student / "one.exports.tar.xz")
    (group / "bob" / "one.exports.tar.xz").write_bytes(b"not a pack")
    result = run(group, "alice/one.ipynb", "bob/one.ipynb", "carol/one.ipynb", extra=["--recheck"])
    assert result.returncode == run_notebook.NOT_RECHECKABLE, result.stdout + result.stderr
    assert "cannot recheck bob/one" in result.stdout
    for student in ("alice", "carol"):
        assert outputs(group / student, "one")[1] == [], student  # the old check's error is gone: it passes now
        assert outputs(group / student, "one")[0] == outputs(tmp_path, "one")[0]  # the answer's output, as graded
    assert not (group / "bob" / "one.executed.ipynb").exists()
