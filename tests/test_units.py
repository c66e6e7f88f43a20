"""The package's small pure pieces, without kernels, sandboxes or nbgrader runs: a few seconds in all."""
import copy
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from graders.inside import artifacts, hidden, run_notebook


# -- graders.isolation.sandbox -----------------------------------------------------------------------------

from graders.grading import execute, executor

from graders.outputs import feedback

from graders.isolation import sandbox

from graders.course import status

@pytest.mark.parametrize("text, size", [("4G", 4 << 30), ("512M", 512 << 20), ("3g", 3 << 30), ("4GB", 4 << 30),
                                        (" 2k ", 2048), ("1.5G", 3 << 29), ("1T", 1 << 40), ("1024", 1024)])
def test_parse_size_reads_units_case_and_plain_bytes(text, size):
    assert sandbox.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "G", "4X", "4GiB"])
def test_parse_size_refuses_what_is_not_a_size_with_a_value_error(text):
    with pytest.raises(ValueError):
        sandbox.parse_size(text)


def flag_args(command, flag, count):
    """The `count` arguments after each occurrence of `flag` before the `--` that starts argv."""
    options = command[:command.index("--")]
    return [tuple(options[i + 1:i + 1 + count]) for i, word in enumerate(options) if word == flag]


@pytest.fixture
def bwrap(tmp_path):
    def build(user_namespace, **kw):
        return sandbox.bwrap_command(["python", "run.py"], tmp_path / "work", tmp_path / "data",
                                     {"OMP_NUM_THREADS": "2", "HOME": "/home/grader"},
                                     {"/tmp/matplotlib/fontlist.json": tmp_path / "fonts.json"},
                                     user_namespace=user_namespace, **kw)
    return build


def test_bwrap_unshares_user_and_forbids_nested_namespaces_only_in_a_user_namespace(bwrap):
    inside, as_root = bwrap(True), bwrap(False)
    assert {"--unshare-user", "--disable-userns"} <= set(inside[:inside.index("--")])
    assert not {"--unshare-user", "--disable-userns"} & set(as_root)
    for command in (inside, as_root):
        assert {"--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--clearenv"} <= set(command)


def test_bwrap_only_submission_and_the_tmpfs_folders_are_writable_and_none_is_the_graders_disk(bwrap, tmp_path):
    command = bwrap(True, tmpfs_bytes=123 << 20, disk_bytes=45 << 20)
    assert flag_args(command, "--bind", 2) == []  # the working copy is unpacked into a tmpfs: graders.isolation.handover
    assert flag_args(command, "--chdir", 1) == [("/submission",)]
    hidden = [folder for (folder,) in flag_args(command, "--remount-ro", 1) if folder not in ("/", "/dev")]
    assert hidden == sandbox.hidden_folders([*sandbox.SHOWN_TOPS, *sandbox._python_paths()])  # dataset folders: read-only
    assert [f for (f,) in flag_args(command, "--tmpfs", 1) if f not in hidden] == ["/tmp", "/dev/shm", "/submission"]
    assert flag_args(command, "--size", 3) == [*((str(123 << 20), "--tmpfs", folder) for folder in sandbox.TMPFS),
                                               (str(45 << 20), "--tmpfs", "/submission")]
    assert not {"--dev-bind", "--bind-try", "--dev-bind-try"} & set(command)
    # the root and /dev are made read-only once everything is mounted on them
    remounts = [i for i, word in enumerate(command) if word == "--remount-ro" and command[i + 1] in ("/", "/dev")]
    assert sorted(command[i + 1] for i in remounts) == ["/", "/dev"]
    mounts = [i for i, word in enumerate(command) if word in ("--bind", "--ro-bind", "--tmpfs", "--dir", "--symlink")]
    assert max(mounts) < min(remounts)


