"""Run one command in a sandbox with limits, three ways behind one interface (`choose`):

- `RootSandbox` (the grader is root): bubblewrap; student code runs as the unprivileged user
  onions-sandbox; a cgroup caps memory (tmpfs included) and processes, enforced by the kernel.
- `UserNamespaceSandbox` (an ordinary grader): bubblewrap in a user namespace; student code runs
  as the grader's uid without any capability; RLIMIT_NPROC inside the namespace caps processes
  and threads (the kernel counts only the sandbox's), a `Watchdog` polling every 0.1 s kills the
  sandbox over the memory limit (RLIMIT_DATA per process stops a single fast allocation).
- `NoSandbox` (--no-sandbox): no bubblewrap, for trusted code; a cgroup if one can be made, else
  the watchdog.
Both sandboxes show the same view: /usr, /etc, the Python installation and virtualenv, the
students' view of the data cache at /data (graders.data: no grading label) and the student's working copy at /submission: no course
directory (no source/, no gradebook.db), no other student, no home directory, no network.
"""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from graders.isolation import watchdog
from graders.isolation.watchdog import kill_until_gone

SANDBOX_USER = "onions-sandbox"
REPORT_FD = "GRADERS_REPORT_FD"  # the environment variable that names the command's private report line
SETUP_HINT = "run scripts/setup as root to install it, or pass --no-sandbox to grade without a sandbox"
USERNS_HINT = ("ask an administrator to allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
               "Debian's kernel.unprivileged_userns_clone=1; Ubuntu 24.04's kernel.apparmor_restrict_unprivileged_userns=0 "
               "or an AppArmor profile for bwrap), or pass --no-sandbox")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up: grading refuses to run unsandboxed unless told to."""


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 900
    memory_bytes: int = 4 << 30
    processes: int = 512
    file_bytes: int = 256 << 20

    def describe(self) -> str:
        return (f"memory {self.memory_bytes / (1 << 30):g} GiB, {self.processes} processes and threads, "
                f"files {self.file_bytes >> 20} MB, {self.wall_seconds:g} s per notebook")


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
    report: list = field(default_factory=list)  # JSON objects the command wrote to $GRADERS_REPORT_FD


def parse_size(text: str) -> int:
    """'4G', '512M', '1024' (bytes) -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except OverflowError:  # "infG", "1e400G"
        raise ValueError(f"{text!r} is not a size") from None


# -- limits: a cgroup (root), or a watchdog ----------------------------------------------------

class Cgroup:
    """One cgroup (v2, or the memory and pids hierarchies of v1) capping memory and processes."""
    kind = "cgroup"

    def __init__(self, memory_bytes: int, processes: int):
        name = f"onions-{os.getpid()}-{uuid.uuid4().hex[:12]}"  # its maker's pid: see sweep
        self.dirs = {}
        if Path("/sys/fs/cgroup/cgroup.controllers").is_file():  # v2, under the root cgroup
            self.version = 2
            self.dirs = {"memory": Path("/sys/fs/cgroup") / name}
            self.dirs["pids"] = self.dirs["cpuacct"] = self.dirs["memory"]
        else:
            self.version = 1
            for controller in ("memory", "pids", "cpuacct"):
                self.dirs[controller] = _v1_root(controller) / name
        self.sweep({folder.parent for folder in self.dirs.values()})
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
            raise SandboxUnavailable(f"cannot create a cgroup for memory and process limits ({error})") from None

    def _write(self, controller, filename, value, required=True):
        try:
            (self.dirs[controller] / filename).write_text(f"{value}\n")
        except OSError:
            if required:
                raise

    def prefix(self) -> str:
        """Shell commands that move the sandbox's first process into the cgroup."""
        return "".join(f"echo $$ > {folder / 'cgroup.procs'}; " for folder in dict.fromkeys(self.dirs.values()))

    def watch(self, process) -> None:
        """Nothing to watch: the kernel enforces the limits."""

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

    def cpu_seconds(self, rusage) -> float:
        if self.version == 2:
            stat = dict(line.split() for line in _read(self.dirs["cpuacct"] / "cpu.stat").splitlines() if line)
            return int(stat.get("usage_usec", 0)) / 1e6
        return int(_read(self.dirs["cpuacct"] / "cpuacct.usage") or 0) / 1e9

    def kill_all(self) -> None:
        kill_until_gone(lambda: {int(p) for folder in dict.fromkeys(self.dirs.values())
                                 for p in _read(folder / "cgroup.procs").split()})

    @staticmethod
    def sweep(parents) -> None:
        """Remove the cgroups (and kill what is left in them) of graders that died without
        removing theirs: a cluster worker killed with its students, say."""
        for parent in parents:
            for folder in parent.glob("onions-*-*"):
                maker = folder.name.split("-")[1]
                if maker.isdigit() and not _alive(int(maker)):
                    leftover = Cgroup.__new__(Cgroup)
                    leftover.dirs = {"memory": folder}
                    leftover.remove()

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


