"""All pairs of a class compared for shared code: seconds for N students (default 300), pairs/s.

The class is synthesized from the tests' corpus (reference answers, renamed and reordered copies,
an honest second style), each student's names varied so no two are byte-identical. Reads
notebooks only: no kernel, no sandbox.
Usage: .venv/bin/python bench/similarity.py [N]
"""
import argparse
import copy
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import course  # noqa: E402 (the tests' helpers)
import test_similarity as corpus  # noqa: E402 (the similarity corpus)
from graders.outputs import similarity  # noqa: E402


def varied(notebooks, index: int) -> dict:
    notebooks = copy.deepcopy(notebooks)
    for cell in corpus.answers(notebooks):
        cell.source = re.sub(r"\bx\b", f"x{index}", cell.source) + f"\nextra_{index} = {index} * 2\n"
    return notebooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("students", type=int, nargs="?", default=300)
    args = parser.parse_args()
    reference, release = corpus.source_notebooks(), corpus.release_notebooks()
    styles = [reference, corpus.renamed(reference), corpus.reordered(reference), corpus.honest(release), release]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        corpus.build(directory)
        for index in range(args.students - 7):
            course.submit(directory, f"s{index:03d}", varied(styles[index % len(styles)], index))
        started = time.perf_counter()
        pairs = similarity.class_pairs(directory, course.ASSIGNMENT)
        seconds = time.perf_counter() - started
    print(f"{len(os.sched_getaffinity(0))} cores, copydetect; {args.students} students, {len(pairs)} pairs: "
          f"{seconds:.1f} s, {len(pairs) / seconds:.0f} pairs/s")


if __name__ == "__main__":
    main()
