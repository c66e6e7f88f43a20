"""`python -m graders intake`: a Canvas-style download lands in submitted/, a bad one changes nothing."""
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import tree_digest
import course
from graders.edges import intake

RELEASE = course.REPO / "release" / course.ASSIGNMENT


def handed_out(student):
    """The released notebooks as `student` hands them in: {file name: bytes}, different per student."""
    files = {}
    for path in sorted(RELEASE.glob("*.ipynb")):
        notebook = nbformat.read(str(path), as_version=4)
        notebook.cells[-1].source += f"\n# handed in by {student}"
        files[path.name] = nbformat.writes(notebook).encode()
    return files


def run_intake(directory, archive, *options):
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "graders", "intake", str(archive), course.ASSIGNMENT,
                           "--course", str(directory), *options],
                          cwd=directory.parent, env=env, capture_output=True, text=True)


@pytest.fixture
def class_course(tmp_path):
    """A new course where one student ("earlier") has already handed in."""
    directory = course.copy_course(tmp_path / "course")
    folder = directory / "submitted" / "earlier" / course.ASSIGNMENT
    folder.mkdir(parents=True)
    for name, content in handed_out("earlier").items():
        (folder / name).write_bytes(content)
    return directory


def leftovers(directory):
    """What an import may leave outside submitted/: nbgrader's downloaded/ or our staging folders."""
    return sorted(str(p.relative_to(directory)) for p in [directory / "downloaded", *directory.glob(".graders/*/intake-*")]
                  if p.exists())


def test_intake_hands_in_a_canvas_download(class_course, tmp_path):
    students = {"1001": handed_out("1001"), "ada-l": handed_out("ada-l"), "grace.h": handed_out("grace.h")}
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("smithjane_1001_88001_check_your_learning.ipynb", students["1001"]["check_your_learning.ipynb"])
        zipped.writestr("smithjane_LATE_1001_88002_mnist_exercise-1.ipynb", students["1001"]["mnist_exercise.ipynb"])
        zipped.writestr("lovelaceada_ada-l_88003_check_your_learning.ipynb", students["ada-l"]["check_your_learning.ipynb"])
        zipped.writestr("lovelaceada_ada-l_88004_mnist_exercise.ipynb", students["ada-l"]["mnist_exercise.ipynb"])
        # a student who handed in one notebook: imported, reported as missing the other
        zipped.writestr("hoppergrace_grace.h_88005_mnist_exercise.ipynb", students["grace.h"]["mnist_exercise.ipynb"])
    del students["grace.h"]["check_your_learning.ipynb"]
    earlier = tree_digest(class_course / "submitted" / "earlier")

    result = run_intake(class_course, archive)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == ["1001", "ada-l", "grace.h"]
    assert lines[2].endswith("; missing check_your_learning.ipynb")
    assert lines[-1] == "imported 3 student(s) from submissions.zip with nbgrader zip_collect"
    for student, files in students.items():
        folder = class_course / "submitted" / student / course.ASSIGNMENT
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert tree_digest(class_course / "submitted" / "earlier") == earlier
    assert leftovers(class_course) == []

    # the same students again: refused as a whole, then replaced with --force
    before = tree_digest(class_course / "submitted")
    again = run_intake(class_course, archive)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == ("error: 3 student(s) of submissions.zip already handed in lesson08 (1001, ada-l, grace.h): "
                            "nothing imported; pass --force to replace their hand-ins\n")
    assert tree_digest(class_course / "submitted") == before

    newer = handed_out("ada-l, second try")
    intake.lms_archive(archive, {"ada-l": newer})
    forced = run_intake(class_course, archive, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "ada-l: check_your_learning.ipynb, mnist_exercise.ipynb -> submitted/ada-l/lesson08/ (replaced the earlier hand-in)" in forced.stdout
    folder = class_course / "submitted" / "ada-l" / course.ASSIGNMENT
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == newer
    assert leftovers(class_course) == []


def _symlink(zipped):
    link = zipfile.ZipInfo("carol_carol_2_mnist_exercise.ipynb")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped.writestr(link, "../../../source/lesson08/mnist_exercise.ipynb")


def _bomb(zipped):
    zipped.writestr("carol_carol_2_mnist_exercise.ipynb", b"0" * (intake.MAX_NOTEBOOK_BYTES + 1))


# name: (what follows a good member in the archive, what the error must name)
MALFORMED = {
    "dot-dot": (lambda z: z.writestr("../evil.ipynb", "{}"), "'../evil.ipynb' has an unsafe path"),
    "absolute": (lambda z: z.writestr(zipfile.ZipInfo("/tmp/evil.ipynb"), "{}"), "'/tmp/evil.ipynb' has an unsafe path"),
    "not-canvas": (lambda z: z.writestr("carol_mnist_exercise.ipynb", "{}"), "'carol_mnist_exercise.ipynb' is not named"),
    "not-a-notebook": (lambda z: z.writestr("carol_carol_2_notes.txt", "hi"), "'carol_carol_2_notes.txt' is not named"),
    "unknown-notebook": (lambda z: z.writestr("carol_carol_2_mnist_exercise_final.ipynb", "{}"),
                         "'carol_carol_2_mnist_exercise_final.ipynb' is 'mnist_exercise_final.ipynb', not a notebook"),
    "duplicate": (lambda z: z.writestr("carol_carol_2_check_your_learning-1.ipynb", "{}"),
                  "'carol_carol_1_check_your_learning.ipynb' and 'carol_carol_2_check_your_learning-1.ipynb' are both"),
    "symlink": (_symlink, "'carol_carol_2_mnist_exercise.ipynb' is a symbolic link"),
    "zip-bomb": (_bomb, "'carol_carol_2_mnist_exercise.ipynb' is 104857601 bytes (limit 104857600)"),
    "truncated": (None, "bad.zip is not a readable zip archive"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_archive_changes_nothing(kind, class_course, tmp_path):
    add_bad_member, message = MALFORMED[kind]
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        # a good student first: a half-done import would show her in submitted/
        zipped.writestr("carol_carol_1_check_your_learning.ipynb", handed_out("carol")["check_your_learning.ipynb"])
        zipped.writestr("earlier_earlier_3_mnist_exercise.ipynb", "{}")
        if add_bad_member:
            add_bad_member(zipped)
    if kind == "truncated":
        archive.write_bytes(archive.read_bytes()[:-30])
    before = tree_digest(class_course / "submitted")

    result = run_intake(class_course, archive, "--force")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert tree_digest(class_course / "submitted") == before
    assert not (class_course / "submitted" / "carol").exists()
    assert leftovers(class_course) == []
