"""Unpacking a tar as data only, on every Python 3.11: tarfile's "data" filter came with 3.11.4,
and Debian's /usr/bin/python3 (3.11.2), which ordinary accounts run, has none (its
`extractall(filter=...)` is a TypeError). What the sandbox and the checker unpack is never a
link out, a device, an absolute path or a setuid file, whichever Python runs them."""
import tarfile
from pathlib import PurePosixPath


def extract(archive: tarfile.TarFile, folder) -> None:
    """Every member of `archive` into `folder`; a member that is not plain data (a regular file, a
    folder, a hard link to a member before it) raises tarfile.TarError and stops the unpacking."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(folder, filter="data")
        return
    for member in archive:
        linked = member.islnk() and _inside(member.linkname)
        if not _inside(member.name) or not (member.isfile() or member.isdir() or linked):
            raise tarfile.TarError(f"{member.name[:100]!r} is not plain data")
        archive.extract(member, folder, set_attrs=False)  # no owner, no mode bits from the archive


def _inside(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts
