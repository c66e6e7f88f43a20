"""The batch grader, `python -m graders autograde`, on a real class and a corpus of bad submissions."""
import json
import sqlite3
import subprocess
import sys

import cheats
import corpus
import submissions
from conftest import BatchClass, tree_digest
import course
from graders.course.status import SCORED
from graders.grading import batch
from graders.isolation import sandbox



def test_parallel_sandboxed_scores_equal_stock_nbgraders(batch_class, graded_class):
    for student in [s for s in graded_class.table if s not in cheats.CHEATS]:  # cheats fool stock nbgrader
        assert batch_class.results[student].status in ("graded", "missing notebook"), batch_class.results[student]
        assert batch_class.table[student] == graded_class.table[student], student


def test_every_bad_submission_gets_its_status_and_the_rest_is_graded(batch_class):
    wrong = {s: (batch_class.results[s].status, batch_class.results[s].detail, expected)
             for s, expected in batch_class.expected.items() if batch_class.results[s].status != expected}
    assert not wrong, wrong
    for student, result in batch_class.results.items():
        assert result.detail or result.status == "graded", f"{student}: a status without a reason"


def test_graded_bad_submissions_score_like_the_reference_except_where_they_are_wrong(batch_class):
    reference = batch_class.scores("reference", "check_your_learning")
    for student, status in batch_class.expected.items():
        if status != "graded":
            continue
        zeroed = corpus.ZEROED.get(student, set())
        scores = batch_class.scores(student, "check_your_learning")
        assert {c: s[0] for c, s in scores.items()} == {c: (0 if c in zeroed else s[0]) for c, s in reference.items()}, student


