"""What a course chooses for the batch grader, and what every sandbox of a batch is given: one
place that the batch (this machine) and the cluster's workers (other machines) both read."""
import os
from pathlib import Path

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Configurable

from graders.isolation import sandbox

MATPLOTLIB_DIR = "/tmp/matplotlib"  # matplotlib's config directory in the sandbox


class GradersBatch(Configurable):
    """What a course chooses for `python -m graders autograde` (in nbgrader_config.py, as c.GradersBatch.*)."""
    preload = List(Unicode(), help="modules each student's kernels share, imported once per student "
                                   "(this course: numpy, tensorflow, keras)").tag(config=True)
    datasets = List(Unicode(), help="offline datasets (graders.data) the notebooks need: checked before "
                                    "grading, so a missing one stops the batch instead of failing everyone").tag(config=True)
    grading_secret_file = Unicode("", help="a file holding the course's grading secret (64 hex digits, mode 0600), "
                                           "for an instructor who keeps it outside the course; default: "
                                           ".graders/grading-secret, made on first use").tag(config=True)
    matplotlib_fonts = Bool(True, help="build matplotlib's font list once and show it to every sandbox").tag(config=True)
    # checked before nbgrader reads a notebook, in the grader's one process (graders.grading.screen)
    max_cells = Integer(2000, help="cells a submitted notebook may have; more is 'invalid notebook' "
                                   "(nbgrader would spend about 3 ms of the grader's process per cell)").tag(config=True)
    max_notebook_bytes = Integer(64 << 20, help="bytes a submitted notebook may have; more is 'invalid notebook'").tag(config=True)


def default_workers(memory_per_worker: int) -> int:
    """As many as there are cores, as long as each worker's memory limit fits in the machine."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        available = memory_per_worker
    return max(1, min(os.cpu_count() or 1, available // memory_per_worker))


def thread_env(workers: int) -> dict:
    """Split the cores between concurrent kernels, so TensorFlow's pools don't oversubscribe them."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
            "NBGRADER_EXECUTION": "autograde", "LANG": "C.UTF-8", "MPLCONFIGDIR": MATPLOTLIB_DIR}


def font_files(folder: Path, wanted: bool) -> dict:
    """{path in the sandbox: host path} of matplotlib's font list, built once in `folder` (if `wanted`)."""
    fonts = sandbox.font_list(folder) if wanted else None
    return {f"{MATPLOTLIB_DIR}/{fonts.name}": fonts} if fonts else {}
