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
directory (no source/, no gradebook.db), no other student, no home directory, no network. The
working copy is a tmpfs of `Limits.disk_bytes`, filled and emptied by graders.isolation.handover:
nothing in a sandbox writes to the grader's disk. The limits themselves: graders.isolation.limiters.
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from graders import data
from graders.isolation import handover, watchdog
from graders.isolation.boot import PACKAGE, PACKAGE_INSIDE, python_module
from graders.isolation.limiters import Cgroup, SandboxUnavailable, Watchdog  # noqa: F401 (SandboxUnavailable: this module's API)

SANDBOX_USER = "onions-sandbox"
REPORT_FD = "ONIONS_REPORT_FD"  # the environment variable that names the command's private report line
SETUP_HINT = "run scripts/setup as root to install it, or pass --no-sandbox to grade without a sandbox"
USERNS_HINT = ("ask an administrator to allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
               "Debian's kernel.unprivileged_userns_clone=1; Ubuntu 24.04's kernel.apparmor_restrict_unprivileged_userns=0 "
               "or an AppArmor profile for bwrap), or pass --no-sandbox")


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 900
    memory_bytes: int = 4 << 30
    processes: int = 512
    file_bytes: int = 256 << 20
    disk_bytes: int = 512 << 20  # all a sandbox's /submission holds (graders.isolation.handover)

    def describe(self) -> str:
        return (f"memory {self.memory_bytes / (1 << 30):g} GiB, {self.processes} processes and threads, "
                f"files {self.file_bytes >> 20} MB, disk {self.disk_bytes >> 20} MB, {self.wall_seconds:g} s per notebook")


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
    report: list = field(default_factory=list)  # JSON objects the command wrote to $ONIONS_REPORT_FD
    refused: list = field(default_factory=list)  # what of the outputs handed back was not written (graders.isolation.handover)


def format_size(size: int) -> str:
    """Bytes -> the shortest exact '4G', '512M', '1024' that parse_size reads back."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


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
SUBMISSION = "/submission"  # the working copy: a tmpfs of the disk quota, the student's folder unpacked into it
# Copies of datasets, with their test labels, that a shown folder may hold: Debian's dataset-*
# packages, and the caches of keras, pip and this package (graders.data) wherever they are
SHOWN_TOPS = tuple(f"/{top}" for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"))  # host folders shown as they are
DATASET_FOLDERS = ("/usr/share/datasets", "/usr/local/share/datasets")
CACHE_VARIABLES = ("KERAS_HOME", "XDG_CACHE_HOME", "PIP_CACHE_DIR", data.CACHE_DIR_ENV, "TFDS_DATA_DIR", "HF_HOME")


def hidden_folders(shown: list) -> list:
    """The dataset folders inside `shown` (host folders shown at their own path), hidden by an
    empty read-only tmpfs: the sandbox must hold no copy of a test set's labels (only the
    students' view at /data)."""
    home = Path.home()
    candidates = [*DATASET_FOLDERS, home / ".keras", home / ".cache", *(os.environ.get(v) for v in CACHE_VARIABLES)]
    found = []
    for candidate in filter(None, candidates):
        path = os.path.realpath(candidate)
        inside = any(path.startswith(root.rstrip("/") + "/") for root in shown)
        holds_shown = any((root + "/").startswith(path.rstrip("/") + "/") for root in shown)
        if inside and not holds_shown and os.path.isdir(path) and path not in found:
            found.append(path)
    return sorted(found)


def bwrap_command(argv: list, workdir: Path, data_dir: Path, env: dict, files: dict = None,
                  user_namespace: bool = None, tmpfs_bytes: int = 4 << 30, disk_bytes: int = 512 << 20) -> list:
    """The bubblewrap command line that runs `argv` in /submission, a tmpfs of `disk_bytes` into
    which graders.inside.handin unpacks `workdir`'s files (none of the grader's disk is writable).

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
    made, shown = set(), list(SHOWN_TOPS)
    for path in [*_python_paths(), PACKAGE_INSIDE]:
        for parent in reversed(Path(path).parents[:-1]):  # bwrap would make them 0700 when run as root
            if str(parent) not in made:
                made.add(str(parent))
                command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind", str(PACKAGE) if path == PACKAGE_INSIDE else path, path]
        shown += [] if path == PACKAGE_INSIDE else [path]
    for folder in hidden_folders(shown):
        command += ["--perms", "0555", "--tmpfs", folder, "--remount-ro", folder]
    command += ["--ro-bind", str(data_dir), "/data", "--perms", "1777", "--size", str(disk_bytes), "--tmpfs", SUBMISSION,
                "--chdir", SUBMISSION,
                "--remount-ro", "/dev", "--remount-ro", "/"]
    for key, value in {**env, "HOME": "/tmp", data.CACHE_DIR_ENV: "/data", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}.items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


def _python_paths() -> list:
    """The interpreter and the virtualenv."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    return sorted(p for p in paths if not p.startswith("/usr/") and p != "/usr")