def test_bwrap_shows_data_files_and_the_package_read_only_and_never_the_course(bwrap, tmp_path):
    command = bwrap(True)
    read_only = flag_args(command, "--ro-bind", 2)
    assert (str(tmp_path / "data"), "/data") in read_only
    assert (str(tmp_path / "fonts.json"), "/tmp/matplotlib/fontlist.json") in read_only
    assert (str(sandbox.PACKAGE), sandbox.PACKAGE_INSIDE) in read_only
    assert ("1777", "--dir", "/tmp/matplotlib") in flag_args(command, "--perms", 3)  # a folder anyone may write
    course_source = sandbox.PACKAGE.parent / "source"
    for host, _ in read_only + flag_args(command, "--bind", 2):
        assert not course_source.is_relative_to(host), f"{host} shows the course's source/"
        assert not Path.home().is_relative_to(host), f"{host} shows the home directory"


def test_bwrap_sets_the_environment_and_runs_argv_last(bwrap):
    command = bwrap(False)
    env = dict(flag_args(command, "--setenv", 2))
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["HOME"] == "/tmp" and env["ONIONS_DATA_DIR"] == "/data"  # the grader's own HOME is overridden
    assert env["PATH"].endswith(":/usr/bin:/bin")
    assert command.index("--clearenv") < command.index("--setenv")
    assert command[command.index("--"):] == ["--", "python", "run.py"]


# -- graders.grading.execute -----------------------------------------------------------------------------

def notebook(*outputs):
    meta = {"nbgrader": {"grade": True, "points": 1}}
    return new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("print(1)", metadata=meta, outputs=list(outputs))])


def executed(ours, *outputs, count=3):
    """What the sandbox returns for `ours`: the same cells, with outputs."""
    theirs = copy.deepcopy(ours)
    theirs.cells[1].update(outputs=list(outputs), execution_count=count)
    return theirs


def test_copy_outputs_takes_outputs_and_counts_and_nothing_else():
    ours = notebook()
    theirs = executed(ours, new_output("stream", name="stdout", text="1\n"))
    theirs.cells[1].metadata = {"nbgrader": {"grade": True, "points": 100}}
    execute.copy_outputs(theirs, ours)
    assert ours.cells[1].outputs == [new_output("stream", name="stdout", text="1\n")]
    assert ours.cells[1].execution_count == 3
    assert ours.cells[1].metadata["nbgrader"]["points"] == 1
    execute.copy_outputs(executed(ours, new_output("stream", name="stdout", text="z" * 10 ** 6)), ours)
    assert len(json.dumps(ours.cells[1].outputs)) < execute.MAX_OUTPUT_CHARS  # capped on the way in


@pytest.mark.parametrize("change", [lambda cells: cells[1].update(source="print(2)"),
                                    lambda cells: cells[1].update(id="other-id"),
                                    lambda cells: cells.__setitem__(1, new_markdown_cell("print(1)", id=cells[1].id)),
                                    lambda cells: cells.append(new_code_cell("print(3)"))], ids=["source", "id", "type", "count"])
def test_copy_outputs_refuses_a_changed_cell_or_cell_count(change):
    ours = notebook()
    theirs = executed(ours, new_output("stream", name="stdout", text="1\n"))
    change(theirs.cells)
    with pytest.raises(execute.InvalidExecution):
        execute.copy_outputs(theirs, ours)
    assert ours.cells[1].outputs == []


