"""The Dask scheduler's memory with and without DaskPool's submission window (issue 25).

A real `dask scheduler` on 127.0.0.1 with no worker (so nothing runs and every sent student
stays pending), and N students added to a DaskPool, each with this course's two released
lesson08 notebooks as its prepared files (what a real student sends). The scheduler's resident
memory is read after each run: window 64 (the default) against a window as large as the class
(every student sent at once, as before).
Usage: .venv/bin/python bench/scheduler_window.py [--students N]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from graders.grading import cluster
from graders.grading.executor import Job

REPO = Path(__file__).resolve().parents[1]


def resident_mb(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def measure(folder: Path, students: int, window: int) -> tuple:
    """(scheduler MB before, after adding everyone) for one window."""
    file = folder / f"scheduler-{window}.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not (file.is_file() and file.stat().st_size):
            time.sleep(0.1)
        client = cluster.connect(json.loads(file.read_text())["address"], {})
        pool = cluster.DaskPool(client, {}, 1 << 30, window=window)
        before = resident_mb(scheduler.pid)
        for number in range(students):
            pool.add(Job(f"student{number:05d}", folder / "prepared", ["check_your_learning", "mnist_exercise"]))
        time.sleep(3)  # the scheduler takes in what was sent
        after = resident_mb(scheduler.pid)
        pool.stop()
        return before, after
    finally:
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copytree(REPO / "release" / "lesson08", folder / "prepared")
        size = sum(p.stat().st_size for p in (folder / "prepared").rglob("*") if p.is_file())
        print(f"{args.students} students of {size >> 10} KB prepared notebooks each, no worker (all pending)")
        for window in (1, cluster.WINDOW, args.students):  # 1: what a client and one task cost
            before, after = measure(folder, args.students, window)
            print(f"window {window:>6}: scheduler {before:.0f} MB idle, {after:.0f} MB with the class added "
                  f"(+{after - before:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()
