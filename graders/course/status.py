"""Every status a student can end with, in one place: the batch, the report, the tests and the
docs/tas.md's table (a test checks it against `table()`) use these and no other words.

A `Status` is a `str`, so it reads and writes as its text in the state file and the CSV.
"""
import enum


class Status(str, enum.Enum):
    def __new__(cls, text: str, meaning: str, scored: bool = False):
        member = str.__new__(cls, text)
        member._value_ = text
        member.meaning, member.scored = meaning, scored
        return member

    def __str__(self) -> str:
        return self.value

    @property
    def exit_status(self) -> int:
        """`python -m graders autograde` exits with the largest of its students', as nbgrader would:
        0 for what nbgrader grades without failing (a missing notebook scores 0, a missing submission
        is skipped), 1 for a student that could not be graded. With `--strict`, `strict_exit_status`."""
        return 0 if self.scored or self is Status.MISSING_SUBMISSION else 1

    @property
    def strict_exit_status(self) -> int:
        """`--strict`: 0 only for a student graded cleanly, every notebook and test cell there."""
        return 0 if self is Status.GRADED else 1

    # the batch grader's verdicts
    GRADED = "graded", "executed and graded by nbgrader", True
    MISSING_NOTEBOOK = "missing notebook", "a notebook was not handed in (or renamed): nbgrader scored it 0", True
    TEST_CELL_DELETED = "test cell deleted", "a test cell is missing: nbgrader leaves it for manual grading", True
    MISSING_SUBMISSION = "missing submission", ("nothing handed in: no submitted/<student>/<assignment> folder, or "
                                                "one without a notebook (nbgrader skips it too)")
    INVALID_NOTEBOOK = "invalid notebook", ("nbgrader could not read a notebook (not JSON, empty, not UTF-8), or it has more "
                                            "cells or bytes than `c.GradersBatch.max_cells` or `.max_notebook_bytes`")
    UNKNOWN_STUDENT = "unknown student", "not in the gradebook, which the course does not let nbgrader add to: not graded"
    INVALID_TIMESTAMP = "invalid timestamp", "timestamp.txt is not a date nbgrader can read: not graded (correct or remove it)"
    TIMED_OUT = "timed out", "still running after `--timeout` seconds: not graded"
    KILLED_FOR_MEMORY = "killed for memory", "over `--memory`: not graded"
    TOO_MANY_PROCESSES = "too many processes", "reached `--processes` (a fork bomb): not graded"
    KERNEL_CRASHED = "kernel crashed", "the kernel died (segfault, `os._exit`): not graded"
    INVALID_RESULT = "invalid result", "the executed notebook came back changed: not graded"
    SANDBOX_REFUSED = "sandbox refused", "the sandbox could not start (see the detail column): not graded"
    EXECUTION_FAILED = "execution failed", ("the runner failed for another reason (killed by student code, the checker "
                                            "stopped, outputs over `--disk`: see the detail column): not graded")
    NBGRADER_ERROR = "nbgrader error", "nbgrader's Autograde failed (see the detail column): not graded"
    WORKER_LOST = "worker lost", ("on a cluster, every machine that ran it died (as many times as the scheduler "
                                  "allows, 3 by default): a submission that kills workers; not graded")
    # the report's, for students the batch grader has no record of
    GRADED_BY_NBGRADER = "graded by nbgrader", "scored in the gradebook (stock `nbgrader autograde`)", True
    NOT_GRADED = "not graded", "in the gradebook without a single score (e.g. stock autograde failed)"
    NO_SUBMISSION = "no submission", "a student of the gradebook who handed nothing in"
    NOT_IN_GRADEBOOK = "not in gradebook", "the batch grader graded it, the gradebook has no trace"


BATCH = [status for status in Status if status.name not in ("GRADED_BY_NBGRADER", "NOT_GRADED", "NO_SUBMISSION",
                                                             "NOT_IN_GRADEBOOK")]
SCORED = tuple(status for status in BATCH if status.scored)  # the batch statuses whose gradebook scores are real


def table() -> str:
    """docs/tas.md's table of the batch grader's statuses (markdown)."""
    rows = [f"| {status} | {status.meaning} | {status.exit_status} | {status.strict_exit_status} |" for status in BATCH]
    return "\n".join(["| status | meaning | exit status | with --strict |", "|---|---|---|---|", *rows])
