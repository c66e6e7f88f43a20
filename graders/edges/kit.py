"""``python -m graders student-kit ASSIGNMENT [-o FILE]``: what a student needs, and nothing of the graders'.

The kit is one zip: the released notebooks (from `release/`, never `source/`), a short README,
the student side (`student/`, the package the notebooks import) as a pure-Python wheel, and
the course's lock (`constraints.txt`) with a `requirements.txt` that installs the wheel with
every package pinned, and the course's cell timeout (`nbgrader_config.json`) for the
self-check. It is built in memory and written only once the guard (`graders.edges.kit_guard`)
has passed every file, nested archives too.
"""
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from nbgrader.preprocessors import ClearSolutions, Execute
from onions_student import selfcheck

from graders.course import gradingsplit
from graders.course.coursedir import Course
from graders.edges import kit_guard
from graders.errors import GradersError
from graders.files import write_atomically

STUDENT = Path(__file__).resolve().parents[2] / "student"  # the student package's project (pyproject.toml)
DATE = (2026, 1, 1, 0, 0, 0)  # every member's timestamp: the same course gives the same zip
README = """\
# {assignment}: the student kit of the onions course

This folder holds the assignment's notebooks and the course's student side (`onions_student`:
the datasets as you get them, and the self-check). It holds no answer and no hidden test.

## Install (once)

You need Python 3.10 to 3.13. In this folder, in a terminal:

    python3 -m venv .venv
    .venv/bin/python -m pip install -r requirements.txt       # Windows: .venv\\Scripts\\python -m pip ...

This installs the exact versions the course is graded with (about 600 MB, TensorFlow
included). Tried on Linux (Debian 12, Python 3.11, pip 24+); the wheels exist for macOS and
Windows but the kit was not tried there.

## Open the notebooks

    .venv/bin/python -m jupyter lab

and open {notebooks}. Answer where `# YOUR CODE HERE` stands; save.

The datasets come from keras (it downloads them once). Without internet, set the environment
variable `ONIONS_DATA_DIR` to the folder of the course's offline copy, if your teachers gave
you one. Half of each test set is held back for grading: you get the other half.

## Check yourself

    .venv/bin/python -m onions_student selfcheck {notebook_args}

One line per question: passed, failed public test (and why), not answered; written answers
say answered (graded by hand). Passing the public tests does not mean the hidden ones pass.
Each cell may run as long as the course allows when it grades (`nbgrader_config.json`, here).

## Hand in

Upload the saved notebooks (the .ipynb files, under their names) where your course says: the
assignment in Canvas or Moodle, or the hub's Assignments tab.
"""


def build(course_dir: Path, assignment: str) -> dict:
    """{name in the kit: bytes}, checked by the guard (KitRefused names the first leaking file)."""
    course_dir = Path(course_dir)
    course = Course(course_dir)
    released = course_dir / "release" / assignment
    notebooks = sorted(path for path in released.glob("*") if path.is_file())
    if not any(path.suffix == ".ipynb" for path in notebooks):
        raise GradersError(f"{released} holds no notebook: run nbgrader generate_assignment {assignment} first")
    top = f"{assignment}-student"
    files = {f"{top}/{path.name}": path.read_bytes() for path in notebooks}
    names = [path.name for path in notebooks if path.suffix == ".ipynb"]
    files[f"{top}/README.md"] = README.format(assignment=assignment, notebooks=", ".join(f"`{n}`" for n in names),
                                              notebook_args=" ".join(names)).encode()
    wheel_name, wheel = build_wheel()
    files[f"{top}/{wheel_name}"] = wheel
    files[f"{top}/constraints.txt"] = (course_dir / "constraints.txt").read_bytes() \
        if (course_dir / "constraints.txt").is_file() else (STUDENT.parent / "constraints.txt").read_bytes()
    files[f"{top}/requirements.txt"] = (
        "# The course's student side, every package pinned (constraints.txt: the versions it is graded with)\n"
        f"-c constraints.txt\n./{wheel_name}\n").encode()
    # the course's cell timeout for the self-check (and nbgrader validate), as JSON: reading it runs no code
    timeout = Execute(config=course.config).timeout
    files[f"{top}/{selfcheck.COURSE_CONFIG}"] = (json.dumps({"Execute": {"timeout": timeout}}, indent=1) + "\n").encode()
    allowed = {f"{top}/{name}" for name in (*[p.name for p in notebooks], "README.md", wheel_name,
                                             "constraints.txt", "requirements.txt", selfcheck.COURSE_CONFIG)}
    solutions = ClearSolutions(config=course.config)
    delimiters = dict([(solutions.begin_solution_delimeter, solutions.end_solution_delimeter),
                       course.hidden_delimiters()])
    secrets = kit_guard.secret_lines(course_dir / "source", delimiters)
    labels = [np.ascontiguousarray(array).tobytes() for array in gradingsplit.known_label_arrays()]
    kit_guard.check(files, allowed, secrets, labels)
    return files


def build_wheel() -> tuple:
    """(file name, bytes) of the student package's wheel, built from a copy of `student/` (no build
    folder left behind; setuptools from this virtualenv, so no download)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "student"
        shutil.copytree(STUDENT, project, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                                 "--disable-pip-version-check", "--wheel-dir", str(Path(tmp) / "wheel"), str(project)],
                                capture_output=True, text=True)
        wheels = list((Path(tmp) / "wheel").glob("*.whl"))
        if result.returncode or len(wheels) != 1:
            raise GradersError(f"pip could not build the student package's wheel: {(result.stderr.strip() or '?').splitlines()[-1]}")
        return wheels[0].name, wheels[0].read_bytes()


def write(files: dict, target: Path) -> None:
    """The zip, written to a partial file and renamed: a refused or broken build leaves nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(zipfile.ZipInfo(name, DATE), files[name], zipfile.ZIP_DEFLATED)
    write_atomically(target, lambda stream: stream.write(buffer.getvalue()))


def run(args) -> int:
    target = args.output or Path(args.course) / "dist" / f"{args.assignment}-student.zip"
    try:
        files = build(args.course, args.assignment)
    except kit_guard.KitRefused as error:
        print(f"error: the kit is refused: {error}", file=sys.stderr)
        return 1
    write(files, Path(target))
    size = Path(target).stat().st_size
    print(f"{target}: {len(files)} files, {size / 1e3:.0f} kB")
    for name in sorted(files):
        print(f"  {name}  ({len(files[name]) / 1e3:.1f} kB)")
    return 0


def add_command(commands) -> None:
    parser = commands.add_parser(
        "student-kit", help="build the zip students get: released notebooks, README, the student package",
        description="Build the student kit of ASSIGNMENT from release/ and the student package (student/), "
                    "never from source/: the released notebooks, a README, the package as a wheel and its pinned "
                    "requirements. Refused, with one line naming the file, if any file in it (nested archives too) "
                    "holds a solution or hidden-test line of source/, a NumPy array or the grading labels, a "
                    "gradebook, or a file outside the kit's list; nothing is written then.")
    parser.add_argument("assignment")
    parser.add_argument("-o", "--output", type=Path, help="the zip to write (default: dist/ASSIGNMENT-student.zip)")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.set_defaults(run=run)