def test_hostile_reads_writes_and_connections_fail_inside_the_sandbox(batch_class):
    seen = corpus.probe_outputs(batch_class.executed(corpus.HOSTILE, "check_your_learning"))
    assert len(seen) == len(corpus.probes(batch_class.directory)) > 15, seen
    assert not corpus.blocked(seen, batch_class.directory)
    assert not (batch_class.directory / "pwned.txt").exists()
    with sqlite3.connect(batch_class.directory / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_locked_cells_are_restored_and_huge_output_is_trimmed(batch_class):
    header = batch_class.executed("edited-locked-cells", "check_your_learning").cells[0].source
    assert header.startswith("# Lesson 08") and "My own title" not in header
    huge = batch_class.directory / "autograded" / "huge-output" / course.ASSIGNMENT / "check_your_learning.ipynb"
    assert huge.stat().st_size < 5 << 20
    kept = batch_class.directory / ".graders" / course.ASSIGNMENT / "exports" / "huge-output"  # for --recheck: only why not
    assert sum(path.stat().st_size for path in kept.iterdir()) < 1 << 20
    assert "MB kept for a recheck" in json.loads((kept / "manifest.json").read_text())["not kept"]


def test_submitted_is_never_modified(batch_class):
    assert tree_digest(batch_class.directory / "submitted") == batch_class.submitted_before


def test_a_rerun_skips_what_is_graded_and_gives_the_same_results(batch_class):
    command = [sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, "--course", str(batch_class.directory),
               "--workers", "2", "--timeout", str(BatchClass.LIMITS["wall_seconds"]), "--memory", "3G"]
    again = [s for s in batch_class.results if s not in ("fork-bomb", "infinite-loop")]
    result = subprocess.run(command + [arg for s in again for arg in ("--student", s)], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr  # not every submission could be graded
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
    for student in again:
        first = batch_class.results[student]
        assert first.status in lines[student], (student, first.status, lines[student])
        if first.status in SCORED:  # scored: skipped, not run again
            assert "unchanged since last graded" in lines[student]
        else:
            assert "unchanged since last graded" not in lines[student]
    assert batch.summary(list(batch_class.results.values()))


def test_the_sandbox_fails_closed_with_the_fix_when_bubblewrap_is_missing(batch_class, tmp_path):
    command = [sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, "--course", str(batch_class.directory),
               "--student", "reference", "--force"]
    result = subprocess.run(command, capture_output=True, text=True, env={"PATH": str(tmp_path), "HOME": "/tmp"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: bubblewrap (bwrap) is not installed: {sandbox.SETUP_HINT}"


def test_a_wrong_course_directory_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, "--course", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no nbgrader_config.py" in result.stderr


def test_an_assignment_nbgrader_does_not_know_is_one_line_with_the_command(tmp_path):
    directory = course.copy_course(tmp_path / "course")
    course.submit(directory, "alice", {})
    (directory / "submitted" / "alice" / course.ASSIGNMENT / "check_your_learning.ipynb").write_text("{}")
    result = subprocess.run([sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, "--course", str(directory)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"nbgrader generate_assignment {course.ASSIGNMENT}" in result.stderr


# what the batch grader must record for the stock class's students with one wrong answer each
# (tests/submissions.py): the misconception of each failed hidden check, "other" when none fits
MISCONCEPTIONS = {
    "q1-no-bias": {"check_your_learning:q1_test": "biases forgotten"},
    "q1-inputs-only": {"check_your_learning:q1_test": "inputs only, no units"},
    "q2-with-bias": {"check_your_learning:q2_test": "a bias per kernel added"},
    "q3-no-extra-layer": {"check_your_learning:q3_model_test": "extra layer left out"},
    "q3-more": {"check_your_learning:q3_answer_test": "more"},
    "metrics-on-logits": {"mnist_exercise:metrics_test": "precision and recall on logits"},
    "no-precision-recall": {"mnist_exercise:metrics_test": "precision and recall missing (sparse labels)"},
    # accuracy_test declares a notice only: an untrained model fails it with "other"
    "untrained-model": {"mnist_exercise:metrics_test": "other", "mnist_exercise:accuracy_test": "other"},
    "no-dropout-layer": {"mnist_exercise:dropout_test": "other"},
    "reference": {},
}


def test_each_wrong_answer_is_recorded_with_its_misconception_and_nothing_else(batch_class):
    """Real students through the sandboxed batch grader: the state holds exactly the misconception
    of each failed hidden check, with the student's value; the honest reference holds none."""
    from graders.course.coursedir import Course
    state = Course(batch_class.directory).state(course.ASSIGNMENT).load()
    for student, expected in MISCONCEPTIONS.items():
        recorded = batch_class.results[student].diagnoses
        assert {key: found["misconception"] for key, found in recorded.items()} == expected, (student, recorded)
        assert state[student]["result"]["diagnoses"] == recorded, student
    assert batch_class.results["q1-no-bias"].diagnoses["check_your_learning:q1_test"]["value"] == 307200
    assert batch_class.results["q2-with-bias"].diagnoses["check_your_learning:q2_test"]["value"] == 2800
    assert batch_class.results["q3-more"].diagnoses["check_your_learning:q3_answer_test"]["hint"].startswith("Compare")


# -- issue 30: student text is data; caps; honest students' cell ids ----------------------------------------

def _control_characters(text: str, lines: bool = False) -> list:
    """The control and format characters in `text` (with `lines`, newlines and tabs are allowed)."""
    import unicodedata
    return [char for char in text if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
            and not (lines and char in "\n\t")]


def test_no_control_character_reaches_the_summary_the_journal_or_feedback(batch_class):
    from graders.outputs.feedback import Feedback
    summary = batch.summary(list(batch_class.results.values()))
    assert not _control_characters(summary, lines=True)
    assert "\\x1b[2K" in summary  # the forged row is shown as text, in the escape-grade-id row
    assert not any(line.lstrip().startswith("reference") for line in summary.splitlines() if "escape" in line)
    journal = (batch_class.directory / ".graders" / course.ASSIGNMENT / "state.jsonl").read_text()
    strings = []

    def walk(value):
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            [walk(key) or walk(item) for key, item in value.items()]
        elif isinstance(value, list):
            [walk(item) for item in value]
    for line in journal.splitlines():
        walk(json.loads(line))
    assert strings and not [text for text in strings if _control_characters(text)]
    pages = Feedback(batch_class.directory, course.ASSIGNMENT).run(["escape-grade-id", "forges-report-line"])
    for student, (kind, folder) in pages.items():
        assert kind == "feedback", (student, kind, folder)
        for page in folder.glob("*.html"):
            assert not _control_characters(page.read_text(), lines=True), page


def test_a_kernel_that_kills_its_runner_or_forges_its_report_gets_the_graders_words_only(batch_class):
    results = batch_class.results
    assert results["kernel-kills-runner"].detail == "the runner was killed (SIGKILL) before it finished"
    assert results["kernel-kills-runner"].score == 0
    # the forged report line went to the kernel's own pipes only (its outputs), never the grader's
    cell = submissions.cell(batch_class.executed("forges-report-line", "check_your_learning"), "q1_answer")
    assert "PIPES [" in "".join(o.get("text", "") for o in cell.outputs)
    assert results["forges-report-line"].detail == "" and results["forges-report-line"].status == "graded"


def test_a_stopped_checker_or_zygote_fails_closed_at_once(batch_class):
    stopped = batch_class.results["stops-checker"]
    assert stopped.detail == "the checker was stopped (a signal from student code) while checking check_your_learning.ipynb"
    assert stopped.score == 0
    assert batch_class.results["stops-zygote"].detail.endswith("the kernel zygote has died or was stopped")


def test_what_a_student_writes_is_capped_by_the_quota_and_never_reaches_the_graders_disk(batch_class):
    cell = submissions.cell(batch_class.executed("writes-1gb", "check_your_learning"), "q1_answer")
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "STOPPED OSError 28" in text, text  # ENOSPC: the tmpfs is full
    written = int(text.split("WROTE ")[1].split()[0])
    assert 256 <= written <= sandbox.Limits().disk_bytes >> 20 < 1000, text  # the quota, not the 1,000 MB asked for
    kept = [batch_class.directory / "autograded" / "writes-1gb",
            batch_class.directory / ".graders" / course.ASSIGNMENT / "exports" / "writes-1gb"]
    assert sum(path.stat().st_size for folder in kept for path in folder.rglob("*") if path.is_file()) < 200 << 20


def test_a_notebook_of_100000_cells_is_refused_before_nbgrader_reads_it(batch_class):
    result = batch_class.results["many-cells"]
    assert result.detail == ("check_your_learning.ipynb has 100,014 cells, over the limit of 2,000 "
                             "(c.GradersBatch.max_cells)"), result.detail
    assert result.seconds < 30


def test_repeated_and_empty_cell_ids_are_fixed_and_the_honest_student_keeps_full_marks(batch_class):
    reference = batch_class.scores("reference", "check_your_learning")
    for student in ("repeated-cell-ids", "empty-cell-id"):
        assert batch_class.results[student].status == "graded", batch_class.results[student]
        assert batch_class.scores(student, "check_your_learning") == reference, student
    assert batch_class.scores("repeated-cell-ids", "mnist_exercise") == batch_class.scores("blank", "mnist_exercise")
    assert "cell 3's id \"\" is empty, now 'cell-3'" in batch_class.results["empty-cell-id"].detail
    assert "repeats cell 2's" in batch_class.results["repeated-cell-ids"].detail
