"""Execute a student's notebooks as nbgrader's Execute step would: what runs inside the sandbox.

Usage: python -m graders.inside.run_notebook NOTEBOOK... --cell-timeout S --test-cells JSON
       [--notebook-timeout W] [--preload MODULES] [--hidden-delimiters BEGIN END] [--recheck] [--sandboxed]
Each NAME.ipynb is read into memory and removed from the disk before any student code runs,
then executed, in order, each in a kernel of its own forked from one zygote
(graders.inside.kernel_fork) that imported the `--preload` modules once. The kernel never sees a
hidden test: it runs each test cell's public part and exports what the hidden part reads; with
--sandboxed (in bubblewrap) whatever the notebook left running is then killed, and the checker
(graders.inside.hidden) runs the hidden parts. The NAME.executed.ipynb files, with the cells' sources
as they came, are written beside them at the end, when nothing of the student's runs any more.
Reports (on the grader's private line, graders.inside.report, and as RUNNER lines on stdout) when
it starts, "ran NAME in W s, kernel CPU C s" and "checked NAME in W s, checker CPU C s, exports E
s" per notebook, and what went wrong. Stops at the first notebook that fails, with the exit
status (graders.inside.runner_api) 3 when its kernel died, 4 when it could not be read or
written, 5 when it ran past its wall time, 6 when a --recheck could not recheck one, 7 when the
checker was stopped; 0 when all ran to the end (cells may have failed: that is for the grade to
say). In a sandbox the executed notebooks and
packs go back on the grader's output line instead (graders.isolation.handover).

This is nbclient with the settings of nbgrader's Execute preprocessor (`EXECUTE_SETTINGS`,
`record_unreported_error`), not nbgrader itself: importing nbgrader costs about 1.5
CPU-seconds (all of nbgrader, its server extensions and SQLAlchemy), 4% of a class's grading
time on 2 cores. nbgrader's own Autograde grades the result.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

# jsonschema imports rfc3987_syntax, which builds a grammar at import (0.75 CPU-seconds), for
# a URI format check that nbformat never asks for. Without it jsonschema skips that check.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.util import ensure_async, run_sync  # noqa: E402
from nbformat.notebooknode import NotebookNode  # noqa: E402

from graders.data import LABELS_FOLDER  # noqa: E402
from graders.files import read_or_empty as _read, write_atomically  # noqa: E402
from graders.inside import artifacts, hidden, proxy, side_effects  # noqa: E402
from graders.inside.merge import RecheckError, merge  # noqa: E402,F401 (the grader's run_notebook.merge)
from graders.inside.kernel_fork import ForkedKernelManager, Zygote, set_dumpable  # noqa: E402
from graders.inside.report import hand_back, hands_back, report  # noqa: E402
from graders.inside.report import take as take_lines  # noqa: E402
from graders.inside.runner_api import (CHECKER_STOPPED, KERNEL_DIED, NOT_RECHECKABLE, PACK, PREVIOUS,  # noqa: E402,F401
                                       TIMED_OUT, UNREADABLE)
from graders.isolation.watchdog import kill_until_gone, process_state  # noqa: E402


# nbgrader 0.9's Execute (nbgrader/preprocessors/execute.py): keep going after errors, and a
# cell that times out gets an error output, so its test fails rather than hangs.
EXECUTE_SETTINGS = dict(
    allow_errors=True,
    interrupt_on_timeout=True,
    raise_on_iopub_timeout=True,
    error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                      "traceback": ["\x1b[0;31mCellTimeoutError\x1b[0m: No reply from kernel before timeout"]},
)


def record_unreported_error(cell, execute_reply, **_):
    """nbgrader's Execute.on_cell_executed: an error reply with no error output gets one."""
    content = execute_reply["content"]
    if content["status"] != "error":
        return
    if any(output.output_type == "error" and output.get("ename") == content["ename"] for output in cell.outputs):
        return
    error = NotebookNode(output_type="error", ename=content["ename"], evalue=content["evalue"],
                         traceback=content["traceback"] or ["ERROR: An error occurred while showtraceback was disabled"])
    cell.outputs.append(error)


