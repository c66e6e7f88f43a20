"""One vocabulary of statuses: the TAs' page's table, the corpus and the report use graders.course.status."""
import corpus
import course
from graders.course import status
from graders.outputs import report


def test_the_docs_table_is_the_status_vocabulary():
    page = (course.REPO / "docs" / "tas.md").read_text()
    assert status.table() in page, "docs/tas.md's status table drifted: paste graders.course.status.table() into it"


def test_every_status_the_corpus_expects_is_a_batch_status(tmp_path):
    expected = {expected for _, expected in corpus.build(course.REPO).values()}
    assert expected <= set(status.BATCH), expected - set(status.BATCH)
    assert {"graded", "timed out", "kernel crashed", "killed for memory", "too many processes"} <= expected


def test_scored_statuses_are_those_with_real_gradebook_scores():
    assert set(status.SCORED) == {status.Status.GRADED, status.Status.MISSING_NOTEBOOK, status.Status.TEST_CELL_DELETED}
    assert set(report.USABLE) == {*status.SCORED, status.Status.GRADED_BY_NBGRADER}
    exits_zero = {s for s in status.BATCH if s.exit_status == 0}  # as nbgrader, which fails only on what it cannot grade
    assert exits_zero == {*status.SCORED, status.Status.MISSING_SUBMISSION}
    assert [s for s in status.BATCH if s.strict_exit_status == 0] == [status.Status.GRADED]