class Watchdog:
    """Limits without cgroups: graders.isolation.watchdog, in a process of its own, kills the sandbox over
    the memory limit and counts its tasks (see there); RLIMIT_DATA stops one process at 1.25x."""
    kind = "watchdog"
    # the share of the cap that counts as reaching it: the kernel refuses forks at the cap, but a
    # fork bomb of kernels is seen at 395 to 502 of 512 tasks (its children die as fast as they
    # start), where a TensorFlow notebook needs about 25; a run that really holds half the cap
    # is called "too many processes" here and graded under a cgroup (docs/security.md)
    NEAR_CAP = 0.5

    def __init__(self, memory_bytes: int, processes: int, tmpfs=()):
        self.memory_bytes, self.processes, self.tmpfs = memory_bytes, processes, tmpfs
        self.root, self.watcher, self.seen = None, None, None

    def prefix(self) -> str:
        """Each process may hold at most the memory limit and a quarter in data (the hard stop
        for one process allocating faster than the watchdog looks)."""
        return f"ulimit -d {self.memory_bytes * 5 // 4 // 1024}; "

    def watch(self, process) -> None:
        self.root = process.pid
        self.watcher = subprocess.Popen(
            python_module("graders.isolation.watchdog", str(process.pid), str(self.memory_bytes), str(self.processes), *self.tmpfs),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    def _seen(self) -> dict:
        """What the watchdog saw, once the sandbox is gone (it ends then)."""
        if self.seen is None:
            self.seen = {}
            if self.watcher:
                try:
                    output, _ = self.watcher.communicate(timeout=30)
                    self.seen = json.loads(output.strip().splitlines()[-1])
                except (subprocess.TimeoutExpired, ValueError, IndexError):
                    self.watcher.kill()
                    self.watcher.communicate()
        return self.seen

    def oom_killed(self) -> bool:
        return self._seen().get("over_memory", False)

    def process_limit_hit(self) -> bool:
        return self._seen().get("most_tasks", 0) >= self.NEAR_CAP * self.processes

    def peak_memory(self) -> int:
        return self._seen().get("peak_memory_bytes", 0)

    def cpu_seconds(self, rusage) -> float:
        """CPU of the sandbox's processes (each with the children it reaped) at the last look, or as
        reported by the first process when it ends (bubblewrap does not pass its children's on)."""
        return max(self._seen().get("cpu_seconds", 0.0), rusage.ru_utime + rusage.ru_stime if rusage else 0.0)

    def tree(self) -> list:
        return watchdog.tree(self.root) if self.root else []

    def kill_all(self) -> None:
        if self.root:
            watchdog.kill_tree(self.root)

    def remove(self) -> None:
        if self.watcher and self.watcher.poll() is None:
            self.watcher.terminate()
        self._seen()


def _v1_root(controller: str) -> Path:
    """Where this process's own v1 cgroup for `controller` is: new cgroups nest inside it."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise SandboxUnavailable(f"no cgroup {controller} controller on this machine")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# -- the view: bubblewrap ----------------------------------------------------------------------

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


TMPFS = ("/tmp", "/dev/shm")  # the sandbox's writable memory-backed folders


def bwrap_command(argv: list, workdir: Path, data_dir: Path, env: dict, files: dict = None,
                  user_namespace: bool = None, tmpfs_bytes: int = 4 << 30) -> list:
    """The bubblewrap command line that runs `argv` in `workdir` (seen as /submission).

    `files` ({path inside: host path}) are shown read-only, in directories anyone may write.
    The root, /dev and everything else outside /submission and the tmpfs folders is read-only.
    In a user namespace (the grader is not root), no further namespace may be made inside.
    """
    if user_namespace is None:
        user_namespace = os.geteuid() != 0
    command = ["bwrap", "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup-try", "--clearenv"]
    if user_namespace:
        command += ["--unshare-user", "--disable-userns"]
    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            command += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            command += ["--ro-bind", str(host), str(host)]
    command += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev"]
    for folder in TMPFS:
        command += ["--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", folder]
    for inside, host in (files or {}).items():
        command += ["--perms", "1777", "--dir", str(Path(inside).parent), "--ro-bind", str(host), inside]
    made = set()
    for path in [*_python_paths(), PACKAGE_INSIDE]:
        for parent in reversed(Path(path).parents[:-1]):  # bwrap would make them 0700 when run as root
            if str(parent) not in made:
                made.add(str(parent))
                command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind", str(PACKAGE) if path == PACKAGE_INSIDE else path, path]
    command += ["--ro-bind", str(data_dir), "/data", "--bind", str(workdir), "/submission", "--chdir", "/submission",
                "--remount-ro", "/dev", "--remount-ro", "/"]
    for key, value in {**env, "HOME": "/tmp", "ONIONS_DATA_DIR": "/data", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}.items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


def _python_paths() -> list:
    """The interpreter and the virtualenv."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    return sorted(p for p in paths if not p.startswith("/usr/") and p != "/usr")


PACKAGE = Path(__file__).resolve().parents[1]  # the graders package, as the grader imported it (an editable install: its source)
PACKAGE_INSIDE = "/opt/onions/graders"  # where a sandbox shows it: not at its own path, which may be in the course


def python_module(module: str, *args, folder: str = str(PACKAGE.parent)) -> list:
    """`python -m module args`, importing `module` from this very package (in `folder`) wherever
    it was installed from, never from the working directory (a student may hand in a `graders/`).
    The folder then stays last on sys.path, so that the kernels (forked from this process)
    import the same package when a notebook does (`from graders.data import ...`)."""
    boot = ("import importlib, sys; folder = sys.argv.pop(1); sys.path.insert(0, folder); "
            "module = importlib.import_module(sys.argv.pop(1)); sys.path.remove(folder); sys.path.append(folder); "
            "sys.exit(module.main())")
    return [sys.executable, "-I", "-c", boot, folder, module, *args]


# -- the three ways --------------------------------------------------------------------------

class Isolation:
    """How student code runs: `describe` for the batch header, `check` before anything runs, `run`."""
    name = ""
    pid_namespace = True  # student code runs in a pid namespace of its own, where all its uid's processes are its
    package_folder = str(Path(PACKAGE_INSIDE).parent)  # where the student's side finds this package

    def python_module(self, module: str, *args) -> list:
        """The command line that runs `module` of this package on the student's side."""
        return python_module(module, *args, folder=self.package_folder)

    def describe(self, limits: Limits) -> str:
        return f"{self.name}; limits by {self.limiter_kind()}: {limits.describe()}"

    def check(self) -> None:
        """Fail closed, with the fix, when this way cannot work here."""

    def limiter(self, limits: Limits):
        return Watchdog(limits.memory_bytes, limits.processes)

    def limiter_kind(self) -> str:
        try:
            limiter = self.limiter(Limits(memory_bytes=64 << 20, processes=16))
        except SandboxUnavailable as error:
            return f"nothing ({error})"
        limiter.remove()
        return "a cgroup (kernel-enforced)" if limiter.kind == "cgroup" else (
            f"a watchdog every {watchdog.INTERVAL:g} s (memory) and rlimits")

    def command(self, argv: list, workdir: Path, limits: Limits, data_dir: Path, env: dict, files: dict):
        """(command line, environment) that runs `argv`."""
        raise NotImplementedError

    def run(self, argv: list, workdir: Path, limits: Limits, data_dir: Path, env: dict, files: dict = None) -> Outcome:
        """Run `argv` with cwd `workdir` within `limits`; file size and wall time are capped in every way.

        The command gets a private line back, the descriptor $GRADERS_REPORT_FD, for JSON objects
        (one per line): unlike its stdout, it must not pass it on to the code it runs."""
        workdir = Path(workdir)
        limiter = self.limiter(limits)
        report_read, report_write = os.pipe()
        env = {**env, REPORT_FD: str(report_write)}
        command, child_env = self.command(argv, workdir, limits, data_dir, env, files or {})
        shell = limiter.prefix() + f"exec prlimit --fsize={limits.file_bytes} --core=0 -- \"$@\""
        started = time.monotonic()
        try:
            process = subprocess.Popen(["sh", "-c", shell, "sh", *command], cwd=workdir, env=child_env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       start_new_session=True, pass_fds=(report_write,))
        except BaseException:
            os.close(report_read)
            limiter.remove()
            raise
        finally:
            os.close(report_write)
        reports = []
        reader = threading.Thread(target=_read_report, args=(report_read, reports), daemon=True)
        reader.start()
        _running[process.pid] = (process, limiter, threading.get_ident())
        try:
            limiter.watch(process)
            returncode, rusage, timed_out, output = _wait(process, limiter, started + limits.wall_seconds)
        except BaseException:
            _kill(process, limiter)
            limiter.remove()
            raise
        finally:
            _running.pop(process.pid, None)
        outcome = Outcome(
            returncode=returncode, timed_out=timed_out, oom_killed=limiter.oom_killed(),
            process_limit_hit=limiter.process_limit_hit(), wall_seconds=time.monotonic() - started,
            cpu_seconds=limiter.cpu_seconds(rusage), peak_memory_bytes=limiter.peak_memory(),
            output=output.decode("utf-8", "replace")[-20000:])
        reader.join(timeout=5)
        outcome.report = list(reports)
        limiter.remove()
        return outcome


class RootSandbox(Isolation):
    name = f"sandboxed: bubblewrap, student code as the user {SANDBOX_USER}"

    def check(self) -> None:
        if not shutil.which("bwrap"):
            raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {SETUP_HINT}")
        try:
            pwd.getpwnam(SANDBOX_USER)
        except KeyError:
            raise SandboxUnavailable(f"the sandbox user {SANDBOX_USER} does not exist: {SETUP_HINT}") from None
        if not shutil.which("setpriv"):
            raise SandboxUnavailable(f"setpriv (util-linux) is missing: {SETUP_HINT}")

    def limiter(self, limits: Limits):
        try:
            return Cgroup(limits.memory_bytes, limits.processes)
        except SandboxUnavailable:  # root in a container without cgroups of its own
            return Watchdog(limits.memory_bytes, limits.processes, tmpfs=TMPFS)

    def command(self, argv, workdir, limits, data_dir, env, files):
        user = pwd.getpwnam(SANDBOX_USER)
        for path in [workdir, *workdir.rglob("*")]:  # the sandbox user may write its working copy, nothing else
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]
        command = bwrap_command(argv, workdir, data_dir, env, files, user_namespace=False, tmpfs_bytes=limits.memory_bytes)
        return command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class UserNamespaceSandbox(Isolation):
    name = "sandboxed: bubblewrap in a user namespace, student code as you without capabilities"

    def check(self) -> None:
        if not shutil.which("bwrap"):
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed: ask an administrator to install it "
                                     "(apt-get install bubblewrap), or pass --no-sandbox")
        probe = subprocess.run(["bwrap", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "true"],
                               capture_output=True, text=True)
        if probe.returncode:
            said = probe.stderr.strip().splitlines()[-1:] or [f"exit status {probe.returncode}"]
            raise SandboxUnavailable(f"bubblewrap cannot make a user namespace here ({said[0]}): {USERNS_HINT}")

    def limiter(self, limits: Limits):
        return Watchdog(limits.memory_bytes, limits.processes, tmpfs=TMPFS)

    def limiter_kind(self) -> str:
        return (f"RLIMIT_NPROC in the namespace (processes and threads, kernel-enforced), "
                f"a watchdog every {watchdog.INTERVAL:g} s (memory)")

    def command(self, argv, workdir, limits, data_dir, env, files):
        # set inside the namespace, where the kernel counts only the sandbox's processes
        argv = ["prlimit", f"--nproc={limits.processes}", "--", *argv]
        command = bwrap_command(argv, workdir, data_dir, env, files, user_namespace=True, tmpfs_bytes=limits.memory_bytes)
        return command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class NoSandbox(Isolation):
    name = "NOT sandboxed (--no-sandbox): student code as you, with your files and the network"
    pid_namespace = False
    package_folder = str(PACKAGE.parent)

    def limiter(self, limits: Limits):
        try:
            return Cgroup(limits.memory_bytes, limits.processes)
        except SandboxUnavailable:
            return Watchdog(limits.memory_bytes, limits.processes)

    def command(self, argv, workdir, limits, data_dir, env, files):
        # a folder the sandbox would show a file in is, here, the folder the file is in
        shown = {str(Path(inside).parent): str(Path(host).parent) for inside, host in files.items()}
        env = {key: shown.get(value, value) for key, value in env.items()}
        return argv, {**os.environ, **env, "ONIONS_DATA_DIR": str(data_dir)}


