"""Limits without cgroups, watched from a process of its own: python -m graders.isolation.watchdog.

Usage: python -m graders.isolation.watchdog PID MEMORY_BYTES [TMPFS_FOLDER ...]
Every INTERVAL seconds it sums the memory of process PID and its descendants (resident anonymous
and shared memory, plus what the sandbox's tmpfs folders hold) and counts their threads; over
MEMORY_BYTES it kills them all. The quick sum counts pages that a forked kernel shares
copy-on-write with its zygote once per process; over the limit, the proportional sum (each
shared page split between its sharers, as a cgroup counts it once) decides, so a fork bomb of
kernels is not taken for a memory hog. When no process is left it prints one JSON line: peak
memory, most tasks seen, whether it killed for memory, CPU seconds. A process of its own, because
a thread of the grader's main process (busy with nbgrader) would be starved of the GIL just when
a sandbox grows fast.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

from graders.files import read_or_empty as _read

INTERVAL = 0.1
TICK = 0.01  # between looks at the host's pid counter: a burst of new tasks is counted at once
BURST = 16  # new pids on the host within a tick that make the watchdog count the sandbox's tasks
BURST_TICK = 0.001  # between looks during a burst


class Watch:
    def __init__(self, root: int, memory_bytes: int, tmpfs=()):
        self.root, self.memory_bytes, self.tmpfs = root, memory_bytes, tmpfs
        self.peak, self.most_tasks, self.over_memory, self.cpu = 0, 0, False, 0.0
        self.stopped = False
        self.own_mounts = _mount_namespace("self")

    def run(self) -> None:
        """Memory and CPU every INTERVAL; the task count then too, and at once, every millisecond,
        while many tasks start (a fork bomb lives for milliseconds between the cap and the deaths
        it causes)."""
        last_pid, namespace_proc, threads, tick = _last_pid(), None, 0, TICK
        slow_at = time.monotonic()
        while not self.stopped:
            time.sleep(tick)
            pid = _last_pid()
            started, last_pid = (pid - last_pid) % PID_MAX, pid
            burst = namespace_proc and started >= max(2, BURST * tick / TICK)
            if burst:
                self.most_tasks = max(self.most_tasks, _namespace_processes(namespace_proc) + threads)
            tick = BURST_TICK if burst else TICK
            if time.monotonic() < slow_at:
                continue
            slow_at = time.monotonic() + INTERVAL
            pids = tree(self.root)
            if not pids:
                return
            inside = self._inside(pids)
            namespace_proc = f"/proc/{inside}/root/proc" if inside else None
            memory = sum(_resident_memory(pid) for pid in pids) + self._tmpfs_bytes(inside)
            if memory > self.memory_bytes:  # count pages shared copy-on-write once (slower: only now)
                memory = sum(_proportional_memory(pid) for pid in pids) + self._tmpfs_bytes(inside)
            self.peak = max(self.peak, memory)
            self.cpu = max(self.cpu, sum(_cpu_seconds(pid) for pid in pids))
            tasks = sum(_threads(pid) for pid in pids)
            threads = tasks - len(pids)  # beyond one a process: forked children start with one
            self.most_tasks = max(self.most_tasks, tasks)
            if memory > self.memory_bytes:
                self.over_memory = True
                kill_tree(self.root)
                return

    def _inside(self, pids):
        """The first process inside the sandbox's mount (and pid) namespace (bubblewrap's init: it lasts), if any."""
        return next((pid for pid in pids if _mount_namespace(pid) not in ("", self.own_mounts)), None)

    def _tmpfs_bytes(self, inside) -> int:
        """What the sandbox's own tmpfs folders hold (seen through a process in its mount namespace)."""
        used = 0
        for folder in self.tmpfs if inside else ():
            try:
                stat = os.statvfs(f"/proc/{inside}/root{folder}")
                used += (stat.f_blocks - stat.f_bfree) * stat.f_frsize
            except OSError:
                pass
        return used

    def result(self) -> dict:
        return {"peak_memory_bytes": self.peak, "most_tasks": self.most_tasks, "over_memory": self.over_memory,
                "cpu_seconds": self.cpu}


def tree(root: int) -> list:
    """The live processes of a sandbox: its first one and their descendants (orphans in
    bubblewrap's pid namespace are adopted by its init, a descendant too)."""
    found, todo = [], [root]
    while todo:  # breadth first: the sandbox's init comes before its descendants
        pid = todo.pop(0)
        if process_state(pid) in ("", "Z", "X"):
            continue
        found.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            todo.extend(int(child) for child in _read(Path(f"/proc/{pid}/task/{task}/children")).split())
    return found


def kill_tree(root: int) -> None:
    kill_until_gone(lambda: tree(root))


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


def _stat(pid) -> list:
    """The fields of /proc/PID/stat after the command's name (state first); [] if it is gone."""
    return _read(Path(f"/proc/{pid}/stat")).rpartition(")")[2].split()


def process_state(pid) -> str:
    """R, S, D, Z ... of a process; '' if it is gone."""
    return (_stat(pid) or [""])[0]


def _cpu_seconds(pid) -> float:
    """CPU time of a process and of the children it has reaped."""
    fields = _stat(pid)
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS if len(fields) > 14 else 0.0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _threads(pid) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _resident_memory(pid) -> int:
    """Resident anonymous and shared memory of one process, bytes (file-backed pages are reclaimable)."""
    fields = dict(line.split(":", 1) for line in _read(Path(f"/proc/{pid}/status")).splitlines() if ":" in line)
    return sum(int(fields.get(name, "0 kB").split()[0]) for name in ("RssAnon", "RssShmem")) * 1024


def _proportional_memory(pid) -> int:
    """Anonymous and shared memory of one process, each page divided among the processes sharing it."""
    fields = dict(line.split(":", 1) for line in _read(Path(f"/proc/{pid}/smaps_rollup")).splitlines() if ":" in line)
    names = ("Pss_Anon", "Pss_Shmem") if "Pss_Anon" in fields else ("Pss",)
    return sum(int(fields.get(name, "0 kB").split()[0]) for name in names) * 1024


PID_MAX = int(_read(Path("/proc/sys/kernel/pid_max")) or 1 << 22)


def _last_pid() -> int:
    """The last pid the host gave out: every task made in a sandbox takes one there too."""
    try:
        return int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    except (OSError, ValueError):
        return 0


def _namespace_processes(proc: str) -> int:
    """Processes (zombies too) in the pid namespace whose /proc is mounted at `proc`: one quick look."""
    try:
        return sum(name.isdigit() for name in os.listdir(proc))
    except OSError:
        return 0


def _mount_namespace(pid) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    watch = Watch(int(args[0]), int(args[1]), tuple(args[2:]))

    def stop(*_):
        watch.stopped = True

    signal.signal(signal.SIGTERM, stop)
    watch.run()
    print(json.dumps(watch.result()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
