"""Large literal data in a submission: the one way left to carry answers into the sandbox.

With the grading images in each course's secret order (graders.course.gradingsplit), a table of
labels by position is worth nothing; a table keyed by the images' content (the public test
images and their labels) still finds theirs, and it must be written into the notebook or handed
in beside it. No honest answer needs much literal data, so the class report names the students
whose submission holds more than `LARGE_LITERAL_CHARS` characters of it in one code cell
(string, bytes and number literals, and comments, which a kernel reads back from its input
history), or an extra file of more than `LARGE_FILE_BYTES`: a notice for a TA to read the
notebook, never a change of score.
"""
import io
import json
import tokenize
from pathlib import Path

# The lesson's largest code cell holds 1,530 characters of literals (a test cell of the source,
# its messages; 417 in the release); 5,000 grading labels take at least 5,000, a content table more.
LARGE_LITERAL_CHARS = 2500
LARGE_FILE_BYTES = 64 << 10  # an extra file handed in beside the notebooks: a dataset's worth of answers is larger
DATA_TOKENS = (tokenize.STRING, tokenize.NUMBER, tokenize.COMMENT)


def literal_chars(source: str) -> int:
    """Characters of literal data (strings, numbers, comments) in a cell's code; all of it if the
    code does not tokenize (a cell IPython would read otherwise)."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return sum(len(token.string) for token in tokenize.generate_tokens(io.StringIO(code).readline)
                   if token.type in DATA_TOKENS or getattr(tokenize, "FSTRING_MIDDLE", None) == token.type)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return len(source)


def notices(folder: Path) -> list:
    """One line per code cell or extra file of the submission in `folder` that carries large literal data."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        name = path.relative_to(folder)
        if path.suffix != ".ipynb":
            if path.stat().st_size > LARGE_FILE_BYTES:
                found.append(f"{name}: an extra file of {path.stat().st_size >> 10} KB")
            continue
        try:
            cells = json.loads(path.read_text(encoding="utf-8", errors="replace")).get("cells", [])
        except (OSError, ValueError, AttributeError):
            continue
        for number, cell in enumerate(cells if isinstance(cells, list) else [], 1):
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            chars = literal_chars("".join(source) if isinstance(source, list) else str(source))
            if chars > LARGE_LITERAL_CHARS:
                found.append(f"{path.stem} cell {number}: {chars:,} characters of literal data")
    return found