class HiddenTestsClient(NotebookClient):
    """nbclient that gives the kernel only the public part of each test cell; after a public part
    that passed, the kernel exports the names the hidden part reads into `exports`/<cell>.
    `checks` lists them, for the checker."""

    def __init__(self, notebook, exports: Path, delimiters=(hidden.BEGIN, hidden.END), tests=(), **kw):
        super().__init__(notebook, **kw)
        self.exports, self.checks, self.delimiters, self.tests = exports, [], delimiters, tests
        self.export_seconds = 0.0  # the kernel's exporting, wall time
        self.kept, self.closing = False, False  # kept alive after the last cell, for the hidden tests' calls

    async def _async_cleanup_kernel(self) -> None:
        """After the last cell, the kernel stays up when a hidden part calls a student's function
        (graders.inside.proxy); `close_kernel` ends it once the checks are done."""
        if not self.closing and any(artifacts.calls_student(item.folder, item.names) for _, item in self.checks):
            self.kept = True
            return
        await super()._async_cleanup_kernel()

    async def _async_close_kernel(self) -> None:
        self.closing, self.kept = True, False
        if self.km is not None:
            await super()._async_cleanup_kernel()

    close_kernel = run_sync(_async_close_kernel)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        public, code = hidden.split(cell.source, *self.delimiters) if hidden.is_test_cell(cell, self.tests) else (cell.source, None)
        if code is None:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        original, cell.source = cell.source, public
        try:
            await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            cell.source = original
        if not any(output.output_type == "error" for output in cell.outputs):  # else stock stops there too
            check = hidden.Check(cell.get("id") or f"cell{cell_index}", code,
                                 str(self.exports / f"{cell_index:03d}"), hidden.free_names(code))
            started = time.monotonic()
            message = await ensure_async(self.kc.execute(hidden.export_code(check.names, check.folder), silent=True,
                                                         store_history=False, allow_stdin=False))
            await self.async_wait_for_reply(message)
            self.export_seconds += time.monotonic() - started
            self.checks.append((cell, check))
        return cell


def take(paths: list):
    """Read every notebook into this process's memory, then remove the files, before any student
    code runs: the prepared notebooks hold the hidden tests, and student code may search the disk
    (this student's other notebook included). Returns ({path: notebook}, exit status)."""
    notebooks = {}
    for path in paths:
        try:
            notebooks[path] = nbformat.read(str(path), as_version=4)
        except Exception as error:
            report(f"unreadable notebook {path.name}: {type(error).__name__}: {error}", failure=True)
            return {}, UNREADABLE
    for path in paths:
        try:
            path.unlink()
        except OSError as error:
            report(f"cannot remove the prepared notebook {path.name}: {error}", failure=True)
            return {}, UNREADABLE
    return notebooks, 0


def run(path: Path, notebook, cell_timeout: int, notebook_timeout: float, zygote: Zygote, exports: Path,
        delimiters=(hidden.BEGIN, hidden.END), tests=()):
    """Execute one notebook (read from `path`; `tests`: its test cells' grade ids, the gradebook's);
    returns (exit status, the executed notebook, the client, whose `checks` are the hidden parts to run)."""
    started = time.monotonic()
    # Every output is in once the last cell is done: the kernel is killed, not asked to exit
    # (TensorFlow's teardown costs 0.6 s per notebook; whatever it would still do is not graded).
    client = HiddenTestsClient(notebook, exports, delimiters, tests, timeout=cell_timeout, on_cell_executed=record_unreported_error,
                               shutdown_kernel="immediate", resources={"metadata": {"path": str(path.parent)}},
                               kernel_manager_class=ForkedKernelManager, **EXECUTE_SETTINGS)
    ForkedKernelManager.zygote, zygote.last_pid = zygote, None
    timed_out = threading.Event()
    deadline = threading.Timer(notebook_timeout, _kill_kernel, [zygote, timed_out])
    deadline.start()
    try:
        client.execute()
    except RuntimeError as error:  # the kernel died or did not start (DeadKernelError, ZygoteDied...)
        client.close_kernel()
        if timed_out.is_set():
            report(f"timed out: {path.name} still running after {notebook_timeout:g} s", failure=True)
            return TIMED_OUT, None, client
        report(f"kernel died: {path.name}: {error}", failure=True)
        return KERNEL_DIED, None, client
    finally:
        deadline.cancel()
    cpu = zygote.cpu_seconds.get(zygote.last_pid, 0.0)
    wall = time.monotonic() - started
    report(f"ran {path.stem} in {wall:.2f} s, kernel CPU {cpu:.2f} s", notebook=key(path),
           wall_seconds=round(wall, 3), cpu_seconds=round(cpu, 3))
    return 0, notebook, client


