"""The runner's two lines back to the grader: its report, and its outputs.

Both are pipes the grader opened for the runner alone ($ONIONS_REPORT_FD, $ONIONS_OUTPUT_FD):
taken (and their variables removed from the environment) before any kernel exists, closed in the
zygote (graders.inside.kernel_fork), so no student process ever holds one; the runner is not
dumpable, so none can borrow its descriptors through /proc either. The sandbox's stdout is the
student's as much as the runner's: the grader never takes words from it.
"""
import io
import json
import os
import tarfile

from graders.isolation.handover import OUTPUT_FD
from graders.isolation.sandbox import REPORT_FD

_lines = {}  # "report", "output" -> the open line, if the grader gave one


def take() -> None:
    """Take the grader's lines, before any kernel is forked."""
    for name, variable in (("report", REPORT_FD), ("output", OUTPUT_FD)):
        descriptor = os.environ.pop(variable, "")
        if descriptor.isdigit():
            _lines[name] = os.fdopen(int(descriptor), "w" if name == "report" else "wb", **(
                {"encoding": "utf-8"} if name == "report" else {}))


def report(text: str, **item) -> None:
    """Tell the grader (as JSON on its private line) and whoever reads the log (as a RUNNER line)."""
    print(f"RUNNER: {text}", flush=True)
    line = _lines.get("report")
    if line:
        line.write(json.dumps({**item, "text": text}) + "\n")
        line.flush()


def hands_back() -> bool:
    """Whether the outputs go back on the output line (in a sandbox) rather than onto the disk."""
    return "output" in _lines


def hand_back(files: dict) -> None:
    """Send {relative path: bytes} to the grader as one tar stream (graders.isolation.handover.receive)."""
    line = _lines.pop("output")
    with tarfile.open(fileobj=line, mode="w|") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    line.close()
