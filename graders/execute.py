"""nbgrader's Execute preprocessor, made immune to stderr noise.

nbgrader scores 0 for a test cell with any stderr output, and TensorFlow writes warnings
there at random (C++ log lines such as ``E0000 ... NodeDef mentions attribute``, from
background threads, into whichever cell is running). A test fails by raising, so after
execution stderr text is relabelled as stdout: kept for the reader, ignored by the grade.
"""
from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute


class GradingExecute(Execute):
    def preprocess(self, nb, resources=None, km=None):
        nb, resources = super().preprocess(nb, resources, km)
        relabel_stderr(nb)
        return nb, resources


def relabel_stderr(nb) -> int:
    """Turn stderr stream outputs into stdout ones; return how many were relabelled."""
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["name"] = "stdout"
                count += 1
    return count


def autograde_preprocessors(execute=GradingExecute) -> list:
    """nbgrader's own autograde pipeline with only its Execute step replaced."""
    default = Autograde.class_traits()["autograde_preprocessors"].make_dynamic_default()
    return [execute if step is Execute else step for step in default]
