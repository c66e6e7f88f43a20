"""What crosses a sandbox's edge as files: the student's folder in, the runner's outputs out.

A sandbox's /submission is a tmpfs of `Limits.disk_bytes` (graders.isolation.sandbox), not a
folder of the grader's disk: what student code writes stays within that quota, in the sandbox's
memory (counted by its memory limit too), and is gone when the sandbox ends. The folder's files
go in as a tar stream on the sandbox's stdin (graders.inside.handin unpacks it before the runner
starts). The runner's outputs come back as a tar stream on a pipe only the runner holds
($ONIONS_OUTPUT_FD, as the report line: never inherited by a kernel), and only what is expected
is written back: regular files named NAME.executed.ipynb or NAME.exports.tar.xz (STUDENT/NAME in
a recheck group), and the files the notebooks wrote under side-effects/ (plain names), each within
the file size limit, all within the quota.
"""
import errno
import json
import os
import tarfile
from pathlib import Path, PurePosixPath

OUTPUT_FD = "ONIONS_OUTPUT_FD"  # the environment variable naming the runner's line for its outputs
KEPT = (".executed.ipynb", ".exports.tar.xz")  # what the runner hands back
SIDE_EFFECTS = "side-effects"  # and the files the notebooks wrote, under this folder (graders.inside.side_effects)


def plain_path(name: str) -> bool:
    """Whether `name` is a relative path of plain parts: no '..', no control or format character, none over 255 bytes."""
    path = PurePosixPath(name)
    return (bool(name) and not path.is_absolute() and all(part not in (".", "..") and part.isprintable()
                                                          and len(part.encode()) <= 255 for part in path.parts))


def send(folder: Path, stream) -> None:
    """Write `folder`'s files and folders (not the folder itself; no links, devices ...) to `stream`
    as a tar, then close it."""
    try:
        with tarfile.open(fileobj=stream, mode="w|") as tar:
            for path in sorted(Path(folder).iterdir()):
                tar.add(path, arcname=path.name, filter=lambda member: member if member.isfile() or member.isdir() else None)
    except (OSError, tarfile.TarError):  # the sandbox ended early: it says why
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


class _Capped:
    """A file to read at most `limit` bytes from; more is an error (the rest is drained by `receive`)."""

    def __init__(self, stream, limit: int):
        self.stream, self.left = stream, limit

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise OverQuota
        return data


class OverQuota(Exception):
    pass


def receive(descriptor: int, folder: Path, quota: int, file_bytes: int, problems: list) -> None:
    """Read the runner's tar of outputs from `descriptor` into `folder` (replacing what is there).
    What is refused (a name or kind not expected, too large, over the quota) goes into `problems`,
    one line each; the line is read to its end whatever happens, so the runner never blocks."""
    with os.fdopen(descriptor, "rb") as stream:
        try:
            with tarfile.open(fileobj=_Capped(stream, quota + (1 << 20)), mode="r|") as tar:
                total = 0
                for member in tar:
                    name = PurePosixPath(member.name)
                    side_effect = name.parts[:1] == (SIDE_EFFECTS,) and len(name.parts) > 1
                    if (not member.isfile() or not plain_path(member.name)
                            or not (side_effect or (len(name.parts) <= 2 and member.name.endswith(KEPT)))):
                        problems.append(f"the runner handed back {member.name[:100]!r}, which is not an output")
                        continue
                    total += member.size
                    if member.size > file_bytes or total > quota:
                        raise OverQuota
                    target = Path(folder) / name
                    if side_effect:
                        target.parent.mkdir(parents=True, exist_ok=True)
                    target.unlink(missing_ok=True)
                    with open(target, "xb") as out:
                        out.write(tar.extractfile(member).read())
        except OverQuota:
            problems.append(f"the outputs are over the sandbox's {quota >> 20} MB disk quota (--disk)")
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):  # the grader's disk, not the student: the batch stops
                problems.append(f"the runner's outputs could not be written: {os.strerror(error.errno)}")
            else:
                problems.append(f"the runner's outputs could not be read ({type(error).__name__})")
        except tarfile.TarError as error:
            if not isinstance(error, tarfile.ReadError) or "empty" not in str(error):
                problems.append(f"the runner's outputs could not be read ({type(error).__name__})")
        while stream.read(1 << 20):  # drained: the runner never blocks on a full pipe
            pass


def read_report(descriptor: int, reports: list) -> None:
    """Collect the JSON objects of the private report line (at most 1 MB, the rest is dropped)."""
    size = 0
    with os.fdopen(descriptor, "rb") as stream:
        for line in stream:
            size += len(line)
            if size > 1 << 20:
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                reports.append(item)
