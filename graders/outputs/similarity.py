"""Who shared code: ``python -m graders similarity ASSIGNMENT``.

For every pair of students, how much of the code they wrote themselves they share: answer cells
only (nbgrader ``solution: true`` code cells), the release's starter lines removed, compared by
copydetect (winnowing over pygments tokens: names, comments and blank lines do not count, and
cell order does not matter). Reads notebooks only: no kernel. A similarity is not a verdict.
"""
import base64
import csv
import html
import io
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import nbformat

from graders.course.plain import plain
from graders.errors import GradersError
from graders.outputs import report_plots

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # share of a student's own tokens found in the other's: above it, worth a look
NOISE_TOKENS = 25  # copydetect's defaults: matches shorter than this are ignored ...
GUARANTEE_TOKENS = 30  # ... and one at least this long is always found
COLUMNS = ("student_a", "student_b", "similarity", "shared_tokens", "longest_fragment")


@dataclass
class Pair:
    student_a: str
    student_b: str
    similarity: float  # the larger of the two shares of own code found in the other's
    shared_tokens: int
    longest_fragment: int  # in normalised tokens (one character of copydetect's filtered code each)
    fragments: list  # [(code of a, code of b)] of the shared parts


def answer_sources(notebook: Path) -> list:
    """The sources of a notebook's answer cells (code cells nbgrader marks as solutions)."""
    try:
        cells = nbformat.read(str(notebook), as_version=4).cells
    except (OSError, ValueError) as error:
        logger.warning("%s: not read (%s)", notebook, error)
        return []
    return [cell.source for cell in cells if cell.cell_type == "code"
            and cell.get("metadata", {}).get("nbgrader", {}).get("solution")]


def release_lines(course: Path, assignment: str) -> set:
    """The stripped lines of the release's answer cells: the starter code nobody wrote."""
    lines = set()
    for notebook in sorted((course / "release" / assignment).glob("*.ipynb")):
        for source in answer_sources(notebook):
            lines.update(line.strip() for line in source.splitlines() if line.strip())
    return lines


def own_code(folder: Path, given: set) -> str:
    """A student's answer cells, less the given lines, as one Python text."""
    kept = []
    for notebook in sorted(folder.glob("*.ipynb")):
        for source in answer_sources(notebook):
            kept.extend(line for line in source.splitlines() if line.strip() and line.strip() not in given)
    return "\n".join(kept) + "\n"


def fingerprint(code: str):
    """copydetect's fingerprint of the code, plus the set of its hashes for a quick no-overlap check."""
    from copydetect.detector import CodeFingerprint  # imported here: it loads matplotlib.pyplot, 1 s
    printed = CodeFingerprint("answers.py", NOISE_TOKENS, GUARANTEE_TOKENS - NOISE_TOKENS + 1,
                              language="python", fp=io.StringIO(code))
    printed.hash_set = set(printed.hashes)
    return printed


def compare(name_a, print_a, name_b, print_b, threshold: float = DEFAULT_THRESHOLD) -> Pair:
    """Shares and longest run in token space (cheap); the raw fragments only for pairs worth a look."""
    import numpy as np
    from copydetect.detector import compare_files
    from copydetect.utils import find_fingerprint_overlap, get_copied_slices
    if not print_a.hash_set & print_b.hash_set:
        return Pair(name_a, name_b, 0.0, 0, 0, [])
    idx_a, idx_b = find_fingerprint_overlap(print_a.hashes, print_b.hashes, print_a.hash_idx, print_b.hash_idx)
    slices_a, slices_b = get_copied_slices(idx_a, print_a.k), get_copied_slices(idx_b, print_b.k)
    if not len(slices_a[0]):
        return Pair(name_a, name_b, 0.0, 0, 0, [])
    shares = [int(np.sum(found[1] - found[0])) / (fingerprinted.token_coverage or 1)
              for found, fingerprinted in ((slices_a, print_a), (slices_b, print_b))]
    pair = Pair(name_a, name_b, round(min(1.0, max(shares)), 4), int(np.sum(slices_a[1] - slices_a[0])),
                int(np.max(slices_a[1] - slices_a[0])), [])
    if pair.similarity >= threshold:
        _, _, (raw_a, raw_b) = compare_files(print_a, print_b)
        pair.fragments = [(print_a.raw_code[start:end], print_b.raw_code[start_b:end_b])
                          for start, end, start_b, end_b in zip(raw_a[0], raw_a[1], raw_b[0], raw_b[1])]
    return pair


