"""Grading on many machines: each student's execution is one Dask distributed task.

Only execution moves. The main process (graders.grading.batch) still prepares with nbgrader, grades,
and alone writes the gradebook and the batch state; `DaskPool` has `LocalPool`'s interface. A
task carries the student's prepared files as bytes (the stage folder is the main process's),
runs `SandboxExecutor` on the worker and returns the `Execution` and the executed notebooks.
Dask reruns a task whose worker died (up to the scheduler's `allowed-failures`, 3 by default);
the main process takes each student's result once, as its future completes.

The prepared notebooks hold the hidden tests: the scheduler must be on the loopback or speak
TLS (`tls://`, with certificates), never plain TCP across machines. A worker offers a
resource named after its code and pins (`code_fingerprint`), and every task asks for the
client's, so a machine with other code never grades anyone.
"""
import collections
import functools
import hashlib
import importlib.metadata
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import uuid
from pathlib import Path

from graders import data
from graders.course import gradingsplit
from graders.course.status import Status
from graders.errors import GradersError
from graders.grading.executor import Execution, Job, SandboxExecutor
from graders.grading.settings import GradersBatch, font_files
from graders.inside import labelscan
from graders.isolation import sandbox
from graders.isolation.handover import SIDE_EFFECTS, plain_path

logger = logging.getLogger(__name__)

MEMORY = "MEMORY"  # a worker's resource: the bytes it gives to sandboxes; a task takes its --memory
CODE_KEY = "graders-code"  # the scheduler's metadata: the code of the latest batch's client
KERNEL_THREADS = "ONIONS_KERNEL_THREADS"  # set by `graders worker`: TensorFlow threads per student
SETUP_HINT = "docs/administrators.md, 'More than one machine'"


