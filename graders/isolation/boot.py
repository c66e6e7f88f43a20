"""How a module of this package is started in another process: from this very package, never from
the working directory (a student may hand in a `graders/` folder)."""
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the graders package, as the grader imported it (an editable install: its source)
PACKAGE_INSIDE = "/opt/onions/graders"  # where a sandbox shows it: not at its own path, which may be in the course


def python_module(module: str, *args, folder: str = str(PACKAGE.parent)) -> list:
    """`python -m module args`, importing `module` from this very package (in `folder`) wherever
    it was installed from, never from the working directory (a student may hand in a `graders/`).
    The folder then stays last on sys.path, so that the kernels (forked from this process)
    import the same package when a notebook does (`from graders.data import ...`)."""
    boot = ("import importlib, sys; folder = sys.argv.pop(1); sys.path.insert(0, folder); "
            "module = importlib.import_module(sys.argv.pop(1)); sys.path.remove(folder); sys.path.append(folder); "
            "sys.exit(module.main())")
    return [sys.executable, "-I", "-c", boot, folder, module, *args]
