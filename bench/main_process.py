"""The batch grader's main process alone: what it spends per student, whatever executes the notebooks.

The main process prepares each student with nbgrader (Batch.prepare), grades what came back
(Batch.grade: nbgrader's Autograde with StagedExecute) and records the verdict (Batch.finish:
the gradebook's verdict, the batch state, the fingerprint). Its time per student caps a batch
at 3600 / that students per hour, however many machines execute. The goal: 10,000 students per
hour, under 0.36 s per student.

A bench of the main process only: nothing is executed. A synthetic course (the tests' tiny
lesson09, one notebook, no TensorFlow; or with --lesson08 this course's lesson08, two notebooks
and 24 graded cells, every hand-in its reference solution) with N students, every 5th wrong,
and each prepared notebook copied to <name>.executed.ipynb in place of the sandbox's run (a
wrong student's first test cell given an AssertionError). The real Batch, nbgrader and
gradebook (SQLite) do the rest: everyone prepared, then everyone graded (a real batch grades
between preparations as executions come back; the cost per student is the same).
With --flat, the whole batch instead (Batch.run: journal, fingerprints, prepare, grade,
record, in the order a real batch keeps), a stand-in pool copying each prepared notebook at
once: seconds and resident memory per student at the first and the last tenth (a long run must
stay flat: issue 25).
Usage: .venv/bin/python bench/main_process.py [--students N] [--lesson08] [--profile] [--flat]
"""
import argparse
import cProfile
import logging
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.modules.setdefault("rfc3987_syntax", None)  # as python -m graders does (graders/__main__.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import course  # noqa: E402 (the tests' helpers)
import nbformat  # noqa: E402
import test_second_assignment as tiny  # noqa: E402 (its tiny lesson09: notebook and configuration)
from graders.course.status import Status  # noqa: E402
from graders.grading import batch  # noqa: E402
from graders.grading.executor import Execution, Job  # noqa: E402
from graders.isolation import sandbox  # noqa: E402

GOAL = 3600 / 10_000  # seconds per student
WRONG = "squares = [n * 2 for n in range(5)]\n"


def make_class(directory: Path, students: int, lesson08: bool) -> tuple:
    """The course and its hand-ins; (assignment, students, those whose answer is wrong)."""
    names = [f"student{number:05d}" for number in range(students)]
    wrong = {name for number, name in enumerate(names) if number % 5 == 4}
    if lesson08:
        course.copy_course(directory)
        course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
        reference = {name: course.read_notebook(directory / "source" / course.ASSIGNMENT / f"{name}.ipynb")
                     for name in course.NOTEBOOKS}
        for name in names:
            course.submit(directory, name, reference)
        return course.ASSIGNMENT, names, wrong
    (directory / "source" / tiny.ASSIGNMENT).mkdir(parents=True)
    (directory / "nbgrader_config.py").write_text(tiny.CONFIG)
    nbformat.write(tiny.squares_notebook(), str(directory / "source" / tiny.ASSIGNMENT / "squares.ipynb"))
    course.nbgrader(directory, "generate_assignment", tiny.ASSIGNMENT)
    for name in names:
        answer = tiny.squares_notebook(WRONG if name in wrong else tiny.ANSWER)
        course.submit(directory, name, {"squares": answer}, assignment=tiny.ASSIGNMENT)
    return tiny.ASSIGNMENT, names, wrong


def stand_in(folder: Path, notebooks: list, wrong: bool) -> None:
    """The sandbox's part: each prepared notebook copied as executed; a wrong answer's test fails."""
    for notebook in notebooks:
        executed = folder / f"{notebook}.executed.ipynb"
        shutil.copyfile(folder / f"{notebook}.ipynb", executed)
        if wrong:
            nb = nbformat.read(str(executed), as_version=4)
            test = next(cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade"))
            test.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="wrong",
                                                   traceback=["AssertionError: wrong"])]
            nbformat.write(nb, str(executed))


def run(directory: Path, assignment: str, names: list, wrong: set) -> tuple:
    """Prepare everyone, stand in for execution, grade everyone; seconds per phase per student."""
    grader = batch.Batch(directory, assignment, sandbox.Limits(), workers=1, use_sandbox=False)
    seconds = {"prepare": [], "grade": [], "finish": []}
    finish = grader.finish

    def timed_finish(*args, **kwargs):
        started = time.perf_counter()
        result = finish(*args, **kwargs)
        seconds["finish"].append(time.perf_counter() - started)
        return result

    grader.finish = timed_finish  # to tell finish apart from the Autograde run in grade
    for name in names:
        started = time.perf_counter()
        student = grader.students[name] = batch.Student(name)
        notebooks, problem, student.foreign = grader.nbgrader.prepare(name)
        seconds["prepare"].append(time.perf_counter() - started)
        assert not problem, problem
        student.job = Job(name, grader.nbgrader.stage / name / assignment, notebooks)
        stand_in(student.job.folder, notebooks, wrong=name in wrong)
    results = []
    for name in names:
        started = time.perf_counter()
        results.append(grader.grade(grader.students[name], Execution(Status.GRADED)))
        seconds["grade"].append(time.perf_counter() - started - seconds["finish"][-1])
    return seconds, results


