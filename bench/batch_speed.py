"""Stock serial `nbgrader autograde` against `python -m graders autograde`, on one machine, in one run.

A class of N students (default 8), each handing in the reference solution of the full lesson,
is graded three times in fresh copies of the course: by stock nbgrader (serial, unsandboxed),
by the batch grader sandboxed, and by the batch grader with --no-sandbox (the sandbox's own
overhead). Prints wall times, the speed-up, CPU seconds per notebook (its kernel's: the
notebook's own code), of the hidden checks per notebook (the checker's CPU and wall time, and
the kernel's time exporting what they read), per student (the whole sandbox: runner, imports,
kernels, checker), peak memory per student, how busy the batch kept the cores (the students' sandbox CPU-seconds / cores /
wall), and checks that all three gave identical scores. Run it as root and as an ordinary user:
the header names the CPU and the isolation in force.
Usage: .venv/bin/python bench/batch_speed.py [N] [--workers W]
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import course  # noqa: E402 (the tests' helpers: a copy of this course, hand-ins, grades)
from graders.course import coursedir
from graders.isolation import sandbox


def make_class(root: Path, students: int) -> Path:
    directory = course.copy_course(root)
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    notebooks = {name: course.read_notebook(directory / "source" / course.ASSIGNMENT / f"{name}.ipynb")
                 for name in course.NOTEBOOKS}
    for number in range(students):
        course.submit(directory, f"student{number:02d}", notebooks)
    return directory


def timed(command: list, cwd: Path) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    return time.monotonic() - started


def median(values) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def per_student(directory: Path) -> list:
    state = coursedir.Course(directory).state(course.ASSIGNMENT).load()
    return [entry["result"] for entry in state.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("students", type=int, nargs="?", default=8)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    workers = ["--workers", str(args.workers)] if args.workers else []
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; uid {os.geteuid()}; "
          f"{sandbox.choose().describe(sandbox.Limits())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "stock nbgrader autograde (serial)": ([sys.executable, "-m", "nbgrader", "autograde", course.ASSIGNMENT], None),
            "graders autograde (sandboxed)": ([sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT, *workers], True),
            "graders autograde --no-sandbox": ([sys.executable, "-m", "graders", "autograde", course.ASSIGNMENT,
                                                "--no-sandbox", *workers], False),
        }
        walls, tables, details = {}, {}, {}
        for number, (name, (command, sandboxed)) in enumerate(runs.items()):
            directory = make_class(Path(tmp) / f"class{number}", args.students)
            walls[name] = timed(command, directory)
            tables[name] = course.grades(directory)
            if sandboxed is not None:
                details[name] = per_student(directory)
            print(f"{name:<36} {walls[name]:7.1f} s", flush=True)
    stock, sandboxed, bare = walls.values()
    print(f"\n{args.students} students x {len(course.NOTEBOOKS)} notebooks")
    print(f"speed-up, sandboxed vs stock:     {stock / sandboxed:5.2f}x (target >= 1.8x on 2 cores)")
    print(f"sandbox overhead (sandboxed/bare): {sandboxed / bare:5.3f}")
    for name, students in details.items():
        print(f"{name}:")
        for notebook in course.NOTEBOOKS:
            cpu = sorted(r["notebooks"][notebook]["cpu_seconds"] for r in students)
            print(f"  kernel CPU s of {notebook}, min/median/max: {cpu[0]:.1f}/{cpu[len(cpu) // 2]:.1f}/{cpu[-1]:.1f}")
            checks = [r["notebooks"][notebook] for r in students]
            print(f"  hidden checks of {notebook}, median: checker CPU {median(c['check_cpu_seconds'] for c in checks):.2f} s, "
                  f"checker wall {median(c['check_wall_seconds'] for c in checks):.2f} s, "
                  f"kernel's exports wall {median(c['export_seconds'] for c in checks):.2f} s")
        cpu = sorted(r["cpu_seconds"] for r in students)
        memory = max(r["peak_memory_bytes"] for r in students)
        print(f"  sandbox CPU s per student (runner, zygote, kernels) median {cpu[len(cpu) // 2]:.1f}; "
              f"peak memory per student max {memory / 2**30:.2f} GiB")
        print(f"  cores kept busy with students' work (sandbox CPU s / cores / wall): "
              f"{sum(cpu) / (os.cpu_count() or 1) / walls[name]:.2f} (target >= 0.95)")
    identical = all(table == list(tables.values())[0] for table in tables.values())
    print(f"identical scores in all three runs: {identical}")
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
