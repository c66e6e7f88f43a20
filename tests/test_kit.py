"""The student kit (issue 31): the release and the student side, nothing of the graders'.

Its content is read back file by file, the wheel's members too; a release that leaks a solution
line, a gradebook or an array is refused with one line and nothing written. Then, as an ordinary
account in an empty folder holding only the kit: a virtualenv, the install the kit's README
gives, and the self-check of both released notebooks with the reference answers pasted in.
"""
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

import course
import submissions
from graders import data
from graders.course import gradingsplit
from graders.edges import kit_guard

KIT_FILES = {"README.md", "check_your_learning.ipynb", "mnist_exercise.ipynb", "constraints.txt", "requirements.txt",
             "nbgrader_config.json", "onions_student-0.1.0-py3-none-any.whl"}
REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1\n?", re.S)
ACCOUNT = "onions-kit-student"
SYSTEM_PYTHON = "/usr/bin/python3"


def student_kit(*args, course_dir=course.REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graders", "student-kit", course.ASSIGNMENT, "--course", str(course_dir),
                           *args], capture_output=True, text=True, timeout=300)


def members(content: bytes, prefix: str = "") -> dict:
    """{path: bytes} of a zip, nested zips opened too."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            inner = archive.read(name)
            found[prefix + name] = inner
            if zipfile.is_zipfile(io.BytesIO(inner)):
                found.update(members(inner, prefix + name + "/"))
    return found


def source_secrets() -> set:
    """Every line of a solution region, model answer or hidden test of source/ (read here on its own,
    not through the guard), less the lines the source also gives in public."""
    secret, public = set(), set()
    for path in (course.REPO / "source").rglob("*.ipynb"):
        for cell in course.read_notebook(path).cells:
            if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
                secret |= {line.strip() for line in cell.source.splitlines() if line.strip()}
                continue
            secret |= {line.strip() for _, body in REGION.findall(cell.source) for line in body.splitlines() if line.strip()}
            public |= {line.strip() for line in REGION.sub("", cell.source).splitlines()}
    return {line for line in secret - public if len(line) >= kit_guard.MIN_LINE}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    target = tmp_path_factory.mktemp("kit") / "kit.zip"
    result = student_kit("-o", str(target))
    assert result.returncode == 0, result.stderr
    return target


def test_the_kit_holds_the_release_a_readme_and_the_student_package_only(built):
    found = members(built.read_bytes())
    top = {name.split("/", 1)[1] for name in found if name.startswith(f"{course.ASSIGNMENT}-student/") and name.count("/") == 1}
    assert top == KIT_FILES
    for name in course.NOTEBOOKS:
        assert found[f"{course.ASSIGNMENT}-student/{name}.ipynb"] == (
            course.REPO / "release" / course.ASSIGNMENT / f"{name}.ipynb").read_bytes()
    wheel = {name.split(".whl/", 1)[1] for name in found if ".whl/" in name}
    assert {name for name in wheel if not name.startswith("onions_student-0.1.0.dist-info/")} == {
        f"onions_student/{module}.py" for module in ("__init__", "__main__", "data", "selfcheck", "validate")}


def test_no_file_of_the_kit_holds_a_secret_a_label_array_or_a_gradebook(built):
    secrets = source_secrets()
    assert len(secrets) > 20  # the walk can find something
    labels = [np.ascontiguousarray(array).tobytes() for array in gradingsplit.known_label_arrays()]
    assert labels, "no grading labels here to look for: python -m graders data"
    for name, content in members(built.read_bytes()).items():
        assert not content.startswith((b"\x93NUMPY", b"SQLite format 3\x00")), name
        assert not any(label in content for label in labels), name
        text = content.decode("utf-8", errors="replace")
        if name.endswith(".ipynb"):
            text = "\n".join(cell.source for cell in nbformat.reads(text, as_version=4).cells)
        leaked = {line.strip() for line in text.splitlines()} & secrets
        assert not leaked, f"{name}: {sorted(leaked)[:3]}"


def test_the_same_course_gives_the_same_kit(built, tmp_path):
    again = tmp_path / "again.zip"
    assert student_kit("-o", str(again)).returncode == 0
    assert {n: c for n, c in members(again.read_bytes()).items() if ".whl" not in n} == {
        n: c for n, c in members(built.read_bytes()).items() if ".whl" not in n}


def leaking_course(tmp_path) -> Path:
    directory = course.copy_course(tmp_path / "course")
    shutil.copytree(course.REPO / "release", directory / "release")
    shutil.copy2(course.REPO / "constraints.txt", directory / "constraints.txt")
    return directory


@pytest.mark.parametrize("leak", ["solution line", "hidden test", "gradebook", "labels"])
def test_a_release_that_leaks_is_refused_with_one_line_and_nothing_written(tmp_path, leak):
    directory = leaking_course(tmp_path)
    released = directory / "release" / course.ASSIGNMENT
    notebook = course.read_notebook(released / "mnist_exercise.ipynb")
    answer = next(cell for cell in course.read_notebook(directory / "source" / course.ASSIGNMENT / "mnist_exercise.ipynb").cells
                  if cell.id == ("training_answer" if leak == "solution line" else "accuracy_test"))
    culprit = "mnist_exercise.ipynb"
    if leak in ("solution line", "hidden test"):
        region = REGION.findall(answer.source)[-1 if leak == "hidden test" else 0][1]
        line = next(line for line in region.splitlines() if len(line.strip()) >= 20)
        submissions.cell(notebook, "plot").source += "\n" + line  # a careless edit of the release
        nbformat.write(notebook, str(released / "mnist_exercise.ipynb"))
    elif leak == "gradebook":
        culprit = "gradebook.db"
        (released / culprit).write_bytes(b"SQLite format 3\x00" + bytes(100))
    else:
        culprit = "extra.npy"
        np.save(released / culprit, np.zeros(3, np.uint8))
    target = tmp_path / "dist" / "kit.zip"

    result = student_kit("-o", str(target), course_dir=directory)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: the kit is refused: {course.ASSIGNMENT}-student/{culprit}"), lines
    assert not target.exists() and not list(target.parent.glob("*"))


def test_the_student_package_is_pinned_as_the_course_is(tmp_path):
    pins = dict(line.strip().split("==") for line in (course.REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    pins = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}
    text = (course.REPO / "student" / "pyproject.toml").read_text()
    wanted = re.findall(r'^    "([A-Za-z0-9_.-]+)==([^";]+)', text, re.M)
    assert len(wanted) >= 8
    for name, version in wanted:
        if name != "tensorflow":  # macOS's (the lock is Linux's tensorflow-cpu, the same version)
            assert pins[re.sub(r"[-_.]+", "-", name).lower()] == version, name


def test_the_installed_student_package_is_this_checkout():
    import onions_student
    installed = Path(onions_student.__file__).parent
    for path in (course.REPO / "student" / "onions_student").glob("*.py"):
        assert (installed / path.name).read_text() == path.read_text(), f"{path.name} differs: run bash scripts/setup"


def test_students_and_graders_see_the_same_split():
    from onions_student import data as student_data
    assert np.array_equal(student_data.public_indices(), data.grading_split()[1])
    assert np.array_equal(student_data.grading_indices(), data.grading_split()[0])
    for name in data.DATASETS:  # outside a sandbox (stock nbgrader): the images line up with the labels
        images = student_data.grading_images(name)
        assert np.array_equal(images, data.grading_images(name)) and len(data.grading_labels(name)) == len(images)
    for name in data.DATASETS:
        assert student_data.SHA256[name]["x_test"] == data.SPECS[name].split_sha256["x_test"]
        assert student_data.SHA256[name]["y_test"] == data.SPECS[name].split_sha256["y_test"]
        assert student_data.SHA256[name]["x_train"] == data.SPECS[name].sha256["x_train"]


# -- an ordinary account, with the kit alone ---------------------------------------------------

def answered(release: Path, source: Path):
    """The released notebook with the reference answers pasted into its answer cells (by cell id)."""
    notebook = course.read_notebook(release)
    reference = {cell.id: cell for cell in course.read_notebook(source).cells}
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            text = reference[cell.id].source
            cell.source = "\n".join(line for line in text.splitlines() if "### BEGIN SOLUTION" not in line
                                    and "### END SOLUTION" not in line)
    return submissions.cheap_dropout(submissions.one_epoch(notebook)) if source.stem == "mnist_exercise" else notebook


def as_account(command: list, cwd: Path, env: dict = None) -> subprocess.CompletedProcess:
    home = pwd.getpwnam(ACCOUNT).pw_dir
    extra = [f"{key}={value}" for key, value in (env or {}).items()]
    return subprocess.run(["runuser", "-u", ACCOUNT, "--", "env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin",
                           "LANG=C.UTF-8", *extra, *command], cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture
def account():
    if os.geteuid() != 0:
        pytest.skip("needs root to create the ordinary account")
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip(f"no {SYSTEM_PYTHON} here")
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", ACCOUNT], check=True)
    try:
        yield Path(pwd.getpwnam(ACCOUNT).pw_dir)
    finally:
        subprocess.run(["pkill", "-u", ACCOUNT], capture_output=True)  # only this test's account
        subprocess.run(["userdel", "-r", ACCOUNT], capture_output=True)


def test_an_ordinary_account_with_the_kit_alone_passes_every_public_test(built, account, tmp_path):
    started = time.monotonic()
    folder = account / "course"
    folder.mkdir()
    shutil.copy(built, folder / "kit.zip")
    offline = Path("/tmp") / f"onions-kit-data-{os.getpid()}"  # keras cannot download here: the course's offline copy
    shutil.copytree(data.students_dir(), offline)
    subprocess.run(["chmod", "-R", "a+rX", str(offline)], check=True)
    user = pwd.getpwnam(ACCOUNT)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(folder)], check=True)
    try:
        assert as_account([SYSTEM_PYTHON, "-m", "zipfile", "-e", "kit.zip", "."], cwd=folder).returncode == 0
        kit_dir = folder / f"{course.ASSIGNMENT}-student"
        # the README's two install lines, as written there
        readme = (kit_dir / "README.md").read_text()
        assert "python3 -m venv .venv" in readme and ".venv/bin/python -m pip install -r requirements.txt" in readme
        made = as_account([SYSTEM_PYTHON, "-m", "venv", ".venv"], cwd=kit_dir)
        assert made.returncode == 0, made.stderr
        installed = as_account([".venv/bin/python", "-m", "pip", "install", "--quiet", "-r", "requirements.txt"], cwd=kit_dir)
        assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
        install_seconds = time.monotonic() - started

        paths = as_account([".venv/bin/python", "-c", "import json, os, sys, onions_student, importlib.util; "
                            "print(json.dumps([sys.path, os.environ['PATH'], onions_student.__file__, "
                            "importlib.util.find_spec('graders') is not None]))"], cwd=kit_dir)
        sys_path, path, where, has_graders = json.loads(paths.stdout)
        repo = str(course.REPO)
        assert not has_graders and where.startswith(str(kit_dir / ".venv"))
        assert not any(entry.startswith(repo) for entry in [*sys_path, *path.split(":")]), (sys_path, path)

        for name in course.NOTEBOOKS:
            nbformat.write(answered(kit_dir / f"{name}.ipynb", course.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb"),
                           str(kit_dir / f"{name}.ipynb"))
        subprocess.run(["chown", f"{user.pw_uid}:{user.pw_gid}", *(str(kit_dir / f"{n}.ipynb") for n in course.NOTEBOOKS)])
        checked = as_account([".venv/bin/python", "-m", "onions_student", "selfcheck",
                              *(f"{name}.ipynb" for name in course.NOTEBOOKS)], cwd=kit_dir, env={"ONIONS_DATA_DIR": offline})
        assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
        assert "failed" not in checked.stdout and "not answered" not in checked.stdout
        assert checked.stdout.count("public tests passed") == 2
        print(f"\nfrom an empty folder: installed in {install_seconds:.0f} s, self-check passed after "
              f"{time.monotonic() - started:.0f} s\n{checked.stdout}")
    finally:
        shutil.rmtree(offline, ignore_errors=True)
