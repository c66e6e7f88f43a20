"""The source notebooks as nbgrader's validate and a plain kernel (nbclient) run them."""

import nbclient
import pytest

import course


@pytest.mark.slow  # runs the lesson's notebooks (trains)
@pytest.mark.parametrize("name", course.NOTEBOOKS)
def test_nbgrader_validate_passes_on_the_solution(name, tmp_path):
    notebook = course.REPO / "source" / course.ASSIGNMENT / f"{name}.ipynb"
    result = course.nbgrader(course.REPO, "validate", str(notebook))
    assert "Success! Your notebook passes all the tests." in result.stdout, result.stdout[-3000:]


def test_optional_cifar10_training_skips_with_a_reason_where_cifar10_cannot_be_had(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    notebook = course.read_notebook(course.REPO / "source" / course.ASSIGNMENT / "check_your_learning.ipynb")
    try:
        import keras
        keras.datasets.cifar10.load_data()
        pytest.skip("this machine can download CIFAR-10 (the cell would train for minutes)")
    except Exception:
        pass
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(course.REPO)}}).execute()
    cifar = next(cell for cell in notebook.cells if cell.id == "cifar_training")
    text = "".join(output.get("text", "") for output in cifar.outputs)
    assert "Skipped: CIFAR-10 could not be downloaded (URL fetch failure" in text, text
    assert not [o for cell in notebook.cells for o in cell.get("outputs", []) if o.output_type == "error"]
