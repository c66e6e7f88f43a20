"""graders.outputs.feedback: what of a hidden test a student's feedback never shows."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from graders.inside import hidden
from graders.outputs import feedback


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
