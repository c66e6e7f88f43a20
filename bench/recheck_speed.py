"""`autograde --recheck` against a full regrade, after the hidden tests change (issue 23).

A small class (the reference solution, trained; the untouched release; and students who hand in
only check_your_learning with one wrong answer, no training) is graded once by the batch grader,
which keeps each student's exports. Then, in two copies of the graded course, the accuracy bar is
raised (mnist 0.97 -> 0.99) and Q1's hidden check widened (307200 accepted), `nbgrader
generate_assignment --force` takes the edit, and the class is regraded: once with --recheck (only
the hidden checks, on the kept exports), once in full (--force; with copies, one of each kind and
two of the trained ones, not the whole class). Printed: wall and CPU of each
(CPU: the grader's own process plus every sandbox's), recheck seconds per student, the disk kept
per student, and whether the two gradebooks agree cell for cell.

Measured: docs/measurements.md, "Recheck against a full regrade". Earlier (before checks that did
not change were kept and students grouped per sandbox; 2 cores shared, load about 10; 6 students: reference, blank,
four questions-only): first grading 180 s wall; recheck 54.4 s wall, 23.6 s CPU; full regrade
193.3 s wall, 59.7 s CPU; all 6 rechecked, gradebooks equal cell for cell (reference 11/19 at
the 0.99 bar, q1-no-bias 5). A recheck's sandbox: 3.2-3.4 CPU-s per questions-only student, of
which the checks 0.13-0.15 (the rest: the zygote importing TensorFlow, the runner), 5.5 for
the reference, of which the checks 1.96. Kept on disk: reference 4.67 MB, blank 66 kB,
questions-only 166 kB.
Usage: .venv/bin/python bench/recheck_speed.py [--copies N] [--trained N] [--workers 2] [--directory DIR]
"""
import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.modules.setdefault("rfc3987_syntax", None)  # as python -m graders does (graders/__main__.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import course  # noqa: E402 (the tests' helpers)
import submissions  # noqa: E402
from graders.course.coursedir import Course  # noqa: E402
from graders.grading import batch, recheck  # noqa: E402
from graders.isolation import sandbox  # noqa: E402

LIMITS = sandbox.Limits(wall_seconds=300, memory_bytes=3 << 30, processes=512)
CHEAP = ["q1-no-bias", "q1-inputs-only", "q2-with-bias", "q3-more"]  # check_your_learning only
EDITS = [("mnist_exercise", "accuracy_test", '{"mnist": 0.97,', '{"mnist": 0.99,'),
         ("check_your_learning", "q1_test", "assert n_parameters == 307300,", "assert n_parameters in (307300, 307200),")]