def test_capped_leaves_small_outputs_and_cuts_huge_ones_with_a_note():
    small = new_output("stream", name="stderr", text="warning\n")
    assert execute.capped(small) is small
    big = execute.capped(new_output("stream", name="stderr", text="x" * 10 ** 6))
    assert big.name == "stderr" and big.text.startswith("x" * (execute.MAX_OUTPUT_CHARS // 2))
    assert "1,000,0" in big.text and "cut" in big.text and len(json.dumps(big)) < execute.MAX_OUTPUT_CHARS
    rich = execute.capped(new_output("display_data", data={"text/plain": "y" * 10 ** 6}))
    assert rich.output_type == "stream" and len(json.dumps(rich)) < execute.MAX_OUTPUT_CHARS
    error = execute.capped(new_output("error", ename="E", evalue="v" * 10 ** 6, traceback=["t" * 5000] * 500))
    assert len(error.traceback) == 20 and max(map(len, error.traceback)) == 2000 and len(error.evalue) == 2000


def test_read_executed_refuses_missing_oversized_and_invalid_notebooks(tmp_path):
    path = tmp_path / "n.executed.ipynb"
    with pytest.raises(execute.InvalidExecution, match="no executed notebook"):
        execute.read_executed(path, 1 << 20)
    nbformat.write(notebook(), str(path))
    assert execute.read_executed(path, 1 << 20).cells[0].source == "# Title"
    with pytest.raises(execute.InvalidExecution, match="limit"):
        execute.read_executed(path, 100)
    for text in ("{not json", json.dumps({"cells": "none", "nbformat": 4, "nbformat_minor": 5, "metadata": {}})):
        with pytest.raises(execute.InvalidExecution, match="not a valid notebook"):
            path.write_text(text)
            execute.read_executed(path, 1 << 20)


def test_relabel_stderr_turns_stderr_into_stdout_and_counts():
    nb = notebook(new_output("stream", name="stderr", text="E0000 tf\n"), new_output("stream", name="stdout", text="ok"),
                  new_output("stream", name="stderr", text="warn"), new_output("error", ename="E", evalue="", traceback=[]))
    assert execute.relabel_stderr(nb) == 2
    assert [o.get("name") for o in nb.cells[1].outputs] == ["stdout", "stdout", "stdout", None]
    assert execute.relabel_stderr(nb) == 0


# -- graders.outputs.feedback ----------------------------------------------------------------------------

HIDDEN_Q3 = 'assert q3_answer == "fewer", "the answer is fewer"'
HIDDEN_Q4 = 'assert n_parameters == 307300, "wrong count"'
PUBLIC_Q4 = 'assert n_parameters > 0, "n_parameters should be positive"'


def grade_cell(source, grade_id, count, outputs):
    meta = {"nbgrader": {"grade": True, "locked": True, "solution": False, "grade_id": grade_id, "points": 1}}
    return new_code_cell(source, metadata=meta, execution_count=count, outputs=outputs)


def graded_notebook():
    q3 = grade_cell(f'# Q3, the direction (1 point)\nassert isinstance(q3_answer, str), "q3_answer should be a string"\n'
                    f"### BEGIN HIDDEN TESTS\n{HIDDEN_Q3}\n### END HIDDEN TESTS", "q3_test", 4,
                    [new_output("stream", name="stdout", text="checking 'fewer'\n"),
                     nbformat.from_dict(hidden.failure_output("AssertionError", "the answer is fewer"))])
    frame = f"Cell \x1b[0;32mIn[7], line 5\x1b[0m\n\x1b[1;32m      3\x1b[0m {HIDDEN_Q4}\n\x1b[0;32m----> 5\x1b[0m {PUBLIC_Q4}\n"
    traceback = ["\x1b[0;31m-----\x1b[0m", "AssertionError  Traceback (most recent call last)", frame,
                 "\x1b[0;31mAssertionError\x1b[0m: n_parameters should be positive"]
    q4 = grade_cell(f"# Q4, the count (1 point)\n### BEGIN HIDDEN TESTS\n{HIDDEN_Q4}\n### END HIDDEN TESTS\n{PUBLIC_Q4}", "q4_test", 7,
                    [new_output("error", ename="AssertionError", evalue="n_parameters should be positive", traceback=traceback)])
    answer = new_code_cell('q3_answer = "maybe"', execution_count=2,
                           outputs=[new_output("stream", name="stdout", text=f"I guessed: {HIDDEN_Q4}\n"),
                                    new_output("execute_result", data={"text/plain": "'maybe'"}, execution_count=2)])
    return new_notebook(cells=[new_markdown_cell("# Q3 and Q4"), answer, q3, q4])


def test_hidden_lines_and_question_labels():
    nb = graded_notebook()
    nb.cells.append(new_code_cell('### BEGIN HIDDEN TESTS\nx = 1\nq3_answer = "maybe"\n### END HIDDEN TESTS'))
    assert feedback.hidden_lines([nb]) == {HIDDEN_Q3, HIDDEN_Q4}  # x = 1 is short; the answer cell shows the other
    assert [feedback.question(cell) for cell in graded_notebook().cells[2:]] == ["Q3", "Q4"]
    assert feedback.question(grade_cell("assert ok", "q5_test", 1, [])) == "Q5"
    assert feedback.question(grade_cell("assert ok", "shape", 1, [])) == "the test cell shape"


def test_redaction_cuts_hidden_tests_and_every_output_quoting_them_but_keeps_public_messages():
    nb, _ = feedback.RedactHiddenTests().preprocess(graded_notebook(), {})
    answer, q3, q4 = nb.cells[1:]
    everything = "\n".join([cell.source for cell in nb.cells] + [feedback._text(o) for c in nb.cells for o in c.get("outputs", [])])
    for secret in (HIDDEN_Q3, HIDDEN_Q4, "307300", '"fewer"', "HIDDEN TESTS"):
        assert secret not in feedback.plain(everything), secret
    assert q3.source.endswith('assert isinstance(q3_answer, str), "q3_answer should be a string"')
    assert [(o.output_type, o.evalue) for o in q3.outputs] == [("error", "a hidden check of Q3 failed")]  # no stream kept
    assert q4.source == f"# Q4, the count (1 point)\n{PUBLIC_Q4}"
    (error,) = q4.outputs
    assert (error.ename, error.evalue) == ("AssertionError", "n_parameters should be positive")
    assert f"line 2\n----> 2 {PUBLIC_Q4}" in "".join(error.traceback)  # numbered as in the cell the student sees
    assert [o.get("text") for o in answer.outputs] == [feedback.REMOVED, None]
    assert answer.outputs[1].data == {"text/plain": "'maybe'"}


def test_a_public_line_failing_in_another_execution_is_reported_as_hidden():
    nb = graded_notebook()
    nb.cells[3].execution_count = 8  # the traceback's In[7] is not this cell's run
    nb, _ = feedback.RedactHiddenTests().preprocess(nb, {})
    assert [o.evalue for o in nb.cells[3].outputs] == ["a hidden check of Q4 failed"]


# -- graders.inside.hidden and graders.inside.artifacts --------------------------------------------------------

def test_split_hides_everything_from_the_first_begin_including_code_after_end():
    source = "assert a\n### BEGIN HIDDEN TESTS\nassert b\n### END HIDDEN TESTS\nassert c\n### BEGIN HIDDEN TESTS\nassert d"
    assert hidden.split(source) == ("assert a\n", "assert b\nassert c\nassert d")
    assert hidden.split("### BEGIN HIDDEN TESTS   \nassert b\n") == ("", "assert b\n")


@pytest.mark.parametrize("meta, expected", [
    ({"grade": True, "locked": True, "grade_id": "q1_test", "solution": False}, True),
    # what the submission's metadata says does not count: the grade id is the gradebook's test cell
    ({"grade": True, "locked": False, "grade_id": "q1_test"}, True),
    ({"grade": False, "locked": False, "grade_id": "q1_test", "solution": True}, True),
    ({"grade": True, "locked": True, "grade_id": "q1", "solution": False}, False),  # an answer, says the gradebook
    ({"grade": True, "locked": True, "grade_id": ""}, False),
    ({"grade": True, "locked": True, "grade_id": ["q1_test"]}, False),
    (None, False)])
def test_is_test_cell_takes_the_gradebooks_test_cells_whatever_the_metadata_says(meta, expected):
    cell = new_code_cell("assert x", metadata={"nbgrader": meta} if meta else {})
    assert hidden.is_test_cell(cell, ["q1_test", "q2_test"]) is expected
    assert hidden.is_test_cell(cell, []) is False
    assert hidden.is_test_cell(new_markdown_cell("x", metadata=cell.metadata), ["q1_test"]) is False


def test_free_names_skips_what_the_code_binds_anywhere():
    code = ("import os.path\nfrom numpy import testing as npt\n"
            "def close(v, *rest, tol=1e-3):\n    return abs(v - target) < tol\n"
            "try:\n    npt.assert_equal(len(history), epochs)\nexcept AssertionError as err:\n    raise\n"
            "assert all(close(v) for v in values) and os.path.exists(path)\n"
            "assert {k: w for k, w in weights.items()} and (n := count) > 0 and n\n")
    assert hidden.free_names(code) == ["target", "history", "epochs", "values", "path", "weights", "count"]


def test_plain_and_unplain_keep_types_through_json():
    value = {"t": (1, [2.5, ("s", None)]), "l": [True, False, -0.0], "nested": {"e": ()},
             "special": [math.inf, -math.inf], "np": [np.int64(3), np.float32(0.5), np.bool_(True), np.str_("s")]}
    back = artifacts.unplain(json.loads(json.dumps(artifacts.plain(value), allow_nan=False)))
    assert back == {"t": (1, [2.5, ("s", None)]), "l": [True, False, -0.0], "nested": {"e": ()},
                    "special": [math.inf, -math.inf], "np": [3, 0.5, True, "s"]}
    assert [type(x) for x in back["np"]] == [int, float, bool, str] and type(back["t"][1][1]) is tuple
    for nan in (math.nan, np.float64("nan"), np.float32("nan")):  # strict JSON: NaN is tagged, not written bare
        back = artifacts.unplain(json.loads(json.dumps(artifacts.plain(nan), allow_nan=False)))
        assert type(back) is float and math.isnan(back)


@pytest.mark.parametrize("value", [{np.str_("k"): 1}, {(1, 2): 3}, {1, 2}, b"bytes", 1j, object(), [np.datetime64("2024")]])
def test_plain_refuses_what_is_not_plain_data(value):
    with pytest.raises(artifacts.Refused):
        artifacts.plain(value)


@pytest.mark.parametrize("tree", [{"float": "1.5"}, {"list": "abc"}, {"tuple": 1}, {"a": 1, "b": 2}, {"set": []}, [1, 2], {}])
def test_unplain_refuses_malformed_trees(tree):
    with pytest.raises(artifacts.Refused):
        artifacts.unplain(tree)


# -- graders.grading.executor: the runner's measurements -------------------------------------------------

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


# -- graders.course.coursedir.BatchState: the journal --------------------------------------------------

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


# -- recheck: graders.inside.artifacts.pack/unpack, graders.inside.run_notebook.merge ---------------------

def test_a_pack_round_trips_keeps_identical_arrays_once_and_unpacks_data_only(tmp_path):
    import io
    import tarfile
    for cell in ("003", "007"):
        artifacts.export({"x": np.zeros((200, 28, 28), "float32"), "n": 3}, ["x", "n"], str(tmp_path / "src" / cell))
    artifacts.export({"forged": 1}, ["forged"], str(tmp_path / "src" / "005"))  # not a check the runner ran
    packed = artifacts.pack(tmp_path / "src", [3, 7])
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:xz") as archive:
        assert sum(member.islnk() for member in archive.getmembers()) >= 1  # the second array is a link
    artifacts.unpack(packed, tmp_path / "out")
    values, _ = artifacts.load(str(tmp_path / "out" / "007"), ["x", "n"])
    assert json.loads((tmp_path / "out" / artifacts.CHECKED).read_text()) == [3, 7]
    assert not (tmp_path / "out" / "005").exists()
    assert values["n"] == 3 and np.array_equal(values["x"], np.zeros((200, 28, 28), "float32"))
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:xz") as archive:
        info = tarfile.TarInfo("../escape")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(tarfile.TarError):
        artifacts.unpack(evil.getvalue(), tmp_path / "out2")
    assert not (tmp_path / "escape").exists()


def _graded(public, hidden_part, error=True):
    cell = new_code_cell(f"{public}\n### BEGIN HIDDEN TESTS\n{hidden_part}\n### END HIDDEN TESTS")
    cell.metadata = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1}}
    cell.id = "t"
    cell.outputs = [new_output("error", ename="AssertionError", evalue="old", traceback=[])] if error else []
    answer = new_code_cell("x = 1")
    answer.id, answer.outputs = "a", [new_output("stream", name="stdout", text="hi\n")]
    return new_notebook(cells=[answer, cell])


