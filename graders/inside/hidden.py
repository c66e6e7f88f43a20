"""Hidden tests run outside the student's kernel, on what the student's code left behind.

nbgrader writes the hidden tests back into the test cells before execution, so in stock
nbgrader they run in the student's kernel, where student code can read them (from the prepared
notebook, or from the kernel's own input) and talk them round (replace `numpy.mean`, make an
int whose `==` is always True, silence tracebacks). Here a test cell is cut at
`### BEGIN HIDDEN TESTS`: the kernel runs only the public part above it; if that passed, the
kernel exports the names the hidden part reads (`graders.inside.artifacts`); once no student process is
left, a checker that has never run student code runs the hidden part on them with its own
builtins and modules. A failure becomes the cell's error output, so nbgrader scores it as usual.

Authors write hidden tests as in nbgrader, with two rules: a hidden part imports the tools it
uses (it does not see the notebook's imports, only its own), and it reads only data: numbers,
strings, lists, dicts, numpy arrays, keras models and Histories; a student's function it calls
runs in the student's kernel, on arguments sent as data (graders.inside.proxy).
Code after `### END HIDDEN TESTS` runs in the checker too. Only test cells are cut (the grade
ids the gradebook calls test cells, whatever the submission's metadata says; nbgrader restores
their source from it): the marker in a student's own cell is a comment like any other, and that
code runs in the kernel.

Misconceptions: a hidden part may declare, before its asserts, `MISCONCEPTIONS = [(name,
predicate, hint), ...]` (predicates: functions of no argument over the names the check reads
or has computed so far) and `STUDENT_VALUE = lambda: ...`. When the check fails, the checker
tries them in order and reports the first that is true (a predicate that raises is false), or
"other", with the student's value: what the class got wrong, for feedback and the report.
They run only here, on exported data, and never change the check's outcome.
`NOTICES` (same shape) are tried whether the check passed or not: a mistake that may still
leave the answer good enough (a model trained on the test set that clears the bar on unseen
images), reported with `passed` set when the check passed.
"""
import ast
import builtins
import json
import os
import signal
import sys
from dataclasses import dataclass, field

from graders.inside import checker_env, proxy

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"  # nbgrader's default delimiters: a line containing one is a marker
FAILED_TO_RUN = "HiddenCheckError"
OTHER = "other"  # a failed check that no declared misconception explains
TABLE, NOTICES, VALUE = "MISCONCEPTIONS", "NOTICES", "STUDENT_VALUE"  # the names a hidden part declares them under


@dataclass
class Check:
    """One test cell's hidden part, and where its kernel exported the names it reads."""
    cell_id: str
    code: str
    folder: str
    names: list = field(default_factory=list)


def is_test_cell(cell, tests) -> bool:
    """A code cell whose grade id is one of `tests`, the notebook's test cells as the gradebook knows
    them (graders.grading.steps.NbgraderSteps.test_cells: graded, not an answer, locked), whatever
    the submission's own metadata says of it: nbgrader has restored its source from the gradebook,
    so its hidden part is the instructor's, never a student's."""
    grade_id = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
    return cell.get("cell_type") == "code" and isinstance(grade_id, str) and grade_id in tests


def split(source: str, begin: str = BEGIN, end: str = END) -> tuple:
    """(public part, hidden part or None): the hidden part is everything from the first line
    holding `begin` on (as nbgrader's ClearHiddenTests, which looks for the text anywhere in a
    line), without the marker lines. The delimiters are the course's (Course.hidden_delimiters)."""
    lines = source.splitlines(keepends=True)
    starts = [number for number, line in enumerate(lines) if begin in line]
    if not starts:
        return source, None
    public, rest = lines[:starts[0]], lines[starts[0]:]
    hidden = [line for line in rest if begin not in line and end not in line]
    return "".join(public), "".join(hidden)