def edit(root: Path) -> None:
    for name, grade_id, old, new in EDITS:
        path = root / "source" / course.ASSIGNMENT / f"{name}.ipynb"
        notebook = json.loads(path.read_text())
        cells = [c for c in notebook["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
        assert cells and old in "".join(cells[0]["source"]), f"{grade_id} no longer holds {old!r}"
        cells[0]["source"] = "".join(cells[0]["source"]).replace(old, new)
        path.write_text(json.dumps(notebook, indent=1))
    course.nbgrader(root, "generate_assignment", course.ASSIGNMENT, "--force")


def grade(root: Path, workers: int, **options) -> tuple:
    """(results, wall seconds, CPU seconds: the grader's process and the sandboxes')."""
    cpu, wall = time.process_time(), time.monotonic()
    results = batch.Batch(root, course.ASSIGNMENT, LIMITS, workers=workers, **options).run()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return results, wall, cpu + sum(r.cpu_seconds for r in results)


def per_student(run: tuple, students: int, workers: int) -> None:
    """A recheck's cost per student: the class's wall over its students, and each sandbox's CPU
    (the zygote's imports, the checker) beside the checks' own CPU."""
    results, wall = run[0], run[1]
    rechecked = [r for r in results if r.detail.startswith("rechecked")]
    print(f"recheck: {wall / max(students, 1):.3f} s wall per student ({workers} workers); {len(rechecked)}/{students} rechecked")
    kinds = {}
    for r in rechecked:  # a sandbox's CPU is shared alike by the students of its group
        checks = sum(n.get("check_cpu_seconds", 0.0) for n in r.notebooks.values())
        kinds.setdefault(r.student.rpartition("-")[0] if r.student.rpartition("-")[2].isdigit() else r.student, []).append(
            (r.cpu_seconds, checks, r.detail))
    for kind, runs in kinds.items():
        print(f"  {kind:<16} x{len(runs):<4} sandbox CPU {statistics.mean(c for c, _, _ in runs):5.2f} s each, "
              f"the checks {statistics.mean(k for _, k, _ in runs):5.2f} s; {runs[0][2]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=1, help="copies of each cheap student (default 1; 75 makes a class of 300)")
    parser.add_argument("--trained", type=int, default=1, help="copies of the trained reference (default 1; each trains once)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--directory", type=Path, help="work here (default: a temporary directory, removed)")
    args = parser.parse_args()
    work = args.directory or Path(tempfile.mkdtemp(prefix="recheck-bench-"))
    try:
        graded = course.copy_course(work / "graded")
        course.nbgrader(graded, "generate_assignment", course.ASSIGNMENT)
        built = submissions.build(graded)
        class_ = {"blank": built["blank"]}
        class_.update({f"reference-{n}" if args.trained > 1 else "reference": built["reference"] for n in range(args.trained)})
        class_.update({f"{s}-{n}" if args.copies > 1 else s: built[s] for s in CHEAP for n in range(args.copies)})
        for student, notebooks in class_.items():
            course.submit(graded, student, notebooks)
        first, wall, cpu = grade(graded, args.workers)
        print(f"{platform.node()} ({cpu_name()}): {len(class_)} students, {args.workers} workers; "
              f"first grading {wall:.1f} s wall, {cpu:.1f} s CPU")
        disk = {s: recheck.disk_bytes(recheck.folder(Course(graded), course.ASSIGNMENT, s)) for s in class_}
        # the full regrade: one of each kind and at most two trained ones (all six of the default class)
        sample = [s for s in class_ if not s.rpartition("-")[2].isdigit() or s.endswith("-0") or s == "reference-1"]

        runs = {}
        for mode, options in [("recheck", {"recheck": True}), ("full regrade", {"force": True})]:
            root = work / mode.replace(" ", "-")
            shutil.copytree(graded, root, symlinks=True)
            edit(root)
            wanted = sample if mode == "full regrade" else None
            cpu, wall = time.process_time(), time.monotonic()
            results = batch.Batch(root, course.ASSIGNMENT, LIMITS, workers=args.workers,
                                  **options).run(wanted)
            wall, cpu = time.monotonic() - wall, time.process_time() - cpu + sum(r.cpu_seconds for r in results)
            runs[mode] = (results, wall, cpu, course.grades(root))

        print(f"{'':<14} {'students':>8} {'wall s':>8} {'CPU s':>8} {'wall s/student':>15}")
        for mode, (results, wall, cpu, _) in runs.items():
            print(f"{mode:<14} {len(results):>8} {wall:>8.1f} {cpu:>8.1f} {wall / len(results):>15.3f}")
        full_per_student = runs["full regrade"][1] / len(runs["full regrade"][0])
        recheck_per_student = runs["recheck"][1] / len(runs["recheck"][0])
        print(f"recheck vs full regrade, wall per student: {full_per_student / recheck_per_student:.1f}x faster")
        per_student(runs["recheck"], len(class_), args.workers)
        for r in runs["recheck"][0]:
            if not r.detail.startswith("rechecked"):
                print(f"  not rechecked: {r.student}: {r.detail}")
        print(f"disk kept: reference {max(v for s, v in disk.items() if s.startswith('reference')) / 1e6:.2f} MB, "
              f"blank {disk['blank'] / 1e3:.0f} kB, a questions-only student "
              f"{statistics.median(v for s, v in disk.items() if s in sample and not s.startswith(('reference', 'blank'))) / 1e3:.0f} kB")
        rechecked, full = runs["recheck"][3], runs["full regrade"][3]
        same = all(rechecked[s] == full[s] for s in sample)
        copies_agree = all(rechecked[s] == rechecked[f"{s.rpartition('-')[0]}-0"] for s in class_ if s.rpartition("-")[2].isdigit()
                           and not s.startswith("reference")) if args.copies > 1 else True
        scores = {r.student: r.score for r in runs["recheck"][0] if r.student in sample}
        print(f"scores after the edit: {json.dumps(scores)}")
        print(f"recheck == full regrade, cell for cell, on the {len(sample)} regraded in full: {same}; "
              f"every copy rechecked as its original: {copies_agree}")
        return 0 if same and copies_agree and all(r.detail.startswith("rechecked") for r in runs["recheck"][0]) else 1
    finally:
        if not args.directory:
            shutil.rmtree(work, ignore_errors=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