def test_merge_takes_the_old_outputs_drops_the_old_checks_error_and_refuses_what_it_cannot_reproduce():
    previous = _graded("assert x", "assert x == 2")
    notebook = _graded("assert x", "assert x in (1, 2)", error=False)
    notebook.cells[0].outputs = []
    checks = run_notebook.merge(notebook, previous, {1}, (hidden.BEGIN, hidden.END), ["t"])
    assert [(index, code.strip()) for index, _, code, _ in checks] == [(1, "assert x in (1, 2)")]
    assert notebook.cells[0].outputs == previous.cells[0].outputs and notebook.cells[1].outputs == []
    for changed, message in [(_graded("assert x > 0", "assert x == 2"), "is not the one graded"),
                             (_graded("assert x", "assert y == 2"), "reads y, which was not exported")]:
        with pytest.raises(run_notebook.RecheckError, match=message):
            run_notebook.merge(changed, copy.deepcopy(previous), {1}, (hidden.BEGIN, hidden.END), ["t"])
    same, carried = _graded("assert x", "assert x == 2", error=False), []  # an unchanged check keeps its old output
    assert run_notebook.merge(same, copy.deepcopy(previous), {1}, (hidden.BEGIN, hidden.END), ["t"], carried) == []
    assert carried == [1] and same.cells[1].outputs == previous.cells[1].outputs
    unchecked = _graded("assert x", "assert x == 2", error=False)
    unchecked.cells[1].source = "assert x\n"  # graded without a hidden part: no exports
    with pytest.raises(run_notebook.RecheckError, match="has a hidden part now"):
        run_notebook.merge(_graded("assert x", "assert x == 2"), unchecked, set(), (hidden.BEGIN, hidden.END), ["t"])


def test_the_checker_imports_keras_once_only_for_exports_that_need_it(tmp_path):
    """A recheck preloads nothing: the checker imports keras itself when a check loads a model or a
    history, so each request's child inherits it instead of importing it again. A module is a name
    (nothing is imported), and an entry the check does not read is never looked at."""
    for name, manifest, expected in [("model", {"model": {"kind": "model", "file": "model.keras"}}, True),
                                     ("history", {"h": {"kind": "history", "history": {}}}, True),
                                     ("module", {"keras": {"kind": "module", "name": "keras.layers"}}, False),
                                     ("unread", {"n": {"kind": "value", "value": 3}, "m": {"kind": "model"}}, False),
                                     ("numbers", {"n": {"kind": "value", "value": 3}, "np": {"kind": "module", "name": "numpy"}}, False),
                                     ("not json", None, False)]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / artifacts.MANIFEST).write_text(json.dumps(manifest) if manifest else "{not json")
        assert artifacts.needs_keras(str(folder), ["model", "h", "keras", "n", "np"]) is expected, name
    assert artifacts.needs_keras(str(tmp_path / "missing"), ["model"]) is False
