"""Execute one notebook as nbgrader's Execute step would: what runs inside the sandbox.

Usage: python -m graders.run_notebook INPUT OUTPUT --cell-timeout S
Exit status 0 when the notebook ran to the end (cells may have failed: that is for the
grade to say), 3 when the kernel died, 4 when the notebook could not be read or written.

This is nbclient with the settings of nbgrader's Execute preprocessor (`EXECUTE_SETTINGS`,
`record_unreported_error`), not nbgrader itself: importing nbgrader costs about 1.5
CPU-seconds per notebook (all of nbgrader, its server extensions and SQLAlchemy), which is
4% of a class's grading time on 2 cores. nbgrader's own Autograde grades the result.
"""
import argparse
import sys
from pathlib import Path

# jsonschema imports rfc3987_syntax, which builds a grammar at import (0.75 CPU-seconds), for
# a URI format check that nbformat never asks for. Without it jsonschema skips that check.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402
from nbformat.notebooknode import NotebookNode  # noqa: E402

# nbgrader 0.9's Execute (nbgrader/preprocessors/execute.py): keep going after errors, and a
# cell that times out gets an error output, so its test fails rather than hangs.
EXECUTE_SETTINGS = dict(
    allow_errors=True,
    interrupt_on_timeout=True,
    raise_on_iopub_timeout=True,
    error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                      "traceback": ["\x1b[0;31mCellTimeoutError\x1b[0m: No reply from kernel before timeout"]},
)


def record_unreported_error(cell, execute_reply, **_):
    """nbgrader's Execute.on_cell_executed: an error reply with no error output gets one."""
    content = execute_reply["content"]
    if content["status"] != "error":
        return
    if any(output.output_type == "error" and output.get("ename") == content["ename"] for output in cell.outputs):
        return
    error = NotebookNode(output_type="error", ename=content["ename"], evalue=content["evalue"],
                         traceback=content["traceback"] or ["ERROR: An error occurred while showtraceback was disabled"])
    cell.outputs.append(error)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders.run_notebook", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (nbgrader's Execute.timeout)")
    args = parser.parse_args(argv)
    try:
        notebook = nbformat.read(str(args.input), as_version=4)
    except Exception as error:
        print(f"RUNNER: unreadable notebook: {type(error).__name__}: {error}")
        return 4
    # Every output is in once the last cell is done: the kernel is killed, not asked to exit
    # (TensorFlow's teardown costs 0.6 s per notebook; whatever it would still do is not graded).
    client = NotebookClient(notebook, timeout=args.cell_timeout, on_cell_executed=record_unreported_error,
                            shutdown_kernel="immediate", resources={"metadata": {"path": str(args.input.parent)}},
                            **EXECUTE_SETTINGS)
    try:
        client.execute()
    except DeadKernelError as error:
        print(f"RUNNER: kernel died: {error}")
        return 3
    except RuntimeError as error:  # nbclient: the kernel did not start, or stopped answering
        print(f"RUNNER: kernel failed: {error}")
        return 3
    try:
        nbformat.write(notebook, str(args.output))
    except Exception as error:
        print(f"RUNNER: cannot write the executed notebook: {type(error).__name__}: {error}")
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
