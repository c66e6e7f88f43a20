"""Hidden tests that call a student's function: the call runs in the student's kernel, never the code.

A hidden part that reads a name the kernel exported as a function (`squares`) gets a
`StudentFunction` in the checker. Calling it sends the arguments as data (the kinds
graders.inside.artifacts moves: numbers, strings, lists, dicts, numpy arrays) through the runner
to the student's kernel, still alive after the notebook's last cell; `answer` runs the function
there, as it was when its test cell ran, in the sandbox, under the cell's time limit, and exports
what it returned. The checker loads that as its own objects: what a call returns is a claim, like
every export. The hidden test's code never enters the kernel; what it passes as arguments does
(as in stock nbgrader), so the grading labels are refused as an argument.

A call that raises fails with the student's exception type when it is a builtin one
(`except ValueError` in a hidden test works as in stock nbgrader), else `StudentError`; a call
that overruns its time, returns what is not data, or whose kernel is gone raises
`CallFailed`, a BaseException, so that an `except Exception` in a hidden test cannot turn it
into a pass.
"""
import builtins
import itertools
import json
import os
import signal
import sys
from pathlib import Path

from graders.inside import artifacts
from graders.isolation.limiters import alive
from graders.isolation.watchdog import process_state

ERROR = "error.json"  # what the kernel writes when the function raised
RESULT = "result"  # the folder of the function's exported return value


class StudentError(Exception):
    """The student's function raised an exception that is not a builtin one."""


class CallFailed(BaseException):
    """The call gave no answer the check can use: overrun, not data, the kernel gone."""


# -- in the checker ------------------------------------------------------------------------

class Channel:
    """The checker child's line to the runner, which runs each call in the kernel and answers."""

    def __init__(self, connection):
        self.stream = connection.makefile("rw", encoding="utf-8")
        self.counter = itertools.count()

    def call(self, key: str, folder: str) -> dict:
        self.stream.write(json.dumps({"call": {"key": key, "folder": folder}}) + "\n")
        self.stream.flush()
        line = self.stream.readline()
        if not line:
            raise CallFailed("the runner did not answer")
        return json.loads(line)


class StudentFunction:
    """A function of the student's, as the checker sees it: each call a round trip to the kernel."""

    def __init__(self, name: str, key: str, channel: Channel, folder: str):
        self.__name__, self.key, self.channel, self.folder = name, key, channel, folder

    def __repr__(self):
        return f"<the student's function {self.__name__} (runs in the student's kernel)>"

    def __call__(self, *args, **kwargs):
        refuse_grading_labels(self.__name__, [*args, *kwargs.values()])
        folder = Path(self.folder) / f"call-{next(self.channel.counter):05d}"
        values = {f"arg{number}": value for number, value in enumerate(args)}
        values.update({f"kwarg{number}": value for number, value in enumerate(kwargs.values())})
        artifacts.export(values, list(values), str(folder))
        (folder / "call.json").write_text(json.dumps({"args": len(args), "kwargs": list(kwargs)}))
        manifest = json.loads((folder / artifacts.MANIFEST).read_text())
        refused = [entry.get("why", "it is a function: only data crosses") for entry in manifest.values()
                   if entry.get("kind") in ("refused", "function")]
        if refused:
            raise CallFailed(f"{self.__name__}: an argument cannot be sent to the student's code: {refused[0]}")
        answer = self.channel.call(self.key, str(folder))
        if answer.get("failed"):
            raise CallFailed(f"{self.__name__}({_shown(args, kwargs)}) {artifacts.plain_text(answer['failed'])}")
        return _result(self.__name__, folder, args, kwargs)


def _result(name: str, folder: Path, args, kwargs):
    """The call's outcome as the kernel claims it: the exception it raised, or the value it returned."""
    try:
        error = json.loads(artifacts._read_plain(folder, ERROR))
    except FileNotFoundError:
        error = None
    except (OSError, ValueError, artifacts.Refused):
        raise CallFailed(f"{name}({_shown(args, kwargs)}): the kernel's answer is unreadable") from None
    if isinstance(error, dict):
        ename, evalue = artifacts.plain_text(error.get("ename"), 100), artifacts.plain_text(error.get("evalue"), 500)
        kind = getattr(builtins, ename, None)
        if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
            raise kind(evalue)
        raise StudentError(f"{ename}: {evalue}")
    try:
        values, refused = artifacts.load(str(folder / RESULT), [RESULT])
    except Exception as failure:
        raise CallFailed(f"{name}({_shown(args, kwargs)}) returned nothing the checker can read "
                         f"({type(failure).__name__})") from None
    if RESULT in refused:
        raise CallFailed(f"{name}({_shown(args, kwargs)}) returned what is not data: {refused[RESULT]}")
    if RESULT not in values:
        raise CallFailed(f"{name}({_shown(args, kwargs)}) returned nothing the checker can read")
    return values[RESULT]


def _shown(args, kwargs) -> str:
    text = ", ".join([*(artifacts.plain_text(repr(arg), 40) for arg in args),
                      *(f"{key}={artifacts.plain_text(repr(value), 40)}" for key, value in kwargs.items())])
    return text if len(text) <= 120 else text[:117] + "..."


