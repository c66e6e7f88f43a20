"""One way to fail (graders.errors): what a user can fix is one line and exit status 1; a bug keeps its traceback."""
import subprocess
import sys

import pytest

import graders.__main__ as cli
from graders import data
from graders.course.coursedir import CourseError
from graders.edges.intake import IntakeError
from graders.edges.kit_guard import KitRefused
from graders.edges.lms import LmsError
from graders.errors import GradersError
from graders.grading.cluster import ClusterError
from graders.isolation.sandbox import SandboxUnavailable


def graders(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "graders", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_a_problem_the_user_can_fix_is_one_line_with_the_fix(tmp_path):
    done = graders("autograde", "lesson08", "--course", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {tmp_path / 'nowhere'} has no nbgrader_config.py: "
                                        "run in the course directory or pass --course"], done.stderr


def test_debug_shows_the_traceback_of_that_line_too(tmp_path):
    done = graders("--debug", "autograde", "lesson08", "--course", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "CourseError" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: ") and "a bug in onions" not in done.stderr


def test_a_bug_keeps_its_traceback_and_says_it_is_one(monkeypatch, capsys):
    def broken(args):
        return {}["a key nobody set"]  # what a bug in a library looks like to main: not a GradersError
    monkeypatch.setattr(cli, "run", broken)
    assert cli.main(["demo", "--dir", "unused"]) == 2
    printed = capsys.readouterr().err
    assert "Traceback (most recent call last)" in printed and "KeyError: 'a key nobody set'" in printed
    assert printed.splitlines()[-1].startswith("error: this is a bug in onions, not something you did")


@pytest.mark.parametrize("kind", [data.DataUnavailable, CourseError, ClusterError, IntakeError, KitRefused, LmsError,
                                  SandboxUnavailable])
def test_every_error_a_user_can_fix_is_a_graders_error(kind):
    assert issubclass(kind, GradersError) and issubclass(kind, RuntimeError)  # `except RuntimeError` still holds


def test_progress_is_logging_the_command_prints_and_a_library_caller_does_not_see(capsys, caplog, tmp_path):
    import logging
    from graders.course import datacache

    datacache.build_cache("mnist")  # as a library: logged, never printed
    assert capsys.readouterr().out == ""
    with caplog.at_level(logging.INFO, logger="graders"):
        datacache.build_cache("mnist")
    assert caplog.messages[-1].startswith("offline MNIST already built and verified")
    assert cli.main(["data", "mnist", "--course", str(tmp_path)]) == 0  # the command: the same line, plain, on stdout
    out = capsys.readouterr().out
    assert out.startswith("offline MNIST already built and verified: ") and "INFO" not in out
    assert not logging.getLogger("graders").handlers  # nothing left behind for the next caller
