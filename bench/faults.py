"""Crash safety, the long loop of tests/test_faults.py: a tiny class (tests/faults.py: no
TensorFlow, every 3rd answer wrong, a few students sleeping 6 s to keep work in flight) graded
by `python -m graders autograde`, SIGKILLed with everything it started at random instants
(SIGSTOP all, then SIGKILL all: as the OOM killer or a power cut leaves them), resumed with
the same command each time, until done; then compared with an uninterrupted run: gradebook
(every grade, score, comment, checksum), journal (exactly one line per student), autograded/,
feedback, and nothing left behind (stage, killed processes, their cgroups).
Usage: .venv/bin/python bench/faults.py [--students N] [--kills K] [--seed S]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.modules.setdefault("rfc3987_syntax", None)  # as python -m graders does (graders/__main__.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import faults  # noqa: E402 (the tests' fault-injection helpers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--sleepers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it (to look at a failure)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        names = faults.make_class(root / "pristine", args.students, args.sleepers)
        clean = faults.copy(root / "pristine", root / "clean")
        started = time.monotonic()
        assert faults.start(clean, root / "clean.log").wait() == 0, (root / "clean.log").read_text()[-2000:]
        seconds = time.monotonic() - started
        faults.feedback(clean)
        expected = faults.snapshot(clean)
        print(f"{args.students} students, uninterrupted: {seconds:.1f} s", flush=True)
        killed_dir = faults.copy(root / "pristine", root / "killed")
        total, runs, status, pids = 0, 0, None, set()
        started = time.monotonic()
        while total < args.kills:  # a resumed run may finish before its instant: start the class anew
            kills, status, killed = faults.killed_at_random(killed_dir, root / "killed.log", args.kills - total,
                                                             seconds, args.seed + runs)
            total, runs, pids = total + kills, runs + 1, pids | killed
            if status != 0:
                break
            faults.feedback(killed_dir)
            got = faults.snapshot(killed_dir)
            differ = [part for part in expected if got[part] != expected[part]]
            left = faults.leftovers(killed_dir, pids)
            print(f"round {runs}: {kills} kills, exit {status}, {len(got['journal'])}/{len(names)} students in the "
                  f"journal once each; differs from the uninterrupted run in: {differ or 'nothing'}; left behind: "
                  f"{left or 'nothing'}", flush=True)
            if differ or left:
                return 1
            if total < args.kills:  # again, from an ungraded class
                killed_dir = faults.copy(root / "pristine", root / f"killed{runs}")
        print(f"{total} kills at random instants survived in {time.monotonic() - started:.0f} s "
              f"({len(pids)} processes killed), nothing lost or graded twice" if status == 0 else
              f"the final run exited {status}: see the log")
        return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
