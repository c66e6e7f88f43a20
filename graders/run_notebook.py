"""Execute one notebook with nbgrader's own Execute preprocessor: what runs inside the sandbox.

Usage: python -m graders.run_notebook INPUT OUTPUT --cell-timeout S
Exit status 0 when the notebook ran to the end (cells may have failed: that is for the
grade to say), 3 when the kernel died, 4 when the notebook could not be read or written.
"""
import argparse
import sys
from pathlib import Path

import nbformat
from nbclient.exceptions import DeadKernelError
from nbgrader.preprocessors import Execute


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
    try:
        Execute(timeout=args.cell_timeout).preprocess(notebook, {"metadata": {"path": str(args.input.parent)}})
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