def check(path: Path, client: HiddenTestsClient, zygote: Zygote, seconds: float, calls=None) -> None:
    """Run the hidden parts in the checker, once no student process is left but a kernel kept for
    `calls` (graders.inside.proxy.KernelCalls, stopped between them); a failed one is its
    cell's error output, as it would have been in the kernel (the message only), and its
    diagnosis (which misconception) goes to the grader alone."""
    started, checks = time.monotonic(), client.checks
    results, cpu = zygote.check([item for _, item in checks], seconds, calls) if checks else ({}, 0.0)
    for cell, item in checks:
        result = results.get(item.cell_id, [hidden.FAILED_TO_RUN, "the hidden checks could not run"])
        if result and result[0]:  # [None, None, diagnosis]: passed, with a notice
            cell.outputs.append(nbformat.from_dict(hidden.failure_output(*result[:2])))
        if result and len(result) > 2 and isinstance(result[2], dict):
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", item.cell_id)
            report(f"diagnosed {key(path)}:{grade_id}: {result[2].get('misconception')}", notebook=key(path),
                   cell=grade_id, diagnosis=result[2])
    wall, called = time.monotonic() - started, (f", {calls.count} call(s) {calls.wall:.2f} s" if calls else "")
    report(f"checked {key(path)} in {wall:.2f} s, checker CPU {cpu:.2f} s, exports {client.export_seconds:.2f} s{called}",
           notebook=key(path), check_wall_seconds=round(wall, 3), check_cpu_seconds=round(cpu, 3),
           export_seconds=round(client.export_seconds, 3), calls=calls.count if calls else 0,
           call_seconds=round(calls.wall, 3) if calls else 0.0)


def keep(path: Path, folder: Path, checks: list) -> bytes:
    """A notebook's exports packed (graders.inside.artifacts.pack) for a later recheck, and
    their digest told to the grader, who keeps the pack only if the file says the same. The
    checked cells are the checks the runner queued (`client.checks`), never the folders found:
    the kernel could write those."""
    started = time.process_time()
    checked = sorted(int(Path(item.folder).name) for _, item in checks)
    packed = artifacts.pack(folder, checked)  # no checks: a pack of the empty list
    report(f"packed the exports of {path.stem}: {len(packed)} bytes", notebook=key(path), checked=checked,
           pack_sha256=hashlib.sha256(packed).hexdigest(), pack_seconds=round(time.process_time() - started, 3))
    return packed


def recheck(notebooks: dict, zygote: Zygote, exports: Path, seconds: float, delimiters, executed: dict, tests: dict) -> int:
    """--recheck: no kernel, no student code. Each prepared notebook (the new hidden tests) takes
    the outputs of the copy executed when it was graded (NAME.previous.ipynb); every changed check
    the checker ran then is checked again, on the kept exports (NAME.exports.tar.xz, data only),
    and its checker output replaced. The notebooks may be several students' (STUDENT/NAME.ipynb,
    graders.grading.recheck's groups): one that cannot be rechecked is reported and left out, the
    others go on. `tests`: {notebook: its test cells' grade ids}. Fills `executed`; returns an exit status."""
    status = 0
    for number, (path, notebook) in enumerate(notebooks.items()):
        folder = exports / str(number)
        try:
            previous = nbformat.read(str(path.with_suffix(PREVIOUS)), as_version=4)
            artifacts.unpack(path.with_suffix(PACK).read_bytes(), folder)
            checked = set(json.loads((folder / artifacts.CHECKED).read_text()))  # the runner's, at grading
            checks = [(cell, hidden.Check(cell.get("id") or f"cell{index}", code, str(folder / f"{index:03d}"), names))
                      for index, cell, code, names in merge(notebook, previous, checked, delimiters, tests[path.stem])]
            if any(artifacts.calls_student(item.folder, item.names) for _, item in checks):
                raise RecheckError("a changed hidden test calls the student's functions, which only a full grading runs")
        except Exception as error:
            report(f"cannot recheck {key(path)}: {type(error).__name__}: {error}", failure=True, not_rechecked=key(path))
            shutil.rmtree(folder, ignore_errors=True)
            status = NOT_RECHECKABLE
            continue
        check(path, types.SimpleNamespace(checks=checks, export_seconds=0.0), zygote, seconds)
        shutil.rmtree(folder, ignore_errors=True)
        if zygote.checker_died:  # this notebook's checks and every later one's did not run
            for later in list(notebooks)[number:]:
                report(f"cannot recheck {key(later)}: the checker has died", failure=True, not_rechecked=key(later))
            return NOT_RECHECKABLE
        executed[path] = notebook
    return status


