"""Run one command in a sandbox with limits: bubblewrap for what it can see, cgroups for what it can use.

The sandboxed command sees the system (/usr, /etc), the Python installation and virtualenv,
the read-only data cache at /data and its own working copy at /submission: no course
directory (no source/, no gradebook.db), no other student, no home directory, no network.
It runs as an unprivileged uid: the sandbox user when the grader is root (root inside a
sandbox could unmount what hides the course), the grader's own uid otherwise. Memory and
process count are capped by a cgroup of its own, file size by an rlimit, wall time here.
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SANDBOX_USER = "onions-sandbox"
SETUP_HINT = "run scripts/setup as root to install it, or pass --no-sandbox to grade without a sandbox"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up: grading refuses to run unsandboxed unless told to."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 900
    memory_bytes: int = 4 << 30
    processes: int = 512
    file_bytes: int = 256 << 20


@dataclass
class Outcome:
    """How one sandboxed run ended."""
    returncode: int
    timed_out: bool
    oom_killed: bool
    process_limit_hit: bool  # a fork (or a new thread) was refused: the process cap was reached
    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int
    output: str  # the command's stdout and stderr, last 20,000 characters


def parse_size(text: str) -> int:
    """'4G', '512M', '1024' (bytes) -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class Cgroup:
    """One cgroup (v2, or the memory and pids hierarchies of v1) capping memory and processes."""

    def __init__(self, memory_bytes: int, processes: int):
        name = f"onions-{uuid.uuid4().hex[:12]}"
        self.dirs = {}
        if Path("/sys/fs/cgroup/cgroup.controllers").is_file():  # v2, under the root cgroup
            self.version = 2
            self.dirs = {"memory": Path("/sys/fs/cgroup") / name}
            self.dirs["pids"] = self.dirs["cpuacct"] = self.dirs["memory"]
        else:
            self.version = 1
            for controller in ("memory", "pids", "cpuacct"):
                self.dirs[controller] = _v1_root(controller) / name
        try:
            for folder in set(self.dirs.values()):
                folder.mkdir()
            if self.version == 2:
                self._write("memory", "memory.max", memory_bytes)
                self._write("memory", "memory.swap.max", 0, required=False)
                self._write("pids", "pids.max", processes)
            else:
                self._write("memory", "memory.limit_in_bytes", memory_bytes)
                self._write("memory", "memory.memsw.limit_in_bytes", memory_bytes, required=False)
                self._write("pids", "pids.max", processes)
        except OSError as error:
            self.remove()
            raise SandboxUnavailable(f"cannot create a cgroup for memory and process limits ({error}): "
                                     "run as root, or pass --no-sandbox") from None

    def _write(self, controller, filename, value, required=True):
        try:
            (self.dirs[controller] / filename).write_text(f"{value}\n")
        except OSError:
            if required:
                raise

    def procs_files(self) -> list:
        return [str(folder / "cgroup.procs") for folder in dict.fromkeys(self.dirs.values())]

    def oom_killed(self) -> bool:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        text = _read(self.dirs["memory"] / name)
        return any(line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in text.splitlines())

    def process_limit_hit(self) -> bool:
        text = _read(self.dirs["pids"] / "pids.events")
        return any(line.split()[:1] == ["max"] and line.split()[1] != "0" for line in text.splitlines())

    def peak_memory(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return int(_read(self.dirs["memory"] / name) or 0)

    def cpu_seconds(self) -> float:
        if self.version == 2:
            stat = dict(line.split() for line in _read(self.dirs["cpuacct"] / "cpu.stat").splitlines() if line)
            return int(stat.get("usage_usec", 0)) / 1e6
        return int(_read(self.dirs["cpuacct"] / "cpuacct.usage") or 0) / 1e9

    def kill_all(self) -> None:
        kill_until_gone(lambda: {int(p) for f in self.procs_files() for p in _read(Path(f)).split()})

    def remove(self) -> None:
        if all(folder.exists() for folder in self.dirs.values()):
            self.kill_all()
        for folder in dict.fromkeys(self.dirs.values()):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def kill_until_gone(list_pids, attempts: int = 50, pause: float = 0.05) -> None:
    """SIGKILL what `list_pids()` returns until it returns nothing (a fork bomb keeps adding)."""
    for _ in range(attempts):
        pids = list_pids()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(pause)


def _v1_root(controller: str) -> Path:
    """Where this process's own v1 cgroup for `controller` is: new cgroups nest inside it."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise SandboxUnavailable(f"no cgroup {controller} controller on this machine: pass --no-sandbox")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def check() -> None:
    """Fail closed, with the fix, when the sandbox cannot work here."""
    if not shutil.which("bwrap"):
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {SETUP_HINT}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SANDBOX_USER)
        except KeyError:
            raise SandboxUnavailable(f"the sandbox user {SANDBOX_USER} does not exist: {SETUP_HINT}") from None
        if not shutil.which("setpriv"):
            raise SandboxUnavailable(f"setpriv (util-linux) is missing: {SETUP_HINT}")
    Cgroup(64 << 20, 16).remove()


def font_list(folder: Path):
    """matplotlib's font list, built once in `folder`, for the sandboxes to read; None if it fails.

    keras imports matplotlib, which rebuilds its font list in a new config directory: 0.45
    CPU-seconds in each sandbox (a new /tmp each), 5% of a class's grading time on 2 cores.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env={**os.environ, "MPLCONFIGDIR": str(folder)},
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    built = sorted(folder.glob("fontlist-*.json"))
    return built[-1] if built else None


def bwrap_command(argv: list, workdir: Path, data_dir: Path, env: dict, files: dict = None) -> list:
    """The bubblewrap command line that runs `argv` in `workdir` (seen as /submission).

    `files` ({path inside: host path}) are shown read-only, in directories anyone may write.
    """
    command = ["bwrap", "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup-try", "--clearenv"]
    if os.geteuid() != 0:
        command.append("--unshare-user")
    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            command += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            command += ["--ro-bind", str(host), str(host)]
    command += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    for inside, host in (files or {}).items():
        command += ["--perms", "1777", "--dir", str(Path(inside).parent), "--ro-bind", str(host), inside]
    made = set()
    for path in _python_paths():
        for parent in reversed(Path(path).parents[:-1]):  # bwrap would make them 0700 when run as root
            if str(parent) not in made:
                made.add(str(parent))
                command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind", path, path]
    command += ["--ro-bind", str(data_dir), "/data", "--bind", str(workdir), "/submission", "--chdir", "/submission"]
    for key, value in {**env, "HOME": "/tmp", "ONIONS_DATA_DIR": "/data", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}.items():
        command += ["--setenv", key, value]
    if os.geteuid() == 0:
        user = pwd.getpwnam(SANDBOX_USER)
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]
    return command + ["--", *argv]


