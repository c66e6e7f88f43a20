"""What a course chooses for the batch grader, and what every sandbox of a batch is given: one
place that the batch (this machine) and the cluster's workers (other machines) both read."""
import os
from pathlib import Path

from traitlets import Bool, Float, Integer, List, Unicode
from traitlets.config import Configurable

from graders.errors import GradersError
from graders.isolation import sandbox

MATPLOTLIB_DIR = "/tmp/matplotlib"  # matplotlib's config directory in the sandbox


DEFAULT_LIMITS = sandbox.Limits()  # each limit's default is typed once, there


class GradersBatch(Configurable):
    """What a course chooses for `python -m graders autograde` (in nbgrader_config.py, as c.GradersBatch.*;
    a command-line flag, where there is one, is an alias that wins over the file for that run)."""
    timeout = Float(DEFAULT_LIMITS.wall_seconds, help="wall-time limit per notebook, seconds (--timeout): a "
                    "student's sandbox gets that times the notebooks plus 60 s; each cell gets nbgrader's "
                    "Execute.timeout, at most this").tag(config=True)
    memory = Unicode(sandbox.format_size(DEFAULT_LIMITS.memory_bytes), help="memory limit per student's sandbox, "
                     "e.g. 4G or 512M (--memory)").tag(config=True)
    disk = Unicode(sandbox.format_size(DEFAULT_LIMITS.disk_bytes), help="what a student's sandbox may hold in its "
                   "working copy, handed-in files included (--disk): a tmpfs, counted in memory too, never the "
                   "grader's disk").tag(config=True)
    file_size = Unicode(sandbox.format_size(DEFAULT_LIMITS.file_bytes), help="the largest file a student's code "
                        "may write (an rlimit; no flag)").tag(config=True)
    processes = Integer(DEFAULT_LIMITS.processes, help="process and thread limit per student's sandbox "
                        "(--processes)").tag(config=True)
    cluster_window = Integer(64, help="students sent to a Dask scheduler at once (a few per worker thread of a "
                             "large cluster); the others wait on the grader's disk").tag(config=True)
    recheck_group = Integer(25, help="at most this many students' rechecks share one sandbox (--recheck)").tag(config=True)
    kept_notebook_bytes = Integer(16 << 20, help="an executed notebook larger than this (pages of output) is not "
                                  "kept for a recheck: that student is graded in full").tag(config=True)
    workers = Integer(0, help="students graded at once on this machine (--workers); 0: as many as there are "
                      "cores, as long as each sandbox's memory fits").tag(config=True)
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


    def limits(self) -> sandbox.Limits:
        """The sandbox limits this course grades with: the ones a recheck reads again."""
        for name in ("timeout", "processes"):
            if getattr(self, name) <= 0:
                raise GradersError(f"c.GradersBatch.{name} = {getattr(self, name)!r} is not a positive number: "
                                   f"fix it in nbgrader_config.py (default {self.trait_defaults(name)!r})")
        return sandbox.Limits(wall_seconds=self.timeout, memory_bytes=self._size("memory"), processes=self.processes,
                              file_bytes=self._size("file_size"), disk_bytes=self._size("disk"))

    def _size(self, name: str) -> int:
        text = getattr(self, name)
        try:
            value = sandbox.parse_size(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise GradersError(f"c.GradersBatch.{name} = {text!r} is not a size: write e.g. "
                               f"{self.trait_defaults(name)!r} in nbgrader_config.py")
        return value

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else default_workers(self._size("memory"))


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