def key(path: Path) -> str:
    """How the report names a notebook: NAME, or STUDENT/NAME in a recheck group."""
    return path.with_suffix("").as_posix()


def replace(content: bytes, path: Path) -> None:
    """Replace `path` (whatever a student left there) with `content`."""
    write_atomically(path, lambda stream: stream.write(content))


def _kill_kernel(zygote: Zygote, timed_out: threading.Event) -> None:
    """The notebook's wall time is up: kill its kernel (and what it started); nbclient sees it die."""
    timed_out.set()
    if zygote.last_pid:
        try:
            os.killpg(zygote.last_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_leftovers(keep: set, parents: set = frozenset()) -> None:
    """Kill every process of ours in the sandbox but `keep` and the children of `parents` (the
    checker's child, while a hidden test calls the kept kernel), so nothing a notebook started
    outlives it (to meddle with the next notebook, or with the outputs). Only in bubblewrap's pid
    namespace, where all a sandbox user's processes are the student's: outside it they would be the
    grader's. Only the checker forks its children: an orphan goes to pid 1, never to it."""
    kill_until_gone(lambda: [pid for pid in _our_processes() if pid not in keep and _parent(pid) not in parents
                             and process_state(pid) not in ("Z", "X", "")],  # a zombie runs nothing: its parent reaps it
                    attempts=100, pause=0.02)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _our_processes() -> list:
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == os.getuid():
                found.append(int(name))
        except OSError:  # gone meanwhile
            pass
    return found


def write(notebook, path: Path) -> None:
    """Replace `path` (whatever a student left there: a symlink, a read-only file) with `notebook`."""
    write_atomically(path, lambda stream: stream.write(nbformat.writes(notebook).encode("utf-8")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders.inside.run_notebook", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", type=Path, nargs="+", metavar="NOTEBOOK")
    parser.add_argument("--cell-timeout", type=int, required=True, help="seconds per cell (nbgrader's Execute.timeout)")
    parser.add_argument("--notebook-timeout", type=float, default=900, help="wall seconds per notebook")
    parser.add_argument("--preload", default="", help="modules the kernels share, comma-separated")
    parser.add_argument("--hidden-delimiters", nargs=2, default=[hidden.BEGIN, hidden.END], metavar=("BEGIN", "END"),
                        help="the course's hidden-test delimiters (nbgrader's ClearHiddenTests)")
    parser.add_argument("--test-cells", type=json.loads, required=True, metavar="JSON",
                        help='{"NAME": [grade id, ...]}: each notebook\'s test cells, as the gradebook knows them')
    parser.add_argument("--recheck", action="store_true",
                        help="start no kernel: run the hidden parts on each NAME.exports.tar.xz, outputs from NAME.previous.ipynb")
    parser.add_argument("--sandboxed", action="store_true",
                        help="kill every other process of this uid between notebooks (only in bubblewrap's pid namespace)")
    args = parser.parse_args(argv)
    if args.sandboxed and _read("/proc/1/comm").strip() != "bwrap":
        parser.error("--sandboxed outside a bubblewrap sandbox: refusing to kill this user's processes")
    take_lines()
    report("started", started=True)
    # the zygote (and so every kernel) is forked before any notebook is read: none ever held one
    zygote = Zygote([name for name in args.preload.split(",") if name])
    # the checker has taken the grading labels once it says hello: off the disk before any kernel
    zygote.checker_pid  # noqa: B018
    shutil.rmtree(LABELS_FOLDER, ignore_errors=True)
    # no student process may inspect or alter the runner (same uid: it could ptrace it or open
    # /proc/PID/mem): it holds the hidden tests
    set_dumpable(False)
    executed, packs, rechecked = {}, {}, 0
    exports = Path(os.path.realpath(tempfile.mkdtemp(prefix="graders-checks-")))  # the checker takes no link
    try:
        notebooks, status = take(args.notebooks)
        if status:
            return status
        before = side_effects.snapshot(Path.cwd())  # what the notebooks find (their prepared copies are gone)
        unknown = [path.name for path in notebooks if not isinstance(args.test_cells.get(path.stem), list)]
        if unknown:  # what a test cell is comes from the gradebook, never from the notebook
            report(f"no test cells given for {unknown[0]}", failure=True)
            return UNREADABLE
        if args.recheck:  # the notebooks it could recheck are written, whatever the others
            rechecked = recheck(notebooks, zygote, exports, args.notebook_timeout, args.hidden_delimiters, executed,
                                args.test_cells)
        for path, notebook in (notebooks.items() if not args.recheck else []):
            status, executed[path], client = run(path, notebook, args.cell_timeout, args.notebook_timeout, zygote,
                                                 exports / path.stem, args.hidden_delimiters, args.test_cells[path.stem])
            ours = {1, os.getpid(), zygote.pid, zygote.checker_pid}
            kernel = {zygote.last_pid} if client.kept and not status else set()
            sweep = (lambda: kill_leftovers(ours | kernel, {zygote.checker_pid})) if args.sandboxed else (lambda: None)
            sweep()
            if status:
                return status
            calls = proxy.KernelCalls(client.km, zygote.last_pid, exports, args.cell_timeout, sweep) if kernel else None
            try:
                check(path, client, zygote, args.notebook_timeout, calls)
            finally:
                if calls:
                    calls.close()
                client.close_kernel()
                if args.sandboxed and kernel:
                    kill_leftovers(ours)
            if zygote.checker_stopped:  # by student code: fail closed, at once
                report(f"the checker was stopped (a signal from student code) while checking {path.name}", failure=True)
                return CHECKER_STOPPED
            # packed now, before the next notebook's kernel could change them; written at the end
            packs[path] = keep(path, exports / path.stem, client.checks)
            shutil.rmtree(exports / path.stem, ignore_errors=True)
    finally:
        zygote.close()
        shutil.rmtree(exports, ignore_errors=True)
    # written only now, when no student process is left to change them
    if args.sandboxed:
        kill_leftovers({1, os.getpid()})
    back = hands_back()
    try:
        effects = {}
        if not args.recheck:  # the files the notebooks wrote, as nbgrader's autograded/ keeps them
            effects, left_out = side_effects.written(Path.cwd(), before, skip={path.name for path in notebooks})
            if left_out:
                report(f"{len(left_out)} file(s) the notebooks wrote not kept: {'; '.join(left_out[:3])}")
        if back:
            hand_back({**effects, **{name: content for path, notebook in executed.items() for name, content in
                       [(path.with_suffix(".executed.ipynb").as_posix(), nbformat.writes(notebook).encode("utf-8")),
                        *([(path.with_suffix(PACK).as_posix(), packs[path])] if path in packs else [])]}})
        for name, content in (effects.items() if not back else []):  # --no-sandbox: beside the outputs
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            Path(name).write_bytes(content)
        for path, notebook in (executed.items() if not back else []):
            write(notebook, path.with_suffix(".executed.ipynb"))
            if path in packs:
                replace(packs[path], path.with_suffix(PACK))
    except Exception as error:
        report(f"cannot write the executed notebooks: {type(error).__name__}: {error}", failure=True)
        return UNREADABLE
    return rechecked


if __name__ == "__main__":
    sys.exit(main())
