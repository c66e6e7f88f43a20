"""Who shared code: copies (renamed, commented, reordered) pair above the threshold, independent
honest answers and the untouched release do not, and student code is escaped in the HTML."""
import copy
import csv
import re
import shutil
import os
import subprocess
import sys

import nbformat

import course
from graders.outputs import similarity

ENV = {**os.environ, "PYTHONPATH": str(course.REPO)}  # this checkout's graders, not an installed one
RENAMES = {"n_input_items": "inputs_count", "n_parameters": "param_total", "n_conv_parameters": "conv_total",
           "ratio": "fewer_by", "build_model": "make_net", "dropout_rate": "drop", "x": "layer_out",
           "images": "pics", "train_val_gap": "gap_value", "model_dropout": "net_drop",
           "history_dropout": "hist_drop", "inputs": "entry"}
HONEST = {"q1_answer": "n_input_items = channels * height * width\nn_parameters = n_bias + n_hidden_neurons * "
                       "n_input_items\n",
          "q2_answer": "n_conv_parameters = kernel_channels * kernel_width * kernel_height * n_kernels\n"
                       "ratio = n_parameters / n_conv_parameters\n",
          "preprocess_answer": "    scaled = images / 255\n    return scaled.reshape(len(images), 28, 28, 1)"
                               ".astype('float32')\n"}


def source_notebooks() -> dict:
    return {name: nbformat.read(str(course.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb"), as_version=4)
            for name in course.NOTEBOOKS}


def release_notebooks() -> dict:
    return {name: nbformat.read(str(course.REPO / "release" / course.ASSIGNMENT / f"{name}.ipynb"), as_version=4)
            for name in course.NOTEBOOKS}


def answers(notebooks):
    return [cell for notebook in notebooks.values() for cell in notebook.cells
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")]


def renamed(notebooks) -> dict:
    """Every name changed, a comment after each line."""
    notebooks = copy.deepcopy(notebooks)
    for cell in answers(notebooks):
        for old, new in RENAMES.items():
            cell.source = re.sub(rf"\b{old}\b", new, cell.source)
        cell.source = "\n".join(f"{line}  # my own work" if line.strip() else line for line in cell.source.split("\n"))
    return notebooks


def reordered(notebooks) -> dict:
    """The answer cells' order reversed, blank lines between every line."""
    notebooks = copy.deepcopy(notebooks)
    for notebook in notebooks.values():
        cells = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("solution")]
        positions = [i for i, cell in enumerate(notebook.cells) if cell in cells]
        for position, cell in zip(positions, reversed(cells)):
            cell.source = cell.source.replace("\n", "\n\n")
            notebook.cells[position] = cell
    return notebooks


def honest(release) -> dict:
    """A second correct style, written independently, in the release's cells."""
    notebooks = copy.deepcopy(release)
    for cell in answers(notebooks):
        if cell.id in HONEST:
            cell.source = re.sub(r"( *)### BEGIN SOLUTION.*?### END SOLUTION\n?|( *)# YOUR CODE HERE\n( *)raise "
                                 r"NotImplementedError\(\)\n?", lambda _: HONEST[cell.id], cell.source, flags=re.S)
    return notebooks


def build(directory):
    shutil.copytree(course.REPO / "release" / course.ASSIGNMENT, directory / "release" / course.ASSIGNMENT)
    reference, release = source_notebooks(), release_notebooks()
    hostile = copy.deepcopy(release)
    answers(hostile)[0].source += "\nprint('</pre><script>alert(1)</script>\x1b[2J\x1b]0;pwned\x07')\n" * 3
    students = {"reference": reference, "renamed": renamed(reference), "reordered": reordered(reference),
                "honest": honest(release), "blank": release, "hostile": hostile,
                "hostile\x1b[2J": copy.deepcopy(hostile)}  # a folder name a terminal would obey
    for student, notebooks in students.items():
        course.submit(directory, student, notebooks)
    return directory


def scores(pairs) -> dict:
    return {frozenset((pair.student_a, pair.student_b)): pair.similarity for pair in pairs}


def test_copies_pair_and_honest_work_does_not(tmp_path):
    pairs = similarity.class_pairs(build(tmp_path), course.ASSIGNMENT)
    found = scores(pairs)
    threshold = similarity.DEFAULT_THRESHOLD
    assert found[frozenset(("reference", "renamed"))] >= threshold
    assert found[frozenset(("reference", "reordered"))] >= threshold
    assert found[frozenset(("reference", "honest"))] < threshold
    assert all(score == 0 for pair, score in found.items() if "blank" in pair)


def test_command_writes_sorted_csv_and_escapes(tmp_path):
    build(tmp_path)
    done = subprocess.run([sys.executable, "-m", "graders", "similarity", course.ASSIGNMENT], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 0, done.stderr
    assert "hostile " in done.stdout and "\x1b" not in done.stdout  # the pair is printed, its id made plain
    rows = list(csv.DictReader((tmp_path / "reports" / course.ASSIGNMENT / "similarity.csv").open()))
    assert len(rows) == 21 and list(rows[0]) == list(similarity.COLUMNS)
    values = [float(row["similarity"]) for row in rows]
    assert values == sorted(values, reverse=True) and all(0 <= value <= 1 for value in values)
    page = (tmp_path / "reports" / course.ASSIGNMENT / "similarity.html").read_text()
    assert "hostile" in page and "<script" not in page and "\x1b" not in page and "not a verdict" in page


def test_unknown_assignment_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "graders", "similarity", "nope"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode != 0 and "Traceback" not in done.stderr