class ClusterError(GradersError):
    """One line: what is wrong with the cluster and how to fix it."""


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """What must be alike on the client and every worker, so a student is graded alike
    wherever: this package's source, the installed distributions and Python's version."""
    digest = hashlib.sha256(repr(sys.version_info[:2]).encode())
    for path in sorted(sandbox.PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(sandbox.PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    pins = sorted({f"{d.metadata['Name'].lower()}=={d.version}" for d in importlib.metadata.distributions()})
    digest.update("\n".join(pins).encode())
    return digest.hexdigest()[:16]


def code_resource() -> str:
    return f"graders-{code_fingerprint()}"


def scheduler_address(address: str = None, scheduler_file: Path = None) -> str:
    """The scheduler's address (given, or from Dask's scheduler file), refused when plain TCP
    would carry the hidden tests across the network."""
    if scheduler_file:
        try:
            address = json.loads(Path(scheduler_file).read_text())["address"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ClusterError(f"cannot read the scheduler's address from {scheduler_file} ({type(error).__name__}): "
                               "give the file `dask scheduler --scheduler-file` wrote") from None
    scheme, _, rest = address.rpartition("://")
    scheme = scheme or "tcp"
    if scheme == "tls":
        return address
    host = rest.rsplit(":", 1)[0].strip("[]")
    if scheme == "tcp" and _loopback(host):
        return address
    raise ClusterError(f"refusing {address}: plain {scheme}:// would carry the hidden tests unencrypted between machines; "
                       f"use tls:// with certificates ({SETUP_HINT}), or a scheduler on this machine (tcp://127.0.0.1:PORT)")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(ip.split("%")[0]).is_loopback for ip in found)


def tls_files(address: str, ca_file, cert, key) -> dict:
    """{option: path} of the TLS files a tls:// address needs; each must exist."""
    if not address.startswith("tls://"):
        return {}
    files = {"tls_ca_file": ca_file, "tls_cert": cert, "tls_key": key}
    if not all(files.values()):
        raise ClusterError(f"{address} needs --tls-ca-file, --tls-cert and --tls-key ({SETUP_HINT}: how to make them)")
    for path in files.values():
        if not Path(path).is_file():
            raise ClusterError(f"no TLS file at {path}: give the path of the certificate or key ({SETUP_HINT})")
    return {option: str(path) for option, path in files.items()}


def connect(address: str, tls: dict, timeout: float = 20):
    """A Dask client of the scheduler at `address`."""
    from distributed import Client
    from distributed.security import Security

    # its tracebacks on a lost scheduler: we say it in a line (Dask's config gives some child loggers levels of their own)
    for name in ["distributed", *(name for name in logging.root.manager.loggerDict if name.startswith("distributed."))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    security = Security(tls_ca_file=tls["tls_ca_file"], tls_client_cert=tls["tls_cert"], tls_client_key=tls["tls_key"],
                        require_encryption=True) if tls else Security()
    try:
        return Client(address, security=security, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({first(error)}): start it with "
                           f"`dask scheduler` ({SETUP_HINT}) and check the address") from None


def first(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


WINDOW = GradersBatch.cluster_window.default_value  # students sent to the scheduler at once (c.GradersBatch.cluster_window)


class DaskPool:
    """`LocalPool`'s interface on a Dask cluster: `add` submits a task per student, `finished`
    yields (job, execution) as tasks end, `stop` cancels them and kills their sandboxes."""

    def __init__(self, client, settings: dict, memory_bytes: int, window: int = WINDOW):
        """`window`: students on the cluster at once (sent, not yet yielded); more wait here."""
        self.client, self.settings, self.window = client, settings, window
        self.waiting = collections.deque()  # prepared, not yet sent
        self.token = uuid.uuid4().hex  # this batch's tasks, for stop_batch on the workers
        self.resources = {MEMORY: memory_bytes, code_resource(): 1}
        self.jobs = {}  # future -> job, until finished() yields it
        self.completed = None  # distributed.as_completed of the jobs' futures
        client.set_metadata(CODE_KEY, code_fingerprint())
        self._check_workers(memory_bytes)

    def _check_workers(self, memory_bytes: int) -> None:
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        mine = [w for w in workers if w.get("resources", {}).get(code_resource())]
        for worker in workers:
            if worker not in mine:
                logger.warning(f"worker {worker.get('name')} runs other code or pins: it grades no one "
                               "(update it: git pull; scripts/setup; restart it)")
        if workers and not mine:
            raise ClusterError(f"no worker runs this code ({code_fingerprint()}): update them (git pull; scripts/setup) "
                               "and restart them with python -m graders worker")
        offered = max((w["resources"].get(MEMORY, 0) for w in mine), default=memory_bytes)
        if offered < memory_bytes:
            raise ClusterError(f"no worker offers --memory {memory_bytes >> 20} MB (the largest offers {int(offered) >> 20} MB): "
                               "lower --memory, or start the workers with a larger --memory")
        if not workers:
            logger.info("no worker has joined the scheduler yet: students wait for the first (python -m graders worker ADDRESS)")

    def describe(self) -> str:
        workers = [w for w in self.client.scheduler_info(n_workers=-1)["workers"].values()
                   if w.get("resources", {}).get(code_resource())]
        return (f"on the Dask cluster at {self.client.scheduler.address}: {len(workers)} workers, "
                f"{sum(w['nthreads'] for w in workers)} students at once; each sandboxes as its account allows")

    def add(self, job: Job) -> None:
        """Queue a prepared student; it is sent once fewer than `window` are on the cluster."""
        self.waiting.append(job)
        self._fill()

    def _fill(self) -> None:
        """Send waiting students while fewer than `window` are on the cluster: each task carries its
        prepared notebooks, and the scheduler keeps them until the task ends (0.5 GB at 10,000
        students sent at once); the rest wait on this machine's disk, in the stage."""
        from distributed import as_completed

        while self.waiting and len(self.jobs) < self.window:
            job = self.waiting.popleft()
            files = {str(p.relative_to(job.folder)): p.read_bytes() for p in sorted(job.folder.rglob("*")) if p.is_file()}
            future = self.client.submit(run_task, self.token, job.student, files, job.notebooks, self.settings,
                                        key=f"grade-{job.student}-{uuid.uuid4().hex[:8]}", resources=self.resources, pure=False)
            self.jobs[future] = job
            if self.completed is None:
                self.completed = as_completed(loop=self.client.loop)
            self.completed.add(future)

    def close(self) -> None:
        """Nothing to do: students are sent as they are added and as the window frees."""

    def finished(self, wait: bool = True):
        """(job, execution) as tasks end: all that remain (`wait`), or only those already done."""
        self._fill()
        while self.jobs and (wait or self.completed.has_ready()):
            for future in self.completed.next_batch(block=True):
                job = self.jobs.pop(future)
                execution = self._execution(job, future)
                future.release()
                self._fill()
                yield job, execution

    def _execution(self, job: Job, future) -> Execution:
        from distributed import KilledWorker

        try:
            execution, notebooks = future.result()
        except KilledWorker as error:
            return Execution(Status.WORKER_LOST, f"every worker that ran it died ({first(error)})")
        except Exception as error:
            if future.status == "cancelled" or not self.client.status == "running":
                raise ClusterError(f"lost the Dask scheduler at {self.client.scheduler.address} ({first(error)}): "
                                   "graded students are kept; run the same command again to resume") from None
            return Execution(Status.EXECUTION_FAILED, f"on a worker: {type(error).__name__}: {first(error)}")
        for name, content in notebooks.items():
            if plain_path(name) and (name.endswith(".executed.ipynb") or name.startswith(f"{SIDE_EFFECTS}/")):
                (job.folder / name).parent.mkdir(parents=True, exist_ok=True)
                (job.folder / name).write_bytes(content)
        return execution

    def stop(self) -> None:
        """Ctrl-C (or a lost scheduler): cancel what waits, kill what runs; then let go."""
        try:
            self.client.cancel(list(self.jobs), force=True)
            self.client.run(stop_batch, self.token, wait=True)
        except Exception:  # the scheduler may be gone already
            pass
        self.shutdown()

    def shutdown(self) -> None:
        try:
            self.client.close(timeout=10)
        except Exception:
            pass


# -- on the workers ------------------------------------------------------------------------

_running = {}  # batch token -> threads running its students
_stopped = set()  # batch tokens stopped with Ctrl-C
_lock = threading.Lock()


def run_task(token: str, student: str, files: dict, notebooks: list, settings: dict):
    """A Dask task: one student's prepared files, run in this machine's sandbox.
    Returns (Execution, {executed notebook name: bytes})."""
    from distributed import get_worker


    worker = get_worker()
    scratch = Path(worker.local_directory)
    folder = Path(tempfile.mkdtemp(prefix="onions-", dir=scratch))
    try:
        for name, content in files.items():
            path = (folder / name).resolve()
            if folder.resolve() not in path.parents:
                raise ValueError(f"a prepared file outside the job: {name}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        grading = _grading_set(settings["grading"]["secret"], settings["grading"]["digests"])
        threads = os.environ.get(KERNEL_THREADS) or str(max(1, (os.cpu_count() or 1) // worker.state.nthreads))
        env = {**settings["env"], "TF_NUM_INTRAOP_THREADS": threads, "OMP_NUM_THREADS": threads}
        executor = SandboxExecutor(sandbox.choose(True), sandbox.Limits(**settings["limits"]), settings["cell_timeout"],
                                   settings["preload"], data.students_dir(), env,
                                   font_files(scratch / "onions-matplotlib", settings["matplotlib_fonts"]),
                                   settings.get("delimiters"), grading, settings.get("test_cells"))
        with _lock:
            if token in _stopped:
                return Execution(Status.EXECUTION_FAILED, "the batch was stopped"), {}
            _running.setdefault(token, set()).add(threading.get_ident())
        try:
            execution = executor.run(Job(student, folder, notebooks))
        finally:
            with _lock:
                _running[token].discard(threading.get_ident())
        execution.machine = socket.gethostname()
        executed = {f"{name}.executed.ipynb": (folder / f"{name}.executed.ipynb") for name in notebooks}
        effects = {path.relative_to(folder).as_posix(): path for path in sorted((folder / SIDE_EFFECTS).rglob("*"))
                   if path.is_file() and not path.is_symlink()}  # the files the notebooks wrote
        return execution, {name: path.read_bytes() for name, path in {**effects, **executed}.items() if path.is_file()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_grading_sets = {}  # (secret, digests) -> GradingSet: built once per worker process


def _grading_set(secret: str, digests: dict) -> gradingsplit.GradingSet:
    """The client's grading set, derived here from the same secret and this machine's verified
    copy (the same digests, or the worker refuses)."""
    key = (secret, json.dumps(digests, sort_keys=True))
    with _lock:
        if key not in _grading_sets:
            _grading_sets[key] = gradingsplit.build(bytes.fromhex(secret), expected=digests)
        return _grading_sets[key]


def stop_batch(token: str) -> None:
    """Run on every worker by the client on Ctrl-C: kill the sandboxes of this batch only."""
    with _lock:
        _stopped.add(token)
        threads = set(_running.get(token, ()))
    sandbox.kill_running(threads)


# -- python -m graders worker --------------------------------------------------------------

def add_command(commands) -> None:
    worker = commands.add_parser(
        "worker", help="grade on this machine for a Dask scheduler (more than one machine)",
        description="Check this machine (the sandbox works, the offline data is verified, the code and pins match "
                    "the latest batch's), then run a Dask worker that grades students sent by "
                    "`python -m graders autograde --scheduler ADDRESS`, as many at once as --students and --memory "
                    f"allow. Run it in the course's checkout after scripts/setup. A check that fails stops it with one "
                    f"line and exit status 1. See {SETUP_HINT}.")
    worker.add_argument("address", nargs="?", help="the scheduler: tls://HOST:PORT, or tcp://127.0.0.1:PORT on this machine")
    worker.add_argument("--scheduler-file", type=Path, help="read the address from the file `dask scheduler --scheduler-file` wrote")
    worker.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores this machine gives to grading (default: all)")
    worker.add_argument("--students", type=int, help="students graded at once (default: --cores)")
    worker.add_argument("--memory", help="memory this machine gives to sandboxes, e.g. 20G (default: what is available now); "
                                         "a student takes the batch's --memory of it")
    worker.add_argument("--name", help="the worker's name in the batch's log (default: HOST-PID)")
    worker.add_argument("--course", type=Path, default=Path("."), help="the course (its nbgrader_config.py says which datasets "
                                                                       "to verify; default: here)")
    add_tls_options(worker)
    worker.set_defaults(run=run_worker)


def add_tls_options(parser) -> None:
    parser.add_argument("--tls-ca-file", help="tls://: the certificate authority that signed every node's certificate")
    parser.add_argument("--tls-cert", help="tls://: this node's certificate")
    parser.add_argument("--tls-key", help="tls://: this node's private key")


def run_worker(args) -> int:
    try:
        if not args.address and not args.scheduler_file:
            raise ClusterError("give the scheduler's address (tls://HOST:PORT) or --scheduler-file")
        address = scheduler_address(args.address, args.scheduler_file)
        tls = tls_files(address, args.tls_ca_file, args.tls_cert, args.tls_key)
        argv, description = worker_command(args, address, tls)
    except (ClusterError, sandbox.SandboxUnavailable, data.DataUnavailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"worker: {description}", flush=True)
    os.execv(sys.executable, argv)


def worker_command(args, address: str, tls: dict):
    """Check this node, then (the dask worker's command line, what it offers)."""
    from graders.course.coursedir import Course

    isolation = sandbox.choose(True)
    isolation.check()
    config = args.course / "nbgrader_config.py"
    datasets = GradersBatch(config=Course(args.course).config).datasets if config.is_file() else data.DATASETS
    for name in datasets:  # the full copy (the grading sets come from it) and the students' view
        data.load_offline(name)
        data.load_view(name)
    labelscan.check(isolation)  # no dataset's test labels anywhere in the sandbox's view
    client = connect(address, tls)
    try:
        theirs = client.get_metadata(CODE_KEY, None)
    finally:
        client.close()
    mine = code_fingerprint()
    if theirs and theirs != mine:
        raise ClusterError(f"this machine's code or pins ({mine}) differ from the latest batch's client ({theirs}): "
                           "update it (git pull; scripts/setup) and start the worker again")
    memory = sandbox.parse_size(args.memory) if args.memory else _available_memory()
    students = args.students or args.cores
    if args.cores < 1 or students < 1 or memory <= 0:
        raise ClusterError("--cores, --students and --memory must be positive")
    os.environ[KERNEL_THREADS] = str(max(1, args.cores // students))
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name, "--nthreads", str(students),
            "--nworkers", "1", "--memory-limit", "0", "--no-dashboard",
            "--resources", f"{MEMORY}={memory},{code_resource()}={students}"]
    for option, path in tls.items():
        argv += [f"--{option.replace('_', '-')}", path]
    description = (f"{isolation.name}; data verified ({', '.join(datasets) or 'none needed'}), no test labels in the sandbox; code {mine}; "
                   f"students at once: {students}, with {memory >> 20} MB for their sandboxes; joining {address} as {name}")
    return argv, description


def _available_memory() -> int:
    import psutil

    return psutil.virtual_memory().available