def choose(sandbox: bool = True) -> Isolation:
    """The way this grader can isolate student code: root gets the sandbox user and cgroups."""
    if not sandbox:
        return NoSandbox()
    return RootSandbox() if os.geteuid() == 0 else UserNamespaceSandbox()


def _wait(process: subprocess.Popen, limiter, deadline: float):
    """Wait for the run to end or the deadline; (exit status, rusage, timed out, output)."""
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(process.stdout.read()), daemon=True)
    reader.start()
    timed_out = False
    while True:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            _kill(process, limiter)
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    process.stdout.close()
    return process.returncode, rusage, timed_out, b"".join(chunks)


def _read_report(descriptor: int, reports: list) -> None:
    """Collect the JSON objects of the private report line (at most 1 MB, the rest is dropped)."""
    size = 0
    with os.fdopen(descriptor, "rb") as stream:
        for line in stream:
            size += len(line)
            if size > 1 << 20:
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                reports.append(item)


_running = {}  # pid -> (process, limiter, thread) of every run in progress, for kill_running


def kill_running(threads=None) -> None:
    """Stop every sandboxed run in progress, or those started by `threads` (on Ctrl-C: the
    workers' threads cannot be interrupted)."""
    for process, limiter, thread in list(_running.values()):
        if threads is None or thread in threads:
            _kill(process, limiter)


def _kill(process: subprocess.Popen, limiter) -> None:
    limiter.kill_all()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
