"""Issue 30's small pieces: student text made plain, notebooks screened before nbgrader, the
sandbox's handover within its quota, a stopped checker seen at once (real processes, no mocks)."""
import io
import json
import os
import signal
import tarfile
import time
import unicodedata

import pytest

from graders.course.plain import plain, plain_data
from graders.grading import batch, screen
from graders.inside import hidden
from graders.inside.kernel_fork import Zygote
from graders.isolation import handover


@pytest.mark.parametrize("text, shown", [
    ("\x1b[2K\x1b[1A\rreference 19 19 graded", "\\x1b[2K\\x1b[1A reference 19 19 graded"),
    ("\x1b]0;title\x07x", "\\x1b]0;title\\x07x"),
    ("x\x9b31my", "x\\x9b31my"),  # C1 CSI
    ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # a bidi override
    ("refer\u200bence", "refer\\u200bence"),  # a zero-width space: never "reference"
    ("line\nbreak\ttab\u2028sep", "line break tab sep"),
    ("café ✓ 日本", "café ✓ 日本"),
    ("\ud800", "\\ud800"),
])
def test_plain_shows_every_control_or_format_character_as_its_escape(text, shown):
    assert plain(text) == shown
    assert plain(plain(text)) == plain(text)
    assert all(unicodedata.category(char)[0] != "C" for char in plain(text))


def test_plain_cuts_and_plain_data_reaches_keys_and_nested_strings():
    assert plain("x" * 500) == "x" * 300 and plain("x" * 500, 0) == "x" * 500
    assert plain_data({"a\x1b": ["b\x07", {"c": "\u202e"}], "n": 3}) == {"a\\x1b": ["b\\x07", {"c": "\\u202e"}], "n": 3}
    assert plain("a\x1bb\n\tc", 0, lines=True) == "a\\x1bb\n\tc"


def test_the_summary_shows_a_hostile_student_id_and_detail_as_text_on_its_own_line():
    rows = [batch.Result("reference", "graded", "", 19, 19),
            batch.Result("evil\x1b[1A\r\x1b[2K", "graded", "x\x1b[1A\rreference 19 19 graded", 0, 19)]
    summary = batch.summary(rows)
    assert len(summary.splitlines()) == 4
    assert not [char for char in summary if unicodedata.category(char)[0] == "C" and char != "\n"]
    assert "evil\\x1b[1A \\x1b[2K" in summary


def _notebook(ids, minor=5) -> dict:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": str(number)} for number, _ in enumerate(ids)]
    for cell, cell_id in zip(cells, ids):
        if cell_id is not None:
            cell["id"] = cell_id
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": minor}


def _write(folder, name, notebook) -> None:
    (folder / name).write_text(json.dumps(notebook))


def test_repeated_empty_missing_and_invalid_ids_are_fixed_the_same_way_every_time(tmp_path):
    _write(tmp_path, "a.ipynb", _notebook(["x", "y", "x", "", None, "no spaces!", "x-3", "y"]))
    first, second = screen.screen(tmp_path, 1 << 20, 100), screen.screen(tmp_path, 1 << 20, 100)
    assert first == second and not first.problem
    ids = [cell["id"] for cell in json.loads(first.fixed["a.ipynb"])["cells"]]
    assert ids == ["x", "y", "x-3-2", "cell-4", "cell-5", "cell-6", "x-3", "y-8"]
    assert len(set(ids)) == len(ids)
    assert first.notes[0] == "a.ipynb: cell 3's id \"x\" repeats cell 1's, now 'x-3-2'"
    assert "cell 4's id \"\" is empty" in first.notes[1] and "cell 5's id is missing" in first.notes[2]
    assert "cell 6's id \"no spaces!\" is not a valid id" in first.notes[3]
    import nbformat
    nbformat.validate(nbformat.reads(first.fixed["a.ipynb"].decode(), as_version=4))


def test_valid_ids_and_old_notebooks_are_left_alone(tmp_path):
    _write(tmp_path, "a.ipynb", _notebook(["x", "y"]))
    _write(tmp_path, "b.ipynb", _notebook([None, None], minor=4))  # nbformat 4.4: no ids at all
    assert screen.screen(tmp_path, 1 << 20, 100) == screen.Screened()


def test_too_many_cells_too_large_or_a_cell_that_is_not_one_are_one_line_each(tmp_path):
    _write(tmp_path, "a.ipynb", _notebook(["x"] * 101))
    assert screen.screen(tmp_path, 1 << 20, 100).problem == "a.ipynb has 101 cells, over the limit of 100 (c.GradersBatch.max_cells)"
    assert screen.screen(tmp_path, 1000, 1000).problem.startswith("a.ipynb is 0 MB, over the limit of 0 MB")
    notebook = _notebook(["x", "y"])
    notebook["cells"][1] = "text"
    _write(tmp_path, "a.ipynb", notebook)
    assert screen.screen(tmp_path, 1 << 20, 100).problem == "a.ipynb: cell 2 is not a cell (a JSON object), so its id cannot be fixed"
    (tmp_path / "a.ipynb").write_bytes(b"\xff not json")  # nbgrader says why, as before
    assert screen.screen(tmp_path, 1 << 20, 100) == screen.Screened()


def _tar(files: dict, kinds: dict = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            if (kinds or {}).get(name):
                member.type, member.linkname, member.size = kinds[name], "/etc/passwd", 0
            tar.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


def _receive(data: bytes, folder, quota=1 << 20, file_bytes=1 << 20) -> list:
    assert len(data) < 60000  # fits in the pipe
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    problems = []
    handover.receive(read, folder, quota, file_bytes, problems)
    return problems


def test_only_expected_outputs_within_the_quota_are_handed_back(tmp_path):
    (tmp_path / "alice").mkdir()
    assert _receive(_tar({"a.executed.ipynb": b"{}", "alice/b.exports.tar.xz": b"x"}), tmp_path) == []
    assert (tmp_path / "a.executed.ipynb").read_bytes() == b"{}" and (tmp_path / "alice" / "b.exports.tar.xz").exists()
    refused = _receive(_tar({"../x.executed.ipynb": b"1", "/tmp/y.executed.ipynb": b"1", "notes.txt": b"1",
                             "l.executed.ipynb": b""}, {"l.executed.ipynb": tarfile.SYMTYPE}), tmp_path)
    assert len(refused) == 4 and all("which is not an output" in line for line in refused)
    assert not (tmp_path.parent / "x.executed.ipynb").exists() and not (tmp_path / "notes.txt").exists()
    assert _receive(_tar({"c.executed.ipynb": b"x" * 2000}), tmp_path, quota=1000) == [
        "the outputs are over the sandbox's 0 MB disk quota (--disk)"]
    assert not (tmp_path / "c.executed.ipynb").exists()


def test_a_stopped_checker_fails_its_checks_within_a_second(tmp_path):
    zygote = Zygote([])
    try:
        os.kill(zygote.checker_pid, signal.SIGSTOP)
        started = time.monotonic()
        results, _ = zygote.check([hidden.Check("c1", "assert True", str(tmp_path), [])], 60)
        assert time.monotonic() - started < 2
        assert results == {"c1": [hidden.FAILED_TO_RUN, "the hidden checks could not run: the checker was stopped"]}
        assert zygote.checker_stopped and zygote.checker_died
    finally:
        zygote.close()