def refuse_grading_labels(name: str, values: list) -> None:
    """The grading labels never reach the student's code, even when a hidden test passes them by
    mistake: an array that is (or is a view of) a label array the checker holds is refused."""
    from graders import data
    np = sys.modules.get("numpy")
    labels = list(getattr(data, "_checker_labels", {}).values())
    pending = list(values)
    while np is not None and labels and pending:
        value = pending.pop()
        if isinstance(value, (list, tuple)):
            pending += list(value)
        elif isinstance(value, dict):
            pending += list(value.values())
        elif isinstance(value, np.ndarray) and any(
                np.shares_memory(value, label) or (value.shape == label.shape and np.array_equal(value, label))
                for label in labels):
            raise CallFailed(f"{name}: a hidden test may not pass the grading labels to the student's code")


# -- in the student's kernel ---------------------------------------------------------------

def answer(key: str, folder: str) -> None:
    """Run the student's function `key` (kept when its test cell exported it) on the arguments in
    `folder`; write what it returned (exported) or the exception it raised."""
    folder = Path(folder)
    call = json.loads((folder / "call.json").read_text())
    names = [f"arg{number}" for number in range(call["args"])] + [f"kwarg{number}" for number in range(len(call["kwargs"]))]
    values, refused = artifacts.load(str(folder), names)
    if refused:
        raise artifacts.Refused(next(iter(refused.values())))
    args = [values[f"arg{number}"] for number in range(call["args"])]
    kwargs = {keyword: values[f"kwarg{number}"] for number, keyword in enumerate(call["kwargs"])}
    try:
        result = artifacts.FUNCTIONS[key](*args, **kwargs)
    except BaseException as error:  # noqa: B902 (the check says what the student's code raised)
        (folder / ERROR).write_text(json.dumps({"ename": type(error).__name__, "evalue": str(error)[:500]}))
        return
    artifacts.export({RESULT: result}, [RESULT], str(folder / RESULT))


def answer_code(key: str, folder: str) -> str:
    """What the runner has the kernel run (silently) for one call."""
    return f"__import__('graders.inside.proxy', fromlist=['answer']).answer({key!r}, {folder!r})"


def is_under(folder: str, root: Path) -> bool:
    """The checker names a call's folder; the runner runs only calls in its own exports folder."""
    real = os.path.realpath(folder)
    return real == folder and Path(root) in Path(real).parents


# -- in the runner -------------------------------------------------------------------------

class KernelCalls:
    """The runner's side: each call the checker sends runs in the notebook's kernel, which is
    stopped (SIGSTOP) at every other moment: no student code runs while the checker reads what a
    call or an export left, so nothing it loads can change under it. `sweep` kills whatever else a
    call started (the sandbox's kill_leftovers), before the checker goes on."""

    def __init__(self, manager, pid: int, root: Path, seconds: float, sweep=lambda: None):
        from jupyter_client import BlockingKernelClient
        self.client = BlockingKernelClient()
        self.client.load_connection_info(manager.get_connection_info())
        self.client.start_channels()
        self.pid, self.root, self.seconds, self.sweep = pid, Path(root), seconds, sweep
        self.dead, self.count, self.wall = False, 0, 0.0
        self._pause()

    def __call__(self, call) -> dict:
        import time
        if not (isinstance(call, dict) and isinstance(call.get("key"), str) and isinstance(call.get("folder"), str)
                and is_under(call["folder"], self.root)):
            return {"failed": "is not a call this runner runs"}
        if self.dead:
            return {"failed": "could not run: the student's kernel is gone"}
        started, self.count = time.monotonic(), self.count + 1
        try:
            os.kill(self.pid, signal.SIGCONT)
            message = self.client.execute(answer_code(call["key"], call["folder"]), silent=True, store_history=False,
                                          allow_stdin=False)
            reply = self._reply(message, self.seconds)
            if reply is None and not self.dead:
                os.kill(self.pid, signal.SIGINT)  # as nbclient interrupts a cell that overruns
                if self._reply(message, 5) is None:
                    self._kill()
                return {"failed": f"ran past the cell's time limit ({self.seconds:g} s)"}
            if reply is None:
                return {"failed": "could not run: the student's kernel died"}
            if reply["content"].get("status") != "ok":
                return {"failed": f"could not run in the student's kernel ({artifacts.plain_text(reply['content'].get('ename'), 100)})"}
            return {"ok": True}
        except OSError:
            self.dead = True
            return {"failed": "could not run: the student's kernel is gone"}
        finally:
            self.sweep()
            self._pause()
            self._drain()
            self.wall += time.monotonic() - started

    def _reply(self, message: str, seconds: float):
        import queue
        import time
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reply = self.client.get_shell_msg(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if not alive(self.pid):
                    self.dead = True
                    return None
                continue
            if reply.get("parent_header", {}).get("msg_id") == message:
                return reply
        return None

    def _drain(self) -> None:
        """What the function printed goes nowhere (read only so that it does not pile up)."""
        import queue
        for _ in range(100000):
            try:
                self.client.iopub_channel.get_msg(timeout=0)
            except queue.Empty:
                return

    def _pause(self) -> None:
        """Stop the kernel, and wait until it is (a student process that runs on is a race)."""
        import time
        if self.dead:
            return
        try:
            os.kill(self.pid, signal.SIGSTOP)
        except OSError:
            self.dead = True
            return
        for _ in range(1000):
            state = process_state(self.pid)
            if state in ("T", "t") or not alive(self.pid):
                return
            time.sleep(0.001)
        self._kill()  # never running while the checker reads: gone, then

    def _kill(self) -> None:
        self.dead = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass

    def close(self) -> None:
        """The checks are done: the kernel may run again, to be shut down (or killed) as usual."""
        self.client.stop_channels()
        if not self.dead:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except OSError:
                pass
