"""The cluster path's own cost: the local pool against a Dask scheduler with two workers, on
this one machine, on the same class, in one run.

A class of N students (default 8), each handing in the reference solution, is graded twice in
fresh copies of the course: by `python -m graders autograde` with 2 local workers, and through
`dask scheduler` on 127.0.0.1 with two `python -m graders worker --cores 1` (the same 2 students
at once, one TensorFlow thread each). Prints both wall times, their ratio (expect about 1: the
work is the same, the difference is shipping notebooks and Dask's bookkeeping), and whether
the scores are identical. The header names the CPU.
Usage: .venv/bin/python bench/cluster_speed.py [N]
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import course  # noqa: E402 (the tests' helpers)
from batch_speed import make_class, timed  # noqa: E402


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def start_cluster(folder: Path, course_dir: Path) -> tuple:
    """A scheduler and two one-core workers, each its own process group; returns (file, processes)."""
    file = folder / "scheduler.json"
    processes = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    while not (file.is_file() and file.stat().st_size):
        time.sleep(0.1)
    for name in ("bench-a", "bench-b"):
        processes.append(subprocess.Popen([sys.executable, "-m", "graders", "worker", "--scheduler-file", str(file),
                                           "--cores", "1", "--name", name, "--course", str(course_dir)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from graders.grading import cluster
    with cluster.connect(json.loads(file.read_text())["address"], {}) as client:
        client.wait_for_workers(2, timeout=120)
    return file, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("students", type=int, nargs="?", default=8)
    args = parser.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} cores, {args.students} students (reference solution), uid {os.geteuid()}")
    with tempfile.TemporaryDirectory() as scratch:
        local = make_class(Path(scratch) / "local", args.students)
        dask = make_class(Path(scratch) / "dask", args.students)
        command = [sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT]
        local_seconds = timed(command + ["--workers", "2"], local)
        file, processes = start_cluster(Path(scratch), dask)
        try:
            dask_seconds = timed(command + ["--scheduler-file", str(file)], dask)
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGKILL)
        same = course.grades(local) == course.grades(dask)
    print(f"local pool, 2 workers:         {local_seconds:7.1f} s")
    print(f"Dask, 2 workers on 127.0.0.1:  {dask_seconds:7.1f} s")
    print(f"ratio Dask / local: {dask_seconds / local_seconds:.3f}; identical scores: {same}")


if __name__ == "__main__":
    main()