def free_names(code: str) -> list:
    """The names `code` reads but never binds, builtins excluded: what the kernel must export.
    A name that shadows a builtin (`abs`, `isinstance`) is never taken from the student. Scopes
    are not told apart: a name bound anywhere in the hidden part (even in a function) is its own."""
    tree = ast.parse(code)
    read, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            read.append((node.lineno, node.col_offset, node.id))
        elif isinstance(node, ast.Name):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    names = dict.fromkeys(name for *_, name in sorted(read) if name not in bound and not hasattr(builtins, name))
    return list(names)


def export_code(names: list, folder: str) -> str:
    """What the kernel runs (silently, after the public part) to export `names`."""
    return f"__import__('graders.inside.artifacts', fromlist=['export']).export(globals(), {names!r}, {folder!r})"


def failure_output(ename: str, evalue: str) -> dict:
    """An error output as the kernel would show it, with the message only: the hidden code stays hidden."""
    return {"output_type": "error", "ename": ename, "evalue": evalue,
            "traceback": [f"\x1b[0;31m{ename}\x1b[0m: {evalue}" if evalue else f"\x1b[0;31m{ename}\x1b[0m"]}


# -- the checker: forked from the zygote before any student code ran ----------------------------

def serve(connection) -> None:
    """The checker's loop: per request (one JSON line: checks, a time limit, whether the student's
    kernel is `live` for calls), fork a child that runs them, and answer with {cell id: null or
    [ename, evalue(, diagnosis)]} and the child's CPU seconds. A child's call lines go to the runner
    on the same line (graders.inside.proxy.Channel) while this loop waits for the child."""
    stream = connection.makefile("rw", encoding="utf-8")
    stream.write(json.dumps({"pid": os.getpid()}) + "\n")
    stream.flush()
    for line in stream:
        request = json.loads(line)
        _import_keras_once(request["checks"])
        results, cpu = _run_in_child(request["checks"], request["seconds"], connection if request.get("live") else None)
        stream.write(json.dumps({"results": results, "cpu_seconds": cpu}) + "\n")
        stream.flush()


def _import_keras_once(checks: list) -> None:
    """keras imported here, once, when a check loads a model: each request's child inherits it
    instead of importing it again (1.9 CPU-seconds). In a grading the zygote has preloaded it
    already; a recheck preloads nothing, since most of its checks need no keras."""
    from graders.inside import artifacts
    if "keras" not in sys.modules and any(artifacts.needs_keras(check["folder"], check["names"]) for check in checks):
        import keras  # noqa: F401