def class_pairs(course: Path, assignment: str, threshold: float = DEFAULT_THRESHOLD) -> list:
    """All pairs of students who handed ASSIGNMENT in, most similar first."""
    if not (course / "release" / assignment).is_dir() and not (course / "submitted").is_dir():
        raise GradersError(f"no assignment {assignment!r} in {course} (no release/{assignment}, no submitted/)")
    folders = sorted(path for path in (course / "submitted").glob(f"*/{assignment}") if path.is_dir())
    if not folders:
        raise GradersError(f"no submissions of {assignment!r} in {course / 'submitted'}")
    given = release_lines(course, assignment)
    prints = {folder.parent.name: fingerprint(own_code(folder, given)) for folder in folders}
    pairs = [compare(a, prints[a], b, prints[b], threshold) for a, b in itertools.combinations(sorted(prints), 2)]
    return sorted(pairs, key=lambda pair: (-pair.similarity, pair.student_a, pair.student_b))


def write_csv(pairs: list, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for pair in pairs:
            writer.writerow([pair.student_a, pair.student_b, f"{pair.similarity:.4f}", pair.shared_tokens,
                             pair.longest_fragment])
    return path


def escaped(code: str) -> str:
    """Student code is hostile: HTML-escaped, and terminal escapes made visible."""
    visible = "".join(char if char in "\n\t" or char.isprintable() else f"\\x{ord(char):02x}" for char in code)
    return html.escape(visible, quote=True)


def html_section(pairs: list, threshold: float, histogram_uri: str = "") -> str:
    """The report's section: the pairs over the threshold, their shared fragments side by side."""
    over = [pair for pair in pairs if pair.similarity >= threshold]
    parts = ['<section id="similarity"><h2>Code similarity</h2>',
             f"<p>A similarity is not a verdict: it says where to look, not who copied. Pairs at or above "
             f"{threshold:.2f} (share of one student's own answer code found in the other's; starter code "
             f"removed): {len(over)} of {len(pairs)}.</p>"]
    if histogram_uri:
        parts.append(f'<img alt="similarity of all pairs" src="{html.escape(histogram_uri)}">')
    for index, pair in enumerate(over):
        parts.append(f"<h3>{escaped(pair.student_a)} &amp; {escaped(pair.student_b)}: {pair.similarity:.2f} "
                     f'({pair.shared_tokens} shared tokens, longest {pair.longest_fragment})</h3><table id="similarity-{index}">')
        for code_a, code_b in pair.fragments:
            parts.append(f"<tr><td><pre>{escaped(code_a)}</pre></td><td><pre>{escaped(code_b)}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)


def histogram_uri(pairs: list) -> str:
    """The histogram of all pairs' similarity, as a data: URI for a self-contained page."""
    if not pairs:
        return ""
    png = report_plots.similarity_histogram([pair.similarity for pair in pairs])
    return "data:image/png;base64," + base64.b64encode(png).decode()


def report_pairs(course: Path, assignment: str) -> list:
    """The pairs for the class report; none when nobody handed in."""
    try:
        return class_pairs(Path(course), assignment)
    except GradersError:
        return []


def add_command(commands) -> None:
    parser = commands.add_parser(
        "similarity", help="which pairs of students share code in their answers (not a verdict)",
        description="For every pair of students who handed ASSIGNMENT in, the share of their own answer code "
                    "(release starter code removed) they have in common, by copydetect. Writes "
                    "reports/ASSIGNMENT/similarity.csv, most similar first, and prints its path last.")
    parser.add_argument("assignment")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help=f"pairs at or above it are shown (default: {DEFAULT_THRESHOLD})")
    parser.set_defaults(run=run)


def run(args) -> int:
    pairs = class_pairs(args.course, args.assignment, args.threshold)
    out = args.course / "reports" / args.assignment
    write_csv(pairs, out / "similarity.csv")
    (out / "similarity.html").write_text(html_section(pairs, args.threshold, histogram_uri(pairs)))
    for pair in pairs:
        if pair.similarity >= args.threshold:
            print(f"{pair.similarity:.2f} {plain(pair.student_a)} {plain(pair.student_b)}")  # ids are folder names
    print(out / "similarity.csv")
    return 0
