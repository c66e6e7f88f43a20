"""Bad submissions: broken, careless or hostile, each with the status the batch grader must give.

Each student hands in both notebooks; what is wrong goes into check_your_learning (fast: no
training), and mnist_exercise is the untouched release unless said otherwise. Hostile code
prints what it saw, so the tests can prove that every attempt failed inside the sandbox.
"""
import copy
import json
import re
from pathlib import Path

import nbformat
import numpy as np

import submissions
import course

CYL, MNIST = course.NOTEBOOKS


def hostile(code: str) -> str:
    """A cell body that runs `code` and reports, never raising, what it did."""
    return ("try:\n" + "".join(f"    {line}\n" for line in code.strip().splitlines())
            + "except BaseException as error:\n    print('BLOCKED', type(error).__name__, error)\n")


def probes(course_dir, secret=None) -> dict:
    """What a hostile student tries, by name: each prints SAW/WROTE/CONNECTED on success.

    `secret` is a file in the grader's home directory, made by the tests for the attempt.
    """
    secret = secret or Path.home() / ".onions-secret"
    source = course_dir / "source" / course.ASSIGNMENT / f"{CYL}.ipynb"
    db = course_dir / "gradebook.db"
    other = course_dir / "submitted" / "reference" / course.ASSIGNMENT / f"{CYL}.ipynb"
    return {
        "read source, relative": f"print('SAW', open('../../source/{course.ASSIGNMENT}/{CYL}.ipynb').read()[:80])",
        "read source, absolute": f"print('SAW', open({str(source)!r}).read()[:80])",
        "read gradebook, relative": "print('SAW', open('../../gradebook.db', 'rb').read(16))",
        "read gradebook, absolute": f"print('SAW', open({str(db)!r}, 'rb').read(16))",
        "read another student": f"print('SAW', open({str(other)!r}).read()[:80])",
        "list the course": f"print('SAW', __import__('os').listdir({str(course_dir)!r}))",
        "read the grader's home": f"print('SAW', open({str(secret)!r}).read())",
        "write gradebook, absolute": f"open({str(db)!r}, 'ab').write(b'x'); print('WROTE')",
        "write gradebook, relative": "open('../../gradebook.db', 'ab').write(b'x'); print('WROTE')",
        "write beside the course": f"open({str(course_dir / 'pwned.txt')!r}, 'w').write('x'); print('WROTE')",
        # the prepared notebooks (hidden tests written back by nbgrader) beside the running one
        "read its own notebook": f"print('SAW', open('{CYL}.ipynb').read()[:80])",
        "read its other notebook": f"print('SAW', open('{MNIST}.ipynb').read()[:80])",
        "search the disk for hidden tests": SEARCH_DISK,
        "search proc for hidden tests": SEARCH_PROC,
        # the labels of the private grading split: the checker's alone
        "read the grading labels": "from graders.data import grading_labels; print('SAW', grading_labels('mnist')[:10])",
        "read the staged grading labels": "print('SAW', __import__('os').listdir('.grading-labels'))",
        "search the disk for grading labels": search_labels("/"),
        "network, loopback": "import socket; socket.create_connection(('127.0.0.1', 22), timeout=2); print('CONNECTED')",
        "network, outside": "import socket; socket.create_connection(('pypi.org', 443), timeout=2); print('CONNECTED')",
    }


HIDDEN = "n_parameters == 307300"  # a line of the hidden test of Q1
HOSTILE = "hostile-probes"  # the student who tries every probe, one after another in one kernel


def every_probe(found: dict) -> str:
    """One cell body that runs each probe in turn, announced by a `PROBE name` line."""
    return "".join(f"print('PROBE', {name!r})\n" + hostile(code) for name, code in found.items())


