"""Start a student's kernels by forking one process that has imported TensorFlow once.

A kernel that starts from nothing spends ~2.5 CPU-seconds importing TensorFlow and keras
and ~0.3 s importing ipykernel: for a student's two notebooks that is a tenth of the CPU
their grading needs. `Zygote` forks at the runner's start (before anything has threads,
asyncio or zmq), imports ipykernel and the `preload` modules, then forks one kernel per
notebook on request. Each kernel is what `python -m ipykernel_launcher -f FILE` would be:
its own session and process group (interrupts reach it as usual), the working directory
and environment jupyter_client asked for, numpy's global random state reseeded. The only
visible difference: the preloaded modules are already imported.

The zygote also forks, before any kernel, the checker that runs the hidden tests
(graders.inside.hidden): a process that never runs student code, on a line of its own. Both are not
dumpable: a student's kernel (made dumpable again, as a fresh one is) cannot trace them or read
their memory.

`ForkedKernelManager` is jupyter_client's AsyncKernelManager launching through the zygote
(any kernel that is not ipykernel starts the usual way).
"""
import ctypes
import importlib
import json
import os
import select
import signal
import socket
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager


class ZygoteDied(RuntimeError):
    """The zygote is gone (killed by a student's code, or out of memory): no more kernels."""


class Zygote:
    """The forking process, and the runner's end of the line to it (one JSON message per line)."""

    def __init__(self, preload=()):
        ours, theirs = socket.socketpair()
        checks_ours, checks_theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the zygote
            ours.close()
            checks_ours.close()
            code = 1
            try:
                _close_inherited(keep={theirs.fileno(), checks_theirs.fileno()})
                _serve(theirs, preload, checks_theirs)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        checks_theirs.close()
        self.pid, self.socket, self.stream = pid, ours, ours.makefile("rw", encoding="utf-8")
        self.checks = checks_ours.makefile("rw", encoding="utf-8")
        self.checks_socket = checks_ours
        self._checker_pid = None
        self.checker_died = False  # a check found it gone: nothing more is checked in this run
        self.checker_stopped = False  # ... because it was stopped (SIGSTOP from student code): killed, never waited for
        self.cpu_seconds = {}  # kernel pid -> CPU seconds it used, once reaped
        self.last_pid = None  # the kernel forked last

    @property
    def checker_pid(self) -> int:
        """The checker's pid (it says so first, once the zygote has imported and forked it)."""
        if self._checker_pid is None:
            try:
                line = self.checks.readline()
            except OSError:
                line = ""
            self._checker_pid = json.loads(line)["pid"] if line else -1
        return self._checker_pid

    def request(self, **message) -> dict:
        line = _exchange(self.stream, message, self.socket, self.pid)
        if not line:
            raise ZygoteDied("the kernel zygote has died or was stopped")
        return json.loads(line)

    def spawn(self, connection_file: str, cwd: str, env: dict) -> int:
        self.last_pid = self.request(spawn=connection_file, cwd=cwd, env=env)["pid"]
        return self.last_pid

    def reap(self, pid: int) -> int:
        """Wait for a kernel that has exited (or been killed); returns its exit code."""
        reply = self.request(reap=pid)
        self.cpu_seconds[pid] = reply["cpu_seconds"]
        return reply["returncode"]

    def check(self, checks: list, seconds: float, on_call=None) -> tuple:
        """Run hidden checks (graders.inside.hidden.Check) in the checker: ({cell id: None or [ename,
        evalue]}, the checker's CPU seconds). A dead checker fails them all. With `on_call` the
        student's kernel is alive: each call the checker sends ({"call": ...}) is answered with
        `on_call(call)` (graders.inside.proxy)."""
        self.checker_pid  # noqa: B018 (the hello line comes first)
        line = _exchange(self.checks, {"checks": [vars(check) for check in checks], "seconds": seconds,
                                       "live": on_call is not None}, self.checks_socket, self.checker_pid, children=True)
        while line and on_call is not None and line.startswith('{"call": '):
            line = _exchange(self.checks, on_call(json.loads(line)["call"]), self.checks_socket, self.checker_pid,
                             children=True)
        if not line:
            from graders.inside.hidden import FAILED_TO_RUN
            self.checker_died, self.checker_stopped = True, _stopped(self.checker_pid)
            if self.checker_stopped:
                _kill(self.checker_pid)
            why = "was stopped" if self.checker_stopped else "has died"
            return {check.cell_id: [FAILED_TO_RUN, f"the hidden checks could not run: the checker {why}"]
                    for check in checks}, 0.0
        reply = json.loads(line)
        return reply["results"], reply["cpu_seconds"]

    def close(self) -> None:
        self.socket.close()
        self.checks_socket.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _exchange(stream, message: dict, connection: socket.socket = None, peer: int = 0, children: bool = False) -> str:
    """Send one JSON line and read the answer line; "" if the other end is gone, or stopped (SIGSTOP,
    or traced): student code can signal the zygote and the checker (the same uid), and a stopped one
    would hold the runner until the wall time; it is seen within STOP_POLL seconds instead."""
    try:
        stream.write(json.dumps(message) + "\n")
        stream.flush()
        while connection is not None and peer > 0 and not select.select([connection], [], [], STOP_POLL)[0]:
            if _stopped(peer, children):
                return ""
        return stream.readline()
    except OSError:
        return ""


