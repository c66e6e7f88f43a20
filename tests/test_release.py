"""The committed release is what nbgrader generates from source/, and gives nothing away."""
import re

import nbformat
import pytest

import course

REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1\n?", re.S)


def regions(source):
    """The lines inside solution and hidden-test regions of one cell."""
    return [line for _, body in REGION.findall(source) for line in body.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    directory = course.copy_course(tmp_path_factory.mktemp("release") / "course")
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    return directory


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_committed_release_matches_a_fresh_generate_assignment(regenerated, name):
    fresh = course.read_notebook(regenerated / "release" / course.ASSIGNMENT / f"{name}.ipynb")
    committed = course.read_notebook(course.REPO / "release" / course.ASSIGNMENT / f"{name}.ipynb")
    assert committed == fresh, f"release/ drifted from source/: run nbgrader generate_assignment {course.ASSIGNMENT} --force"


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_release_holds_no_solution_and_no_hidden_test(name):
    source = course.read_notebook(course.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb")
    release = course.read_notebook(course.REPO / "release" / course.ASSIGNMENT / f"{name}.ipynb")
    released = {cell.id: cell for cell in release.cells}
    everything = "\n".join(cell.source for cell in release.cells)
    assert "### BEGIN" not in everything and "### END" not in everything
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            assert released[cell.id].source == "YOUR ANSWER HERE", f"{cell.id}: the model answer leaked"
            continue
        hidden = regions(cell.source)
        outside = REGION.sub("", cell.source).splitlines()
        for line in hidden:
            # a hidden line may also be given outside its region: it may appear only that often
            assert released[cell.id].source.splitlines().count(line) == outside.count(line), f"{cell.id}: {line!r} leaked"
            if "assert" in line:
                assert line.strip() not in everything, f"{cell.id}: hidden test {line!r} leaked"


@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_notebooks_are_stored_without_outputs_with_stable_ids_and_stated_points(name):
    for folder in ("source", "release"):
        notebook = course.read_notebook(course.REPO / folder / course.ASSIGNMENT / f"{name}.ipynb")
        nbformat.validate(notebook)
        for cell in notebook.cells:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, f"{folder}/{name}: {cell.id} has outputs"
            assert re.fullmatch(r"[a-z0-9_]+", cell.id), f"{folder}/{name}: {cell.id} is not a chosen id"
        points = [c.metadata["nbgrader"]["points"] for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
        header = notebook.cells[0].source
        assert header.startswith("# Lesson 08"), f"{folder}/{name}: the header cell is not a markdown heading"
        stated = int(re.search(r"\*\*total\*\* \| \*\*(\d+)\*\*", header).group(1))
        assert stated == sum(points), f"{name}: the header says {stated} points, the cells carry {sum(points)}"
        for cell in notebook.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and cell.cell_type == "code":
                assert f"({meta['points']:g} point" in cell.source, f"{cell.id} does not state its points"