def _run_in_child(checks: list, seconds: float, connection=None) -> tuple:
    """Each request in a fresh child: what one notebook's checks load or leave behind (models,
    arrays, imports) never reaches the next notebook's. With `connection` the student's kernel is
    alive (for calls): the child then makes no home, since a student process could write in it;
    HOME stays where nothing can be."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code, home = 1, None
        try:
            signal.alarm(max(1, int(seconds)))  # the default action ends the child
            _quiet()
            if connection is None:
                home = checker_env.fresh_home()  # no student process exists now: it is the checker's alone
            channel = proxy.Channel(connection) if connection is not None else None
            with os.fdopen(write, "w") as out:
                for check in checks:
                    out.write(json.dumps([check["cell_id"], run_check(check, channel)]) + "\n")
                    out.flush()
            code = 0
        finally:
            if home:
                checker_env.remove(home)
            os._exit(code)
    os.close(write)
    results = {}
    with os.fdopen(read) as lines:
        for line in lines:
            cell_id, result = json.loads(line)
            results[cell_id] = result
    _, status, usage = os.wait4(pid, 0)
    why = "timed out" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM else (
        f"ended with status {os.waitstatus_to_exitcode(status)}")
    for check in checks:
        results.setdefault(check["cell_id"], [FAILED_TO_RUN, f"the hidden checks could not run: the checker {why}"])
    return results, usage.ru_utime + usage.ru_stime


def _quiet() -> None:
    """What hidden code prints (load_dataset's notes) goes nowhere: the student must not see it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def run_check(check: dict, channel=None):
    """Run one hidden part on its exported names: None if it passed, else [ename, evalue], plus
    the diagnosis (`diagnose`) when the hidden part declares misconceptions; a passed check
    with a notice that holds gives [None, None, diagnosis]. The student's functions it reads
    call through `channel` (none in a recheck: such a check is refused)."""
    from graders.inside import artifacts
    functions = (lambda name, key: proxy.StudentFunction(name, key, channel, check["folder"])) if channel else None
    try:
        values, refused = artifacts.load(check["folder"], check["names"], functions)
    except Exception as error:
        return [FAILED_TO_RUN, f"the names this check reads were not exported ({type(error).__name__})"]
    used = [name for name in check["names"] if name in refused]
    if used:
        return [FAILED_TO_RUN, refused[used[0]]]
    namespace = {**values, "__builtins__": builtins, "__name__": "__hidden__"}  # the checker's own, whatever was exported
    try:
        exec(compile(check["code"], f"<hidden test of {check['cell_id']}>", "exec"), namespace)
    except BaseException as error:  # noqa: B902 (SystemExit and KeyboardInterrupt fail the check too)
        failure = [type(error).__name__, artifacts.plain_text(error, 1000)]
        diagnosis = diagnose(namespace)
        return failure + [diagnosis] if diagnosis else failure
    notice = diagnose(namespace, passed=True)
    return [None, None, notice] if notice else None


def diagnose(namespace: dict, passed: bool = False):
    """{misconception, hint, value} for a failed check whose hidden part declared MISCONCEPTIONS or
    NOTICES: the first whose predicate is true, else OTHER (no hint); None without a declaration.
    For a passed check, only NOTICES, and None unless one holds."""
    from graders.inside import artifacts
    tables = [namespace.get(name) for name in ((NOTICES,) if passed else (TABLE, NOTICES))]
    tables = [table for table in tables if isinstance(table, (list, tuple))]
    if not tables:
        return None
    found = {"misconception": OTHER, "hint": "", "value": None, **({"passed": True} if passed else {})}
    for entry in [entry for table in tables for entry in table]:
        try:
            name, predicate, hint = entry
            if bool(predicate()):
                found.update(misconception=artifacts.plain_text(name, 100), hint=artifacts.plain_text(hint, 1000))
                break
        except BaseException:  # noqa: B902 (a predicate that raises does not match)
            continue
    if passed and found["misconception"] == OTHER:
        return None
    try:
        value = plain_value(namespace[VALUE]())
        found["value"] = value if len(json.dumps(value)) <= 1000 else json.dumps(value)[:200]  # an example, not a dump
    except BaseException:  # noqa: B902 (no value is better than no diagnosis)
        pass
    return found


def declared(code: str) -> list:
    """The misconception names a hidden part declares (the literal first items of its
    MISCONCEPTIONS, then of its NOTICES), in order."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names = {TABLE: [], NOTICES: []}
    for node in ast.walk(tree):
        for target in (node.targets if isinstance(node, ast.Assign) else []):
            if isinstance(target, ast.Name) and target.id in names and isinstance(node.value, (ast.List, ast.Tuple)):
                names[target.id] = [entry.elts[0].value for entry in node.value.elts
                                    if isinstance(entry, ast.Tuple) and entry.elts and isinstance(entry.elts[0], ast.Constant)]
    return list(dict.fromkeys(names[TABLE] + names[NOTICES]))


def plain_value(value, depth: int = 0):
    """The student's value as short JSON: numbers as they are, sequences as lists, anything else
    as its text on one line, without control characters (at most 200 characters)."""
    from graders.inside import artifacts
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if isinstance(value, float) else int(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return plain_value(value.item(), depth)
    if isinstance(value, (list, tuple)) and depth < 3 and len(value) <= 20:
        return [plain_value(item, depth + 1) for item in value]
    if isinstance(value, dict) and depth < 3 and len(value) <= 20:
        return {artifacts.plain_text(key, 200): plain_value(item, depth + 1) for key, item in value.items()}
    return artifacts.plain_text(value, 200)