class StandInPool:
    """LocalPool's interface; each job "executed" by `stand_in` as it is added."""

    def __init__(self, assignment: str, wrong: set):
        self.assignment, self.wrong, self.done = assignment, wrong, []

    def add(self, job) -> None:
        stand_in(job.folder, job.notebooks, wrong=job.student in self.wrong)
        self.done.append((job, Execution(Status.GRADED)))

    def finished(self, wait: bool = True):
        while self.done:
            yield self.done.pop(0)

    def close(self) -> None:
        pass

    stop = shutdown = close


def resident_mb() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def flat(directory: Path, assignment: str, names: list, wrong: set) -> None:
    """The whole batch through the main process: seconds and MB per student, first tenth to last."""
    marks = []  # (perf_counter, resident MB, process_time) as each student is recorded
    grader = batch.Batch(directory, assignment, sandbox.Limits(), workers=1, use_sandbox=False)
    marker = logging.Handler()  # each line the batch logs (its header, then one per student) is a mark
    marker.emit = lambda record: marks.append((time.perf_counter(), resident_mb(), time.process_time()))
    logging.getLogger(batch.__name__).addHandler(marker)
    logging.getLogger(batch.__name__).setLevel(logging.INFO)
    batch.LocalPool = lambda *args: StandInPool(assignment, wrong)
    started = time.perf_counter()
    results = grader.run()
    wall = time.perf_counter() - started
    assert all(r.status == Status.GRADED for r in results)
    marks = marks[1:]  # the first line is the batch's header
    seconds = [later[0] - earlier[0] for earlier, later in zip(marks, marks[1:])]
    cpu = [later[2] - earlier[2] for earlier, later in zip(marks, marks[1:])]  # less moved by a busy machine
    tenth = len(seconds) // 10
    first, last = statistics.mean(seconds[:tenth]), statistics.mean(seconds[-tenth:])
    cpu_first, cpu_last = statistics.mean(cpu[:tenth]), statistics.mean(cpu[-tenth:])
    rss_first, rss_last = statistics.mean(m[1] for m in marks[:tenth]), statistics.mean(m[1] for m in marks[-tenth:])
    print(f"{len(names)} students through Batch.run in {wall:.0f} s")
    print(f"seconds per student, first tenth {first:.4f}, last tenth {last:.4f} (ratio {last / first:.2f})")
    print(f"CPU seconds per student, first tenth {cpu_first:.4f}, last tenth {cpu_last:.4f} (ratio {cpu_last / cpu_first:.2f})")
    print(f"resident MB, first tenth {rss_first:.1f}, last tenth {rss_last:.1f}: "
          f"{(rss_last - rss_first) * 1024 / max(1, len(marks) - tenth):.2f} KB per student in between")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--lesson08", action="store_true", help="this course's lesson08 instead of the tiny lesson09")
    parser.add_argument("--profile", action="store_true", help="also print the top of a cProfile by cumulative time")
    parser.add_argument("--flat", action="store_true", help="the whole batch: first tenth against last tenth")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; the main process only, "
          f"execution replaced by a copy", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "course"
        assignment, names, wrong = make_class(directory, args.students, args.lesson08)
        if args.flat:
            return flat(directory, assignment, names, wrong)
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        wall = time.perf_counter()
        seconds, results = run(directory, assignment, names, wrong)
        wall = time.perf_counter() - wall
        if profile:
            profile.disable()
    outcomes = {}
    for r in results:
        key = f"{r.status} {r.score:g}/{r.max_score:g}"
        outcomes[key] = outcomes.get(key, 0) + 1
    print(f"{len(names)} students of {assignment}: " + ", ".join(f"{n} {key}" for key, n in sorted(outcomes.items())))
    print(f"{'per student, s':<16} {'median':>8} {'mean':>8}")
    for phase, values in seconds.items():
        print(f"{phase:<16} {statistics.median(values):8.4f} {statistics.mean(values):8.4f}")
    total = [sum(phase) for phase in zip(*seconds.values())]
    mean = statistics.mean(total)
    print(f"{'total':<16} {statistics.median(total):8.4f} {mean:8.4f}")
    tenth = max(1, len(total) // 10)
    print(f"total, mean of the first and of the last tenth graded (a growing gradebook): "
          f"{statistics.mean(total[:tenth]):.4f} and {statistics.mean(total[-tenth:]):.4f}")
    print(f"wall {wall:.1f} s for {len(names)} students: {wall / len(names):.4f} s each")
    print(f"implied ceiling: {3600 / mean:,.0f} students per hour (mean); "
          f"{mean / GOAL:.2f}x the goal's {GOAL:.2f} s per student (under 1: goal met)")
    if profile:
        print()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