# -- the three ways --------------------------------------------------------------------------

class Isolation:
    """How student code runs: `describe` for the batch header, `check` before anything runs, `run`."""
    name = ""
    pid_namespace = True  # student code runs in a pid namespace of its own, where all its uid's processes are its
    package_folder = str(Path(PACKAGE_INSIDE).parent)  # where the student's side finds this package

    copies = True  # the workdir goes in and the outputs come back as tar streams (graders.isolation.handover)

    def python_module(self, module: str, *args) -> list:
        """The command line that runs `module` of this package on the student's side (in a sandbox,
        after graders.inside.handin has unpacked the working copy)."""
        if self.copies:
            return python_module("graders.inside.handin", module, *args, folder=self.package_folder)
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

        The command gets a private line back, the descriptor $ONIONS_REPORT_FD, for JSON objects
        (one per line): unlike its stdout, it must not pass it on to the code it runs. In a sandbox
        (`copies`), the workdir's files go in on stdin and the outputs come back on $ONIONS_OUTPUT_FD."""
        workdir = Path(workdir)
        limiter = self.limiter(limits)
        report_read, report_write = os.pipe()
        output_read, output_write = os.pipe() if self.copies else (None, None)
        env = {**env, REPORT_FD: str(report_write), **({handover.OUTPUT_FD: str(output_write)} if self.copies else {})}
        command, child_env = self.command(argv, workdir, limits, data_dir, env, files or {})
        shell = limiter.prefix() + f"exec prlimit --fsize={limits.file_bytes} --core=0 -- \"$@\""
        started = time.monotonic()
        try:
            process = subprocess.Popen(["sh", "-c", shell, "sh", *command], cwd=workdir, env=child_env,
                                       stdin=subprocess.PIPE if self.copies else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                       pass_fds=(report_write,) + ((output_write,) if self.copies else ()))
        except BaseException:
            for descriptor in (report_read, output_read):
                if descriptor is not None:
                    os.close(descriptor)
            limiter.remove()
            raise
        finally:
            for descriptor in (report_write, output_write):
                if descriptor is not None:
                    os.close(descriptor)
        reports, refused = [], []
        readers = [threading.Thread(target=handover.read_report, args=(report_read, reports), daemon=True)]
        if self.copies:
            readers += [threading.Thread(target=handover.send, args=(workdir, process.stdin), daemon=True),
                        threading.Thread(target=handover.receive, daemon=True,
                                         args=(output_read, workdir, limits.disk_bytes, limits.file_bytes, refused))]
        for reader in readers:
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
        for reader in readers:
            reader.join(timeout=5)
        outcome.report, outcome.refused = list(reports), list(refused)
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
            return Cgroup.make(limits.memory_bytes, limits.processes)
        except SandboxUnavailable:  # root in a container without cgroups of its own
            return Watchdog(limits.memory_bytes, limits.processes, tmpfs=(*TMPFS, SUBMISSION))

    def command(self, argv, workdir, limits, data_dir, env, files):
        user = pwd.getpwnam(SANDBOX_USER)
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]
        command = bwrap_command(argv, workdir, data_dir, env, files, user_namespace=False, tmpfs_bytes=limits.memory_bytes,
                                 disk_bytes=limits.disk_bytes)
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
        return Watchdog(limits.memory_bytes, limits.processes, tmpfs=(*TMPFS, SUBMISSION))

    def limiter_kind(self) -> str:
        return (f"RLIMIT_NPROC in the namespace (processes and threads, kernel-enforced), "
                f"a watchdog every {watchdog.INTERVAL:g} s (memory)")

    def command(self, argv, workdir, limits, data_dir, env, files):
        # set inside the namespace, where the kernel counts only the sandbox's processes
        argv = ["prlimit", f"--nproc={limits.processes}", "--", *argv]
        command = bwrap_command(argv, workdir, data_dir, env, files, user_namespace=True, tmpfs_bytes=limits.memory_bytes,
                                 disk_bytes=limits.disk_bytes)
        return command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class NoSandbox(Isolation):
    name = "NOT sandboxed (--no-sandbox): student code as you, with your files and the network"
    pid_namespace = False
    copies = False  # the runner works in the grader's folder itself
    package_folder = str(PACKAGE.parent)

    def limiter(self, limits: Limits):
        try:
            return Cgroup.make(limits.memory_bytes, limits.processes)
        except SandboxUnavailable:
            return Watchdog(limits.memory_bytes, limits.processes)

    def command(self, argv, workdir, limits, data_dir, env, files):
        # a folder the sandbox would show a file in is, here, the folder the file is in
        shown = {str(Path(inside).parent): str(Path(host).parent) for inside, host in files.items()}
        env = {key: shown.get(value, value) for key, value in env.items()}
        return argv, {**os.environ, **env, data.CACHE_DIR_ENV: str(data_dir)}


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
