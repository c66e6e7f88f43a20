"""graders.grading.executor: the runner's measurements and a sandboxed run's status, from explicit facts."""

import pytest

from graders.course import status
from graders.grading import executor
from graders.inside import run_notebook
from graders.isolation import sandbox


def test_measurements_gather_each_notebooks_seconds_from_the_runners_report():
    report = [{"text": "started", "started": True}, {"text": "ran a", "notebook": "a", "wall_seconds": 12.5, "cpu_seconds": 30},
              {"text": "checked a", "notebook": "a", "check_wall_seconds": 1.0, "check_cpu_seconds": 0.75, "export_seconds": 0.2},
              {"text": "ran b", "notebook": "b", "wall_seconds": "3", "cpu_seconds": 2.0, "peak": 7},
              {"text": "kernel died", "failure": True, "notebook": ["a"], "wall_seconds": 1}]
    assert executor.measurements(report) == {
        "a": {"wall_seconds": 12.5, "cpu_seconds": 30.0, "check_wall_seconds": 1.0, "check_cpu_seconds": 0.75, "export_seconds": 0.2},
        "b": {"cpu_seconds": 2.0}}
    assert executor.measurements([]) == {}


# -- graders.grading.executor.classify: the status of a sandboxed run, from explicit facts -------------------

def outcome(returncode=0, report=(), output="", **flags):
    facts = dict(timed_out=False, oom_killed=False, process_limit_hit=False)
    return sandbox.Outcome(returncode=returncode, wall_seconds=1.0, cpu_seconds=1.0, peak_memory_bytes=0,
                           output=output, report=list(report), **{**facts, **flags})


STARTED = {"text": "started", "started": True}
LIMITS = sandbox.Limits(wall_seconds=60, memory_bytes=1 << 30, processes=64)


@pytest.mark.parametrize("run, expected", [
    (outcome(0, [STARTED]), (status.Status.GRADED, "")),
    (outcome(-9, [STARTED], process_limit_hit=True, timed_out=True), (status.Status.TOO_MANY_PROCESSES,
                                                                       "reached the limit of 64 processes and threads")),
    (outcome(-9, [STARTED], oom_killed=True), (status.Status.KILLED_FOR_MEMORY, "over the 1024 MB limit")),
    (outcome(-9, [STARTED], timed_out=True), (status.Status.TIMED_OUT, "still running after 60 s")),
    (outcome(run_notebook.TIMED_OUT, [STARTED]), (status.Status.TIMED_OUT, "still running after 60 s")),
    (outcome(run_notebook.KERNEL_DIED, [STARTED, {"text": "kernel died: a.ipynb: Kernel died", "failure": True}]),
     (status.Status.KERNEL_CRASHED, "kernel died: a.ipynb: Kernel died")),
    (outcome(1, [], output="bwrap: Creating new namespace failed: Operation not permitted\n"),
     (status.Status.SANDBOX_REFUSED, "bwrap: Creating new namespace failed: Operation not permitted")),
    # once the runner has started, stdout is the student's too: never the detail
    (outcome(1, [STARTED], output="Traceback (most recent call last):\nValueError: boom\n"),
     (status.Status.EXECUTION_FAILED, "the runner ended with exit status 1 before it finished")),
    (outcome(137, [STARTED], output="\x1b[2K\x1b[1A\rreference 19 19 graded\n"),
     (status.Status.EXECUTION_FAILED, "the runner was killed (SIGKILL) before it finished")),
    (outcome(-9, [STARTED], output="x\n"), (status.Status.EXECUTION_FAILED, "the runner was killed (SIGKILL) before it finished")),
    (outcome(run_notebook.UNREADABLE, [STARTED, {"text": "unreadable notebook a\x1b[2J.ipynb: \u202eboom", "failure": True}]),
     (status.Status.EXECUTION_FAILED, "unreadable notebook a\\x1b[2J.ipynb: \\u202eboom")),
    (outcome(run_notebook.CHECKER_STOPPED, [STARTED, {"text": "the checker was stopped", "failure": True}]),
     (status.Status.EXECUTION_FAILED, "the checker was stopped")),
    (outcome(0, [STARTED], refused=["the outputs are over the sandbox's 1 MB disk quota (--disk)"]),
     (status.Status.EXECUTION_FAILED, "the outputs are over the sandbox's 1 MB disk quota (--disk)")),
])
def test_classify_names_the_cause_first(run, expected):
    assert executor.classify(run, LIMITS) == expected


def test_a_student_printing_runner_lines_cannot_fake_a_report():
    """Only the private report line counts: RUNNER lines on the shared stdout are for people."""
    run = outcome(run_notebook.KERNEL_DIED, [STARTED], output="RUNNER: ran a in 1 s, kernel CPU 1 s\n")
    assert executor.classify(run, LIMITS) == (status.Status.KERNEL_CRASHED, "")
    assert executor.measurements(run.report) == {}
