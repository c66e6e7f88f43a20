"""The first program in a sandbox: unpacks the student's folder into /submission, then becomes the runner.

Usage: python -m graders.inside.handin MODULE ARGS... (stdin: the folder as a tar stream,
graders.isolation.handover.send). /submission is a tmpfs of the disk quota; a folder that does
not fit ends the run with a failure the grader reports. The runner then replaces this process
(exec): it starts with none of these bytes in its memory, and with stdin at /dev/null.
"""
import errno
import json
import os
import sys
import tarfile
from pathlib import Path

from graders.inside import untar
from graders.inside.runner_api import UNREADABLE  # the runner's status for a folder it cannot read
from graders.isolation.sandbox import REPORT_FD, python_module


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            untar.extract(tar, ".")
    except (OSError, tarfile.TarError) as error:
        why = "do not fit the sandbox's disk quota (--disk)" if getattr(error, "errno", 0) == errno.ENOSPC else (
            f"could not be unpacked ({type(error).__name__})")
        descriptor = os.environ.get(REPORT_FD, "")
        if descriptor.isdigit():
            with os.fdopen(int(descriptor), "w") as line:
                line.write(json.dumps({"started": True}) + "\n")
                line.write(json.dumps({"failure": True, "text": f"the submission's files {why}"}) + "\n")
        return UNREADABLE
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    command = python_module(args[0], *args[1:], folder=str(Path(__file__).resolve().parents[2]))
    os.execv(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