def _python_paths() -> list:
    """The interpreter, the virtualenv and this package (an editable install points at its source)."""
    package = Path(__file__).resolve().parent
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), str(package)}
    return sorted(p for p in paths if not p.startswith("/usr/") and p != "/usr")


def prepare_workdir(workdir: Path) -> None:
    """Let the sandbox user write its working copy (and nothing else)."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(SANDBOX_USER)
        for path in [workdir, *workdir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def run(argv: list, workdir: Path, limits: Limits, data_dir: Path, env: dict, sandbox: bool = True,
        files: dict = None) -> Outcome:
    """Run `argv` with cwd `workdir`, sandboxed unless told not to, within `limits`.

    Without the sandbox the limits still apply where a cgroup can be made (CPU time and peak
    memory are then measured too); the wall-time and file-size limits apply everywhere.
    """
    workdir = Path(workdir)
    try:
        cgroup = Cgroup(limits.memory_bytes, limits.processes)
    except SandboxUnavailable:
        if sandbox:
            raise
        cgroup = None
    limit_files = f"exec prlimit --fsize={limits.file_bytes} --core=0 -- \"$@\""
    joins = "".join(f"echo $$ > {f}; " for f in cgroup.procs_files()) if cgroup else ""
    if sandbox:
        prepare_workdir(workdir)
        argv = bwrap_command(argv, workdir, data_dir, env, files)
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        child_env = {**os.environ, **env, "ONIONS_DATA_DIR": str(data_dir)}
    command = ["sh", "-c", joins + limit_files, "sh", *argv]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=workdir, env=child_env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    _running[process.pid] = (process, cgroup)
    timed_out = False
    try:
        output, _ = process.communicate(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process, cgroup)
        output, _ = process.communicate()
    except BaseException:
        _kill(process, cgroup)
        if cgroup:
            cgroup.remove()
        raise
    finally:
        _running.pop(process.pid, None)
    outcome = Outcome(
        returncode=process.returncode, timed_out=timed_out, oom_killed=bool(cgroup and cgroup.oom_killed()),
        process_limit_hit=bool(cgroup and cgroup.process_limit_hit()),
        wall_seconds=time.monotonic() - started, cpu_seconds=cgroup.cpu_seconds() if cgroup else 0.0,
        peak_memory_bytes=cgroup.peak_memory() if cgroup else 0,
        output=output.decode("utf-8", "replace")[-20000:])
    if cgroup:
        cgroup.remove()
    return outcome


_running = {}  # pid -> (process, cgroup) of every run in progress, for kill_running


def kill_running() -> None:
    """Stop every sandboxed run in progress (on Ctrl-C: the workers' threads cannot be interrupted)."""
    for process, cgroup in list(_running.values()):
        _kill(process, cgroup)


def _kill(process: subprocess.Popen, cgroup) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if cgroup:
        cgroup.kill_all()