STOP_POLL = 0.5  # seconds between looks at whether the process asked is stopped


def _stopped(pid: int, children: bool = True) -> bool:
    """The process (or, with `children`, a descendant of its) is stopped (T) or traced (t)."""
    pids, looked = [pid], set()
    while pids:
        current = pids.pop()
        looked.add(current)
        try:
            state = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()[0]
            below = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError):
            continue
        if state in ("T", "t"):
            return True
        pids += [int(child) for child in below if int(child) not in looked] if children else []
    return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _serve(connection: socket.socket, preload, checks: socket.socket) -> None:
    """The zygote's loop: import once, fork the checker, then fork kernels and reap them as asked."""
    set_dumpable(False)
    runner_directory = os.getcwd()
    for name in ["ipykernel.kernelapp", *preload]:
        try:
            importlib.import_module(name)
        except Exception:  # the notebook's own import will say what is wrong
            pass
    if os.fork() == 0:  # the checker: holds no line to the kernels, and they none to it
        connection.close()
        code = 1
        try:
            import tempfile

            from graders import data
            from graders.inside import checker_env, hidden
            data.take_grading_labels(Path(data.LABELS_FOLDER))  # before the runner removes them
            # its own environment, no import path the kernels can write: cwd, /tmp, /dev/shm
            checker_env.seal([os.getcwd(), tempfile.gettempdir(), "/dev/shm"])
            os.chdir("/")
            hidden.serve(checks)
            code = 0
        finally:
            os._exit(code)
    checks.close()
    stream = connection.makefile("rw", encoding="utf-8")
    for line in stream:
        request = json.loads(line)
        if "spawn" in request:
            pid = os.fork()
            if pid == 0:
                stream.close()
                connection.close()
                _become_kernel(request["spawn"], request["cwd"], request["env"], runner_directory)
            reply = {"pid": pid}
        else:
            try:
                _, status, usage = os.wait4(request["reap"], 0)
                reply = {"returncode": os.waitstatus_to_exitcode(status), "cpu_seconds": usage.ru_utime + usage.ru_stime}
            except ChildProcessError:
                reply = {"returncode": -1, "cpu_seconds": 0.0}
        stream.write(json.dumps(reply) + "\n")
        stream.flush()


def _become_kernel(connection_file: str, cwd: str, env: dict, runner_directory: str) -> None:
    """In the forked child: set up what a fresh `python -m ipykernel_launcher` would have, run it."""
    code = 1
    try:
        os.setsid()
        set_dumpable(True)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.close(stdin)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        # `python -m` put the runner's directory first in sys.path; the launcher removes its
        # own the same way, and IPython puts '' (the working directory) back
        if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path(runner_directory)):
            del sys.path[0]
        # as jupyter_client's launcher: the kernel exits if its parent (here the zygote) dies
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        argv = ["-f", connection_file, f"--IPKernelApp.parent_handle={os.getppid()}"]
        sys.argv = [sys.executable, *argv]
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # else every kernel would draw the same numbers
        from ipykernel import kernelapp
        kernelapp.launch_new_instance(argv=argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _close_inherited(keep: set) -> None:
    """Close every descriptor but stdin/out/err and `keep`: what the runner holds (its private
    report line to the grader) never reaches the kernels or the checker."""
    for name in os.listdir("/proc/self/fd"):
        descriptor = int(name)
        if descriptor > 2 and descriptor not in keep:
            try:
                os.close(descriptor)
            except OSError:  # the directory's own descriptor, closed meanwhile
                pass


def set_dumpable(dumpable: bool) -> None:
    """prctl(PR_SET_DUMPABLE): whether processes of the same user may trace this one or read its memory."""
    ctypes.CDLL(None, use_errno=True).prctl(4, int(dumpable), 0, 0, 0)


class ForkedKernel:
    """The part of subprocess.Popen that jupyter_client's LocalProvisioner uses, for a forked kernel."""
    stdin = stdout = stderr = None

    def __init__(self, pid: int, zygote: Zygote):
        self.pid, self.zygote, self.returncode = pid, zygote, None

    def poll(self):
        if self.returncode is None and not _alive(self.pid):
            self.wait()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            try:
                self.returncode = self.zygote.reap(self.pid)
            except ZygoteDied:
                self.returncode = -1
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _alive(pid: int) -> bool:
    """Running (not exited, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class ForkedKernelManager(AsyncKernelManager):
    """Launches ipykernel kernels through `zygote` (set it before use)."""
    zygote = None

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.zygote is None or not any("ipykernel" in part for part in kernel_cmd):
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        cwd = str(kw.get("cwd") or os.getcwd())
        pid = self.zygote.spawn(self.connection_file, cwd, dict(kw.get("env") or os.environ))
        provisioner = self.provisioner
        provisioner.process = ForkedKernel(pid, self.zygote)
        provisioner.pid = provisioner.pgid = pid
        provisioner.cwd = cwd
        self._reconcile_connection_info(provisioner.connection_info)
