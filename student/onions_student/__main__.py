"""Command line for students: ``python -m onions_student selfcheck NOTEBOOK ...`` (see --help)."""
import argparse
import sys

from onions_student import selfcheck


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onions_student",
                                     description="The student side of the onions course (Lesson 08).")
    commands = parser.add_subparsers(dest="command", required=True)
    selfcheck.add_command(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except RuntimeError as error:  # a notebook that cannot be read: one line
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
