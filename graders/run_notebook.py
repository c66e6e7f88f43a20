"""Execute a student's notebooks as nbgrader's Execute step would: what runs inside the sandbox.

Usage: python -m graders.run_notebook NOTEBOOK... --cell-timeout S --notebook-timeout W
Each NAME.ipynb is executed into NAME.executed.ipynb beside it, in order, each in a kernel of
its own forked from one zygote (graders.kernel_fork) that imported the `--preload` modules
once. Prints "RUNNER: ran NAME in W s, kernel CPU C s" per notebook. Stops at the first
notebook that fails, with exit status 3 when its kernel died, 4 when it could not be read or
written, 5 when it ran past its wall time; 0 when all ran to the end (cells may have failed:
that is for the grade to say).

This is nbclient with the settings of nbgrader's Execute preprocessor (`EXECUTE_SETTINGS`,
`record_unreported_error`), not nbgrader itself: importing nbgrader costs about 1.5
CPU-seconds (all of nbgrader, its server extensions and SQLAlchemy), 4% of a class's grading
time on 2 cores. nbgrader's own Autograde grades the result.
"""
import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

# jsonschema imports rfc3987_syntax, which builds a grammar at import (0.75 CPU-seconds), for
# a URI format check that nbformat never asks for. Without it jsonschema skips that check.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import DeadKernelError  # noqa: E402
from nbformat.notebooknode import NotebookNode  # noqa: E402

from graders.kernel_fork import ForkedKernelManager, Zygote, ZygoteDied  # noqa: E402

KERNEL_DIED, UNREADABLE, TIMED_OUT = 3, 4, 5

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


def run(path: Path, cell_timeout: int, notebook_timeout: float, zygote: Zygote) -> int:
    """Execute one notebook into NAME.executed.ipynb; returns an exit status."""
    started = time.monotonic()
    try:
        notebook = nbformat.read(str(path), as_version=4)
    except Exception as error:
        print(f"RUNNER: unreadable notebook {path.name}: {type(error).__name__}: {error}", flush=True)
        return UNREADABLE
    # Every output is in once the last cell is done: the kernel is killed, not asked to exit
    # (TensorFlow's teardown costs 0.6 s per notebook; whatever it would still do is not graded).
    client = NotebookClient(notebook, timeout=cell_timeout, on_cell_executed=record_unreported_error,
                            shutdown_kernel="immediate", resources={"metadata": {"path": str(path.parent)}},
                            kernel_manager_class=ForkedKernelManager, **EXECUTE_SETTINGS)
    ForkedKernelManager.zygote, ForkedKernelManager.last_pid = zygote, None
    timed_out = threading.Event()
    deadline = threading.Timer(notebook_timeout, _kill_kernel, [timed_out])
    deadline.start()
    try:
        client.execute()
    except (DeadKernelError, ZygoteDied) as error:
        if timed_out.is_set():
            print(f"RUNNER: timed out: {path.name} still running after {notebook_timeout:g} s", flush=True)
            return TIMED_OUT
        print(f"RUNNER: kernel died: {path.name}: {error}", flush=True)
        return KERNEL_DIED
    except RuntimeError as error:  # nbclient: the kernel did not start, or stopped answering
        print(f"RUNNER: kernel failed: {path.name}: {error}", flush=True)
        return KERNEL_DIED
    finally:
        deadline.cancel()
    try:
        nbformat.write(notebook, str(path.with_suffix(".executed.ipynb")))
    except Exception as error:
        print(f"RUNNER: cannot write the executed notebook {path.name}: {type(error).__name__}: {error}", flush=True)
        return UNREADABLE
    cpu = zygote.cpu_seconds.get(ForkedKernelManager.last_pid, 0.0)
    print(f"RUNNER: ran {path.stem} in {time.monotonic() - started:.2f} s, kernel CPU {cpu:.2f} s", flush=True)
    return 0


def _kill_kernel(timed_out: threading.Event) -> None:
    """The notebook's wall time is up: kill its kernel (and what it started); nbclient sees it die."""
    timed_out.set()
    if ForkedKernelManager.last_pid:
        try:
            os.killpg(ForkedKernelManager.last_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders.run_notebook", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", type=Path, nargs="+", metavar="NOTEBOOK")
    parser.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (nbgrader's Execute.timeout)")
    parser.add_argument("--notebook-timeout", type=float, default=900, help="wall seconds per notebook")
    parser.add_argument("--preload", default="", help="modules the kernels share, comma-separated")
    args = parser.parse_args(argv)
    zygote = Zygote([name for name in args.preload.split(",") if name])
    try:
        for path in args.notebooks:
            status = run(path, args.cell_timeout, args.notebook_timeout, zygote)
            if status:
                return status
        return 0
    finally:
        zygote.close()


if __name__ == "__main__":
    sys.exit(main())
