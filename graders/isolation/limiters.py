"""Memory and process limits for one sandboxed run: a cgroup (the kernel enforces them), or a watchdog.

`Cgroup` (root, or wherever one can be made): memory (tmpfs included) and pids capped by the
kernel. `Watchdog` (an ordinary account): graders.isolation.watchdog in a process of its own
kills the sandbox over the memory limit and counts its tasks. graders.isolation.sandbox picks one
per way of isolating.
"""
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from graders.errors import GradersError
from graders.files import read_or_empty as _read
from graders.isolation import watchdog
from graders.isolation.boot import python_module
from graders.isolation.watchdog import kill_until_gone, process_state


class SandboxUnavailable(GradersError):
    """The sandbox cannot be set up: grading refuses to run unsandboxed unless told to."""


class Cgroup:
    """One cgroup capping memory (tmpfs included) and processes, made with `Cgroup.make`: the
    kernel's v2 hierarchy (`CgroupV2`) or v1's memory, pids and cpuacct ones (`CgroupV1`)."""
    kind = "cgroup"
    version = 0
    OOM_FILE = PEAK_FILE = ""  # the memory controller's files for "killed for memory" and the peak

    @staticmethod
    def make(memory_bytes: int, processes: int) -> "Cgroup":
        return Cgroup.here()(memory_bytes, processes)

    @staticmethod
    def here() -> type:
        """This machine's kind: the unified v2 hierarchy, or v1's."""
        return CgroupV2 if Path("/sys/fs/cgroup/cgroup.controllers").is_file() else CgroupV1

    def __init__(self, memory_bytes: int, processes: int):
        self.dirs = self.folders(f"onions-{os.getpid()}-{uuid.uuid4().hex[:12]}")  # its maker's pid: see sweep
        self.sweep(cgroup_parents())
        try:
            for folder in set(self.dirs.values()):
                folder.mkdir()
            self.set_limits(memory_bytes, processes)
        except OSError as error:
            self.remove()
            raise SandboxUnavailable(f"cannot create a cgroup for memory and process limits ({error})") from None

    @staticmethod
    def folders(name: str) -> dict:
        """{controller: the new cgroup's folder} for memory, pids and cpuacct."""
        raise NotImplementedError

    def set_limits(self, memory_bytes: int, processes: int) -> None:
        raise NotImplementedError

    def cpu_seconds(self, rusage) -> float:
        raise NotImplementedError

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
        return _counted(_read(self.dirs["memory"] / self.OOM_FILE), "oom_kill")

    def process_limit_hit(self) -> bool:
        return _counted(_read(self.dirs["pids"] / "pids.events"), "max")

    def peak_memory(self) -> int:
        return int(_read(self.dirs["memory"] / self.PEAK_FILE) or 0)

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
                if maker.isdigit() and not alive(int(maker)):
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


class CgroupV2(Cgroup):
    """One folder under the root of the unified hierarchy, all three controllers in it."""
    version = 2
    OOM_FILE, PEAK_FILE = "memory.events", "memory.peak"

    @staticmethod
    def folders(name: str) -> dict:
        folder = Path("/sys/fs/cgroup") / name
        return {"memory": folder, "pids": folder, "cpuacct": folder}

    def set_limits(self, memory_bytes: int, processes: int) -> None:
        self._write("memory", "memory.max", memory_bytes)
        self._write("memory", "memory.swap.max", 0, required=False)
        self._write("pids", "pids.max", processes)

    def cpu_seconds(self, rusage) -> float:
        stat = dict(line.split() for line in _read(self.dirs["cpuacct"] / "cpu.stat").splitlines() if line)
        return int(stat.get("usage_usec", 0)) / 1e6


class CgroupV1(Cgroup):
    """A folder in each v1 hierarchy, nested in this process's own cgroup there."""
    version = 1
    OOM_FILE, PEAK_FILE = "memory.oom_control", "memory.max_usage_in_bytes"

    @staticmethod
    def folders(name: str) -> dict:
        return {controller: _v1_root(controller) / name for controller in ("memory", "pids", "cpuacct")}

    def set_limits(self, memory_bytes: int, processes: int) -> None:
        self._write("memory", "memory.limit_in_bytes", memory_bytes)
        self._write("memory", "memory.memsw.limit_in_bytes", memory_bytes, required=False)
        self._write("pids", "pids.max", processes)

    def cpu_seconds(self, rusage) -> float:
        return int(_read(self.dirs["cpuacct"] / "cpuacct.usage") or 0) / 1e9


def _counted(events: str, name: str) -> bool:
    """Whether a cgroup events file (`NAME COUNT` lines) counts `name` at least once."""
    return any(line.split()[:1] == [name] and line.split()[1] != "0" for line in events.splitlines())


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
            python_module("graders.isolation.watchdog", str(process.pid), str(self.memory_bytes), *self.tmpfs),
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


def cgroup_parents() -> set:
    """The folders this process's cgroups go in (and the sweep looks in): a dead grader's cgroups
    elsewhere (another service's own cgroup) are that one's to sweep."""
    try:
        return {folder.parent for folder in Cgroup.here().folders("onions-probe").values()}
    except SandboxUnavailable:
        return set()


def alive(pid: int) -> bool:
    """Whether the maker of a cgroup can still remove it: a zombie (killed, its parent has not
    waited for it yet) cannot."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in ("", "Z", "X")




