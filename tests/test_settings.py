"""One place for each setting (graders.grading.settings and the configurables beside it): a traitlet
with help and one default, set in nbgrader_config.py, a flag an alias of it for one run."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import course
from graders.course import coursedir
from graders.course.coursedir import Course, GradersGradebook
from graders.edges.intake import GradersIntake
from graders.edges.watch import GradersWatch
from graders.grading.execute import StagedExecute
from graders.grading.settings import GradersBatch

DOCS = course.REPO / "docs" / "instructors.md"
TRAITS = [(GradersBatch, name) for name in GradersBatch.class_own_traits(config=True)] + \
         [(GradersIntake, name) for name in GradersIntake.class_own_traits(config=True)] + \
         [(StagedExecute, "max_output_chars"), (StagedExecute, "stderr_as_stdout")] + \
         [(GradersGradebook, "busy_timeout")] + [(GradersWatch, name) for name in GradersWatch.class_own_traits(config=True)]


def graders(*args, cwd):
    return subprocess.run([sys.executable, "-m", "graders", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def a_course(tmp_path, *lines) -> Path:
    folder = tmp_path / "course"
    shutil.copytree(course.REPO / "source", folder / "source")
    config = (course.REPO / "nbgrader_config.py").read_text()
    (folder / "nbgrader_config.py").write_text(config + "\n" + "\n".join(lines) + "\n")
    return folder


def test_every_setting_has_help_and_a_row_in_the_docs():
    table = DOCS.read_text().split("(batch-settings)=")[1].split("\n\n(")[0]
    for owner, name in TRAITS:
        trait = owner.class_traits()[name]
        assert trait.help and len(trait.help) > 20, f"{owner.__name__}.{name} has no help"
        assert f"`c.{owner.__name__}.{name}`" in table, f"c.{owner.__name__}.{name} is not in {DOCS.name}'s table"
    rows = re.findall(r"^\| `c\.(\w+)\.(\w+)`", table, re.M)
    assert sorted(rows) == sorted((owner.__name__, name) for owner, name in TRAITS)  # and no row for a setting gone


def test_help_all_lists_every_setting_with_its_default(tmp_path):
    done = graders("autograde", "--help-all", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in GradersBatch.class_own_traits(config=True):
        assert f"c.GradersBatch.{name}=" in done.stdout, name
    assert "Default: '4G'" in done.stdout and "Default: 900" in done.stdout


def test_the_course_file_sets_the_limits_and_a_flag_wins_for_one_run(tmp_path):
    folder = a_course(tmp_path, 'c.GradersBatch.memory = "3G"', "c.GradersBatch.timeout = 120")
    limits = GradersBatch(config=Course(folder).config).limits()
    assert (limits.memory_bytes, limits.wall_seconds, limits.processes) == (3 << 30, 120, 512)
    flagged = GradersBatch(config=Course(folder).config, memory="1G").limits()
    assert (flagged.memory_bytes, flagged.wall_seconds) == (1 << 30, 120)


def test_a_bad_setting_in_the_file_stops_in_one_line_and_a_flag_overrides_it(tmp_path):
    folder = a_course(tmp_path, 'c.GradersBatch.memory = "lots"')
    done = graders("autograde", "lesson08", cwd=folder)
    assert (done.returncode, done.stderr.splitlines()) == (
        1, ["error: c.GradersBatch.memory = 'lots' is not a size: write e.g. '4G' in nbgrader_config.py"]), done.stderr
    flagged = graders("autograde", "lesson08", "--memory", "2G", cwd=folder)  # past the limits: on to the course
    assert flagged.returncode == 1 and "c.GradersBatch.memory" not in flagged.stderr, flagged.stderr
    assert len(flagged.stderr.strip().splitlines()) == 1 and flagged.stderr.startswith("error: "), flagged.stderr


def test_every_environment_variable_has_one_prefix_and_a_row_in_the_docs():
    """The environment says where things are; each variable is spelled ONIONS_* and documented."""
    spelled = set()
    for folder in ("graders", "student", "scripts", "hub", "tests"):
        for path in (course.REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".sh") and "__pycache__" not in path.parts:
                spelled |= set(re.findall(r"\b((?:ONIONS|GRADERS)_[A-Z][A-Z_]*[A-Z])\b", path.read_text(errors="replace")))
    assert spelled and all(name.startswith("ONIONS_") for name in spelled), sorted(spelled)
    table = (course.REPO / "docs" / "administrators.md").read_text().split("(environment)=\n## ")[1].split("\n## ")[0]
    assert not {name for name in spelled if f"`{name}`" not in table}, "add them to docs/administrators.md's table"


def test_the_gradebook_waits_as_long_as_the_course_says_for_another_writer(tmp_path):
    default, configured = Course(a_course(tmp_path / "a")), Course(a_course(tmp_path / "b", "c.GradersGradebook.busy_timeout = 7.5"))
    for course_dir, milliseconds in ((default, 120_000), (configured, 7_500)):
        engine = coursedir._shared_engine(course_dir.directory.db_url)  # as nbgrader's Gradebook makes it
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == milliseconds
        engine.dispose()
