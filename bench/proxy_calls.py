"""The cost of a hidden test's call to a student's function (graders.inside.proxy, issue 34).

One notebook, one student function (`double(x)`, trivial: the figure is the round trip, not the
work), hidden parts making 1, 10, 100 and 1,000 calls, graded by the sandbox's runner as
`python -m graders autograde` starts it (bubblewrap, the cgroup as root) and, for comparison,
unsandboxed. Printed per way: each hidden part's wall time, the runner's own count and call
seconds, and the round trip per call (the 1,000 calls' seconds over 1,000), with the ratio of
sandboxed to unsandboxed. Compare figures of one run only (CPUs differ 3x between machines).

Measured: docs/measurements.md, "Calls from hidden tests".
Usage: .venv/bin/python bench/proxy_calls.py [--no-sandbox]
"""
import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from graders import data
from graders.grading import settings
from graders.isolation import sandbox

COUNTS = (1, 10, 100, 1000)
HIDDEN = """pass
### BEGIN HIDDEN TESTS
import time
started = time.monotonic()
for number in range({count}):
    assert double(number) == 2 * number
raise AssertionError(f"TIMING {{time.monotonic() - started:.4f}}")  # the seconds, carried out as the cell's error
### END HIDDEN TESTS"""


def build(folder: Path) -> list:
    cells = [new_code_cell("def double(x):\n    return 2 * x")]
    for count in COUNTS:
        cells.append(new_code_cell(HIDDEN.format(count=count)))
        cells[-1].metadata["nbgrader"] = {"grade_id": f"calls{count}"}
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(folder / "one.ipynb"))
    return ["one.ipynb", "--cell-timeout", "60", "--notebook-timeout", "600", "--preload", "numpy",
            "--test-cells", json.dumps({"one": [f"calls{count}" for count in COUNTS]})]


def timings(folder: Path) -> dict:
    executed = nbformat.read(str(folder / "one.executed.ipynb"), as_version=4)
    return {cell.metadata["nbgrader"]["grade_id"]: float(output.evalue.split()[1])
            for cell in executed.cells if "nbgrader" in cell.metadata
            for output in cell.outputs if output.output_type == "error" and output.evalue.startswith("TIMING ")}


def run(sandboxed: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as name:
        folder = Path(name)
        arguments = build(folder)
        started = time.monotonic()
        if sandboxed:
            isolation = sandbox.choose()
            isolation.check()
            argv = isolation.python_module("graders.inside.run_notebook", *arguments, "--sandboxed")
            outcome = isolation.run(argv, folder, sandbox.Limits(wall_seconds=900), data.students_dir(),
                                    settings.thread_env(1))
            output, returncode = outcome.output, outcome.returncode
        else:
            done = subprocess.run([sys.executable, "-m", "graders.inside.run_notebook", *arguments], cwd=folder,
                                  capture_output=True, text=True)
            output, returncode = done.stdout + done.stderr, done.returncode
        if returncode:
            sys.exit(f"the runner failed ({returncode}):\n{output[-3000:]}")
        found = timings(folder)
        line = next((line for line in output.splitlines() if "call(s)" in line), "")
        return {"calls": found, "runner": line.strip(), "wall": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-sandbox", action="store_true", help="only the unsandboxed runner")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    results = {"unsandboxed": run(False)}
    if not args.no_sandbox:
        results["sandboxed"] = run(True)
    for way, result in results.items():
        print(f"\n{way}: the whole run {result['wall']:.1f} s; {result['runner']}")
        for count in COUNTS:
            seconds = result["calls"].get(f"calls{count}", float("nan"))
            print(f"  {count:5d} call(s): {seconds:7.3f} s, {1000 * seconds / count:6.2f} ms per call")
    if "sandboxed" in results:
        ratio = results["sandboxed"]["calls"]["calls1000"] / results["unsandboxed"]["calls"]["calls1000"]
        print(f"\n1,000 calls, sandboxed / unsandboxed: {ratio:.2f}")


if __name__ == "__main__":
    main()