def probe_outputs(notebook) -> dict:
    """{probe name: what it printed} from the hostile student's executed notebook."""
    text = "".join(output.get("text", "") for output in submissions.cell(notebook, "q1_answer").outputs)
    parts = re.split(r"^PROBE (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def blocked(seen: dict, course_dir) -> list:
    """The probes of `probes(course_dir)` that did not run, or did not fail, with what they printed."""
    return [(name, seen.get(name)) for name in probes(course_dir) if name not in seen or "BLOCKED" not in seen[name]
            or any(word in seen[name] for word in ("SAW", "WROTE", "CONNECTED"))]

SEARCH_DISK = f"""import os
hits = []
for top, folders, files in os.walk('/'):
    folders[:] = [f for f in folders if os.path.join(top, f) not in ('/proc', '/sys', '/dev', '/usr')]
    for name in files:
        path = os.path.join(top, name)
        try:
            if name.endswith(('.ipynb', '.json')) and os.path.getsize(path) < 2 << 20 \\
                    and {HIDDEN!r} in open(path, errors='replace').read():
                hits.append(path)
        except OSError:
            pass
if not hits:
    raise LookupError('no hidden test on disk')
print('SAW', hits[:3])"""

SEARCH_PROC = f"""import os, re
hits = []
for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:
    for name in ('cmdline', 'environ'):
        try:
            if {HIDDEN!r}.encode() in open(f'/proc/{{pid}}/{{name}}', 'rb').read():
                hits.append((pid, name))
        except OSError:
            pass
    try:
        regions = [line.split()[0] for line in open(f'/proc/{{pid}}/maps') if ' rw' in line]
        with open(f'/proc/{{pid}}/mem', 'rb') as memory:
            for region in regions:
                start, end = (int(x, 16) for x in region.split('-'))
                if end - start > 256 << 20:
                    continue
                try:
                    memory.seek(start)
                    if {HIDDEN!r}.encode() in memory.read(end - start):
                        hits.append((pid, 'mem'))
                        break
                except OSError:
                    pass
    except OSError:
        pass
if not hits:
    raise LookupError('no hidden test in /proc')
print('SAW', hits[:3])"""


# Any file, in any dataset format (graders.inside.labelscan), that holds a test set's labels, or
# the 5,000 grading labels of a dataset in any order (a run with their class counts: EXTRA)
SEARCH_LABELS = """from graders.inside.labelscan import scan, targets
hits = scan(ROOT, targets(EXTRA))
if not hits:
    raise LookupError('no test or grading labels on disk')
print('SAW', hits[:3])"""


def grading_label_counts() -> list:
    """(length, class counts, no digest) of each dataset's grading labels: found in any order."""
    from graders import data

    return [(data.GRADING_SIZE, np.bincount(data.grading_labels(name), minlength=10).tolist(), None)
            for name in data.DATASETS]


def search_labels(root: str) -> str:
    return SEARCH_LABELS.replace("ROOT", repr(root)).replace("EXTRA", repr(grading_label_counts()))


def _with_code(notebook, code: str):
    """The reference notebook with `code` run at the start of the first answer cell."""
    return submissions.edited(notebook, "q1_answer", "width, height", code + "\nwidth, height")


def build(course_dir, secret=None) -> dict:
    """{student: (files {name: bytes}, expected status)}."""
    def notebook(folder, name):
        return course.read_notebook(course_dir / folder / course.ASSIGNMENT / f"{name}.ipynb")

    def dump(nb) -> bytes:
        return nbformat.writes(nb).encode()

    reference, blank = notebook("source", CYL), dump(notebook("release", MNIST))
    good = dump(reference)

    def cyl(code: str) -> dict:
        return {f"{CYL}.ipynb": dump(_with_code(reference, code)), f"{MNIST}.ipynb": blank}

    without_test = notebook("source", CYL)
    without_test.cells = [c for c in without_test.cells if c.id != "q1_test"]
    edited_locked = submissions.edited(reference, "q1_test", "assert n_parameters == 307300", "pass  # assert n_parameters == 307300")
    edited_locked = submissions.edited(edited_locked, "q1_answer", "+ n_bias", "+ 0")
    edited_locked = submissions.edited(edited_locked, "header", "# Lesson 08", "# My own title")
    renamed = {f"{CYL} (1).ipynb": good, f"{MNIST}.ipynb": blank}
    # the lesson's model without the extra layer, with count_params and evaluate lying for it
    monkeypatched = submissions.edited(
        _with_code(reference, "import keras\nkeras.Model.count_params = lambda self: 36138\n"
                              "keras.Model.evaluate = lambda self, *a, **k: [0.0, 1.0]"),
        "q3_answer", '### BEGIN SOLUTION\nx = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)\n### END SOLUTION\n', "")
    # a cell copied from the other notebook (its nbgrader metadata with it), and a grade cell made by hand
    foreign = notebook("source", CYL)
    copied = next(c for c in notebook("release", MNIST).cells if c.id == "gap_test")
    made = nbformat.v4.new_code_cell("assert True  # my bonus", id="my_bonus_cell")
    made.metadata["nbgrader"] = {"grade": True, "grade_id": "my_bonus", "locked": False, "points": 100,
                                 "schema_version": 3, "solution": False, "task": False}
    foreign.cells += [copied, made]
    non_utf8 = good.replace(b'"n_bias = 100', b'"n_bias = 100 # \xff\xfe', 1)
    assert non_utf8 != good

    students = {
        "invalid-json": ({f"{CYL}.ipynb": good[: len(good) // 2], f"{MNIST}.ipynb": blank}, "invalid notebook"),
        "empty-file": ({f"{CYL}.ipynb": b"", f"{MNIST}.ipynb": blank}, "invalid notebook"),
        "non-utf8-file": ({f"{CYL}.ipynb": non_utf8, f"{MNIST}.ipynb": blank}, "invalid notebook"),
        "missing-notebook": ({f"{CYL}.ipynb": good}, "missing notebook"),
        "renamed-notebook": (renamed, "missing notebook"),
        "extra-files": ({f"{CYL}.ipynb": good, f"{MNIST}.ipynb": blank, "notes.txt": b"my notes\n",
                         "data/big.bin": bytes(1 << 20)}, "graded"),
        "deleted-test-cell": ({f"{CYL}.ipynb": dump(without_test), f"{MNIST}.ipynb": blank}, "test cell deleted"),
        "edited-locked-cells": ({f"{CYL}.ipynb": dump(edited_locked), f"{MNIST}.ipynb": blank}, "graded"),
        "infinite-loop": (cyl("while True:\n    pass"), "timed out"),
        "memory-bomb": (cyl("hoard = [bytearray(256 << 20) for _ in range(64)]"), "killed for memory"),
        # pids.max stops it; what then happens to the kernel varies (it hangs, dies or finishes)
        "fork-bomb": (cyl(hostile("import os\nwhile True:\n    os.fork()")), "too many processes"),
        "os-exit": (cyl("import os\nos._exit(0)"), "kernel crashed"),
        "segfault": (cyl("import ctypes\nctypes.string_at(0)"), "kernel crashed"),
        "huge-output": (cyl("print('x' * (50 << 20))"), "graded"),
        "non-utf8-output": (cyl("import os, sys\nsys.stdout.flush()\nos.write(1, b'bytes \\xff\\xfe\\xfd\\n')"), "graded"),
        "stderr-from-python": (cyl("import sys\nprint('E0000 NodeDef mentions attribute', file=sys.stderr)"), "graded"),
        "monkeypatch": ({f"{CYL}.ipynb": dump(monkeypatched), f"{MNIST}.ipynb": blank}, "graded"),
        "foreign-cells": ({f"{CYL}.ipynb": dump(foreign), f"{MNIST}.ipynb": blank}, "graded"),
    }
    students[HOSTILE] = (cyl(every_probe(probes(course_dir, secret))), "graded")
    students.update(text_and_caps(reference, notebook("release", MNIST), cyl))
    return students


FORGED = "\x1b[2K\x1b[1A\rreference                    19    19  graded\u202e"  # a summary row drawn over the real one

# the kernel writes a forged row and a forged report line everywhere it can, then kills every other process
KILLS_RUNNER = f"""import json, os, signal
os.write(1, {FORGED!r}.encode() + b"\\n")
os.write(2, b"\\x1b]0;pwned\\x07\\n")
for pid in [int(name) for name in os.listdir('/proc') if name.isdigit()]:
    if pid not in (1, os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass"""

# a forged report line written to every pipe the kernel holds (the grader's line is not among them)
FORGES_REPORT = f"""import json, os
line = json.dumps({{"failure": True, "text": {FORGED!r}}}) + "\\n"
pipes = []
for fd in sorted(int(name) for name in os.listdir('/proc/self/fd')):
    try:
        target = os.readlink(f'/proc/self/fd/{{fd}}')
        if fd > 2 and target.startswith('pipe:'):
            os.write(fd, line.encode())
            pipes.append(fd)
    except OSError:
        pass
print('PIPES', pipes)"""

# 1,000 MB into the working copy, 8 MB at a time (the quota, 512 MB by default, stops it)
WRITES_1GB = """written = 0
try:
    for number in range(125):
        with open(f'big{number}.bin', 'wb') as out:
            out.write(bytes(8 << 20))
        written += 8
except OSError as error:
    print('STOPPED', type(error).__name__, error.errno)
print('WROTE', written, 'MB')"""

# the checker (the zygote's other child) stopped, so that the runner would wait for it forever
STOPS_CHECKER = """import os, signal
zygote = os.getppid()
for pid in open(f'/proc/{zygote}/task/{zygote}/children').read().split():
    if int(pid) != os.getpid():
        os.kill(int(pid), signal.SIGSTOP)
        print('STOPPED', pid)"""

STOPS_ZYGOTE = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"


def text_and_caps(reference, blank, cyl) -> dict:
    """Issue 30's students whose text reaches the grader's terminal, who write or stop without end,
    and honest ones whose editor repeated or emptied cell ids: {student: (files, status)}."""
    def raw(notebook) -> dict:
        return json.loads(nbformat.writes(notebook))

    def dumped(*notebooks) -> dict:
        return {f"{name}.ipynb": json.dumps(notebook).encode() for name, notebook in zip((CYL, MNIST), notebooks)}

    escaped = copy.deepcopy(reference)
    foreign = nbformat.v4.new_code_cell("assert True", id="bonus")
    foreign.metadata["nbgrader"] = {"grade": True, "grade_id": "x" + FORGED, "locked": False, "points": 100,
                                    "schema_version": 3, "solution": False, "task": False}
    escaped.cells.append(foreign)
    many = raw(reference)
    many["cells"] += [{"cell_type": "markdown", "id": f"m{number}", "metadata": {}, "source": "x"} for number in range(100_000)]
    repeated, repeated_blank = raw(reference), raw(blank)
    for notebook in (repeated, repeated_blank):  # a cell copied with its id, twice; ids of answer cells among them
        notebook["cells"][3]["id"] = notebook["cells"][5]["id"] = notebook["cells"][1]["id"]
    emptied = raw(reference)
    emptied["cells"][2]["id"] = ""
    del emptied["cells"][4]["id"]
    return {
        "escape-grade-id": ({f"{CYL}.ipynb": nbformat.writes(escaped).encode(), **_blank(blank)}, "graded"),
        "kernel-kills-runner": (cyl(KILLS_RUNNER), "execution failed"),
        "forges-report-line": (cyl(FORGES_REPORT), "graded"),
        "writes-1gb": (cyl(hostile(WRITES_1GB)), "graded"),
        "many-cells": ({**dumped(many), **_blank(blank)}, "invalid notebook"),
        "stops-checker": (cyl(STOPS_CHECKER), "execution failed"),
        "stops-zygote": (cyl(STOPS_ZYGOTE), "kernel crashed"),
        "repeated-cell-ids": (dumped(repeated, repeated_blank), "graded"),
        "empty-cell-id": ({**dumped(emptied), **_blank(blank)}, "graded"),
    }


def _blank(blank) -> dict:
    return {f"{MNIST}.ipynb": nbformat.writes(blank).encode()}


# The cells each graded student must score, where it differs from the reference's full marks.
ZEROED = {
    "edited-locked-cells": {"q1_test"},  # the test is restored from the gradebook: 307200 fails
    "monkeypatch": {"q3_model_test"},  # patched count_params cannot hide the missing layer
}


def write(course_dir, students: dict) -> None:
    for student, (files, _) in students.items():
        for name, content in files.items():
            path = course_dir / "submitted" / student / course.ASSIGNMENT / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
