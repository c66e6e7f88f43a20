"""The files a notebook writes (graders.inside.side_effects): what the runner hands back, what the
grader takes from the line, what reaches autograded/; with the files a hostile notebook would write."""
import io
import os
import tarfile

from graders.inside import side_effects
from graders.isolation import handover


def test_the_runner_hands_back_new_and_changed_regular_files_with_plain_names_only(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "same.txt").write_text("kept as it came")
    before = side_effects.snapshot(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")  # changed
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.png").write_bytes(b"\x89PNG")  # new, in a folder
    (tmp_path / "link").symlink_to("/etc/passwd")  # not a file
    os.mkfifo(tmp_path / "fifo")  # not a file
    (tmp_path / "esc\x1b[2Jape.txt").write_text("a name that would clear a TA's terminal")
    (tmp_path / "lesson.ipynb").write_text("{}")  # the notebook's own name: the graded one wins
    kept, left_out = side_effects.written(tmp_path, before, skip={"lesson.ipynb"})
    assert kept == {"side-effects/data.csv": b"a,b\n1,2\n", "side-effects/plots/loss.png": b"\x89PNG"}
    assert len(left_out) == 1 and "not plain text" in left_out[0]


def test_a_flood_of_files_is_cut_at_the_cap_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(side_effects, "MAX_FILES", 3)
    for number in range(5):
        (tmp_path / f"f{number}.txt").write_text("x")
    kept, left_out = side_effects.written(tmp_path, {})
    assert len(kept) == 3 and len(left_out) == 2 and "over 3 files" in left_out[0]


def test_the_grader_takes_side_effects_under_their_folder_and_nothing_that_climbs_out(tmp_path):
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name in ("side-effects/plots/loss.png", "side-effects/../../escaped.txt", "side-effects/a\x1bb",
                     "elsewhere/file.txt", "a.executed.ipynb"):
            member = tarfile.TarInfo(name)
            member.size = 3
            tar.addfile(member, io.BytesIO(b"abc"))
    read, write = os.pipe()
    os.write(write, stream.getvalue())
    os.close(write)
    folder, problems = tmp_path / "job", []
    folder.mkdir()
    handover.receive(read, folder, 1 << 20, 1 << 20, problems)
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == ["a.executed.ipynb", "side-effects/plots/loss.png"], got
    assert len(problems) == 3 and not (tmp_path / "escaped.txt").exists(), problems


def test_autograded_gets_them_with_the_graded_notebooks_mode_never_over_a_notebook_or_through_a_link(tmp_path):
    from graders.course.coursedir import Course
    from graders.grading.steps import NbgraderSteps

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'x'\n")
    steps = NbgraderSteps(Course(tmp_path), "ps1")
    effects = steps.stage / "ann" / "ps1" / handover.SIDE_EFFECTS
    (effects / "out").mkdir(parents=True)
    for name, text in (("p1.ipynb", "rewritten"), ("timestamp.txt", "2000"), ("out/plot.txt", "plot"), ("linked/x.txt", "!")):
        (effects / name).parent.mkdir(parents=True, exist_ok=True)
        (effects / name).write_text(text)
    graded = tmp_path / "autograded" / "ann" / "ps1"
    graded.mkdir(parents=True)
    (graded / "p1.ipynb").write_text("graded")
    (graded / "p1.ipynb").chmod(0o640)
    (graded / "timestamp.txt").write_text("2015")
    outside = tmp_path / "outside"
    outside.mkdir()
    (graded / "linked").symlink_to(outside)  # as if copied from a submission
    steps.place_side_effects("ann")
    assert (graded / "out" / "plot.txt").read_text() == "plot" and (graded / "out" / "plot.txt").stat().st_mode & 0o777 == 0o640
    assert (graded / "p1.ipynb").read_text() == "graded" and (graded / "timestamp.txt").read_text() == "2015"
    assert not list(outside.iterdir())
