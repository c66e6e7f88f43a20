"""Seconds from `nbgrader submit` to feedback fetchable, with `python -m graders watch` running (issue 33).

One account plays instructor and student on a temporary exchange: the course is released, the
student fetches it and hands in twice, each time through `nbgrader submit`, while the watcher
(interval 1 s, the sandbox as this account gets it) runs beside the course: first
check_your_learning answered and mnist_exercise untouched (nothing trains), then the reference
solution of both (its CNN trains in the sandbox). After each submit the student runs `nbgrader
fetch_feedback` every second until this hand-in's pages are there. Printed: the seconds of each,
and the watcher's own line for each hand-in (its grading seconds).

Measured: docs/measurements.md, "Feedback on submit".
Usage: .venv/bin/python bench/on_submit.py [--directory DIR] [--no-sandbox]
"""
import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.modules.setdefault("rfc3987_syntax", None)  # as python -m graders does (graders/__main__.py)
from graders import demo  # noqa: E402

ASSIGNMENT, CYL, MNIST = demo.ASSIGNMENT, "check_your_learning", "mnist_exercise"


def nbgrader(cwd: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode and check:
        sys.exit(f"nbgrader {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def hand_ins(course: Path) -> dict:
    """{what: {notebook: the notebook as handed in}}: the two hand-ins, from the release and the source."""
    def load(folder, name):
        return nbformat.read(str(course / folder / ASSIGNMENT / f"{name}.ipynb"), as_version=4)

    blank = {name: load("release", name) for name in (CYL, MNIST)}
    right = {name: demo.solutions(load("source", name)) for name in (CYL, MNIST)}
    reference = {name: demo.hand_in(blank[name], right[name]) for name in (CYL, MNIST)}
    return {"check_your_learning answered, nothing trained": {CYL: reference[CYL], MNIST: blank[MNIST]},
            "the reference solution, its CNN trained": reference}


def fetched(student: Path) -> set:
    folder = student / ASSIGNMENT / "feedback"
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, help="work here (default: a new temporary folder)")
    parser.add_argument("--no-sandbox", action="store_true")
    args = parser.parse_args()
    work = args.directory or Path(tempfile.mkdtemp(prefix="onions-on-submit-"))
    course, exchange, student = work / "course", work / "exchange", work / "student"
    exchange.mkdir(parents=True)
    student.mkdir()
    demo.copy_course(course)
    settings = f"\nc.Exchange.root = {str(exchange)!r}\n"
    with open(course / "nbgrader_config.py", "a") as config:
        config.write(settings + "c.GradersWatch.per_period = 10\nc.GradersWatch.interval = 1\n")
    (student / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.course_id = 'onions'{settings}")
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    nbgrader(course, "release_assignment", ASSIGNMENT)
    due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    nbgrader(course, "db", "assignment", "add", ASSIGNMENT, f"--duedate={due.isoformat()}")
    nbgrader(student, "fetch_assignment", ASSIGNMENT)
    log = open(work / "watch.log", "w")
    watcher = subprocess.Popen([sys.executable, "-m", "graders", "watch", ASSIGNMENT,
                                *(["--no-sandbox"] if args.no_sandbox else [])],
                               cwd=course, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores; "
          f"in {work}", flush=True)
    try:
        time.sleep(3)  # its first look
        for what, notebooks in hand_ins(course).items():
            for name, notebook in notebooks.items():
                nbformat.write(notebook, str(student / ASSIGNMENT / f"{name}.ipynb"))
            before = fetched(student)
            nbgrader(student, "submit", ASSIGNMENT)
            submitted = time.monotonic()
            while fetched(student) == before:
                if watcher.poll() is not None or time.monotonic() - submitted > 1200:
                    sys.exit(f"no feedback for {what}:\n{(work / 'watch.log').read_text()[-3000:]}")
                time.sleep(1)
                nbgrader(student, "fetch_feedback", ASSIGNMENT, check=False)  # fails until some feedback is out
            print(f"{what}: submit to feedback fetched {time.monotonic() - submitted:.1f} s", flush=True)
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)
        log.close()
    print("the watcher's lines:")
    for line in (work / "watch.log").read_text().splitlines():
        if "feedback released" in line:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
