"""graders.course.coursedir (the journal, nbgrader's metadata check) and a batch's fingerprint."""
import json

import pytest
from nbformat.v4 import new_code_cell

from graders.isolation import sandbox


def test_the_journal_keeps_each_students_last_line_and_takes_over_an_old_state_json(tmp_path):
    from graders.course.coursedir import BatchState
    (tmp_path / "state.json").write_text(json.dumps({"ann": {"status": "graded"}, "bob": {"status": "timed out"}}))
    state = BatchState(tmp_path)
    assert state.load() == {"ann": {"status": "graded"}, "bob": {"status": "timed out"}}
    assert not (tmp_path / "state.json").exists() and len(state.path.read_text().splitlines()) == 2
    state.record("bob", {"status": "graded"})
    with open(state.path, "a") as journal:
        journal.write('["ann", {"stat')  # a crash in the middle of a line
    assert state.load() == {"ann": {"status": "graded"}, "bob": {"status": "graded"}}


# -- graders.course.coursedir: nbgrader without its repeated set-up ---------------------------------------

@pytest.mark.parametrize("metadata", [{"grade_id": 5}, {"points": "many"}, {"extra": 1}, {}])
def test_nbgraders_cell_metadata_check_raises_what_jsonschema_validate_raises(metadata):
    import jsonschema
    from nbgrader.nbgraderformat import common
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

    from graders.course import coursedir
    assert isinstance(common.jsonschema, coursedir._SchemasCheckedOnce)  # in place once graders.course.coursedir is imported
    cell = new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "a", "schema_version": 3, "grade": True,
                                                         "solution": False, "locked": True, "task": False, "points": 2,
                                                         **metadata}})
    validator = MetadataValidatorV3()
    outcomes = []
    for validate in (lambda: validator.validate_cell(cell), lambda: jsonschema.validate(cell.metadata.nbgrader, validator.schema)):
        try:
            validate()
            outcomes.append(None)
        except jsonschema.ValidationError as error:
            outcomes.append((str(error), list(error.path)))
    assert outcomes[0] == outcomes[1] and (outcomes[0] is None) == (metadata == {})


def test_a_fingerprint_is_what_it_was_with_the_assignments_files_read_once(tmp_path):
    """The batch state keeps fingerprints: the same digest as before, or every student is regraded."""
    import dataclasses
    import hashlib

    from graders.grading import batch

    from graders.course import coursedir
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n")
    for path, text in {"source/a/x.ipynb": "{}", "source/a/data/d.csv": "1,2", "submitted/s/a/x.ipynb": "[]",
                       "submitted/s/a/notes/n.txt": "n", "submitted/t/a/x.ipynb": "[1]"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    course, limits = coursedir.Course(tmp_path), sandbox.Limits()
    digest = hashlib.sha256()  # the fingerprint as the earlier versions computed it
    folders = [course.folder("submitted", "a", "s"), course.folder("source", "a")]
    for path in [p for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()] + [course.root / "nbgrader_config.py"]:
        digest.update(str(path.relative_to(course.root)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps({k: float(v) for k, v in dataclasses.asdict(limits).items()}, sort_keys=True).encode())
    shared = batch.assignment_files(course, "a")
    assert batch.fingerprint(course, "a", "s", limits) == batch.fingerprint(course, "a", "s", limits, shared) == digest.hexdigest()
    assert batch.fingerprint(course, "a", "t", limits, shared) != digest.hexdigest()


# -- graders.course.grading_lock: one grading of an assignment at a time -------------------------------------

HOLDS_THE_LOCK = """
import logging, sys, time
from pathlib import Path
from graders.course.grading_lock import grading_lock
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
with grading_lock(Path(sys.argv[1]), sys.argv[2]):
    with grading_lock(Path(sys.argv[1]), "again, inside"):  # the watcher's look around its batch: no wait
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
"""


def test_a_second_grading_waits_says_for_whom_and_starts_when_the_first_dies(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    def start(doing, seconds):
        return subprocess.Popen([sys.executable, "-c", HOLDS_THE_LOCK, str(tmp_path / "work"), doing, str(seconds)],
                                stdout=subprocess.PIPE, text=True)

    first = start("the batch (autograde)", 600)
    assert first.stdout.readline() == "held\n"
    second = start("the watcher", 0)
    waiting = second.stdout.readline()
    assert waiting.startswith("waiting: the batch (autograde) (pid ") and "is grading this assignment" in waiting, waiting
    time.sleep(1)
    assert second.poll() is None  # still waiting
    first.send_signal(signal.SIGKILL)  # dies holding it: the kernel lets go
    killed = time.monotonic()
    assert second.stdout.readline() == "held\n" and second.wait(timeout=30) == 0
    assert time.monotonic() - killed < 10 and first.wait() == -9
