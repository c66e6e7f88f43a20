"""Find every file that holds a dataset's test labels: run inside a sandbox, it proves the view
shows none (a worker's node check; the tests, in both sandbox modes).

The labels are looked for by content, not by name, in every format a copy comes in: IDX files
(keras' and Debian's `*-idx1-ubyte`) and their .gz, .npy and .npz of any integer or float dtype
(one-hot too), pickles, raw bytes, CSV and text (a label per line, the first or last column, a
string of digits), inside gzip, bz2, xz and zip archives. A run of 10,000 values in 0..9 whose
class counts are the published ones is hashed and compared with the pinned digest of keras'
`y_test`: nothing secret is needed to look, and nothing is found by chance.
"""
import bz2
import hashlib
import io
import json
import lzma
import os
import re
import stat
import sys
import zipfile
import zlib

import numpy as np

from graders import data
from graders.isolation.sandbox import REPORT_FD

SKIP = ("/proc", "/sys", "/dev")
FRESH = ("/tmp/", "/submission/", "/dev/shm/")  # a sandbox's own folders (a scan of /), empty at its start: always read
MAX_BYTES = 512 << 20  # a file or decompressed stream larger than this is not read (no dataset copy is)
CHUNK = 1 << 22  # values scanned at once
MIN_BYTES = 1000  # 10,000 labels take at least this much, even compressed
DATA_NAMES = re.compile(r"(ubyte|\.(npy|npz|gz|bz2|xz|zip|pkl|pickle|bin|dat|data|raw|csv|tsv|txt|json|h5|hdf5|idx\d?|lbl|labels?))$",
                        re.IGNORECASE)
MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04", b"\x93NUMPY", b"\x00\x00\x08", b"\x80", b"\x89HDF")
FIRST = re.compile(rb"(?m)^[ \t\"']*(\d+)")
LAST = re.compile(rb"(?m)(\d+)[ \t\"']*\r?$")
NOT_DIGITS = bytes(set(range(256)) - set(range(48, 58)))


def targets(extra=()) -> list:
    """(length, class counts, sha256 of the uint8 labels) of each dataset's test labels, and `extra`
    ones (a digest of None: any run with those counts, in any order)."""
    return [(10000, spec.test_label_counts, spec.sha256["y_test"]) for spec in data.SPECS.values()] + [tuple(t) for t in extra]


def holds(values, wanted) -> bool:
    """Whether the 1-D integer array `values` holds one of `wanted` as a contiguous run (also as
    every w-th value: the bytes of wider integers, either endianness)."""
    values = np.asarray(values).ravel()
    if values.dtype.kind not in "biuf":
        return False
    if values.dtype.kind == "f":
        values = np.where(np.isfinite(values) & (values == np.round(values)), values, -1)
    small = (values >= 0) & (values < 10)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], small.astype(np.int8), [0]))))
    starts, ends = edges[0::2], edges[1::2]
    long_enough = ends - starts >= min(length for length, _, _ in wanted)
    for start, end in zip(starts[long_enough], ends[long_enough]):
        for begin in range(start, end, CHUNK):  # overlapping pieces: the counts' memory stays small
            run = values[begin:min(end, begin + CHUNK + 8 * 10000)].astype(np.uint8)
            for step in (1, 2, 4, 8):
                for offset in range(step if len(run) >= 2 * 10000 or step == 1 else 0):
                    if any(_windows(run[offset::step], *target) for target in wanted):
                        return True
    return False


def _windows(run, length, counts, digest) -> bool:
    if len(run) < length:
        return False
    candidates = np.arange(len(run) - length + 1)
    for label, count in enumerate(counts):
        total = np.concatenate(([0], np.cumsum(run == label, dtype=np.int64)))
        candidates = candidates[total[candidates + length] - total[candidates] == count]
        if not len(candidates):
            return False
    if digest is None:  # counts alone: the labels in any order
        return True
    return any(hashlib.sha256(run[o:o + length].tobytes()).hexdigest() == digest for o in candidates[:10000])


def _array_values(raw: bytes) -> list:
    """The label-like arrays of an .npy stream: itself, and its argmax if one-hot."""
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    found = [array]
    if array.ndim == 2 and array.shape[1] == 10 and array.dtype.kind in "iuf":
        found.append(np.argmax(array, axis=1))
    return found


def _text_values(raw: bytes) -> list:
    """A label per line, the first or last column, or every digit in order, of a text stream."""
    found = [np.frombuffer(raw.translate(None, NOT_DIGITS), np.uint8) - 48]
    for pattern in (FIRST, LAST):
        fields = [int(m) if len(m) == 1 else 255 for m in pattern.findall(raw)]
        found.append(np.array(fields, np.int64))
    return found


def _decompressed(raw: bytes):
    if raw.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, MAX_BYTES)
    if raw.startswith(b"BZh"):
        return bz2.BZ2Decompressor().decompress(raw, MAX_BYTES)
    if raw.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor().decompress(raw, MAX_BYTES)
    return None


def stream_holds(raw: bytes, wanted, name: str = "", depth: int = 0) -> bool:
    """Whether the bytes of one file (or archive member) hold one of `wanted`."""
    if depth > 3 or len(raw) < MIN_BYTES:
        return False
    try:
        inner = _decompressed(raw)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        inner = None
    if inner is not None:
        return stream_holds(inner, wanted, name, depth + 1)
    if raw.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                members = [m for m in archive.infolist() if m.file_size >= MIN_BYTES and m.file_size <= MAX_BYTES
                           and DATA_NAMES.search(m.filename)]
                return any(stream_holds(archive.read(m), wanted, m.filename, depth + 1) for m in members[:1000])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error):
            pass
    arrays = [np.frombuffer(raw, np.uint8)]
    if raw.startswith(b"\x93NUMPY"):
        try:
            arrays += _array_values(raw)
        except (ValueError, OSError, EOFError):
            pass
    head = np.frombuffer(raw[:1 << 16], np.uint8)
    if np.count_nonzero((head >= 48) & (head <= 57)) >= len(head) // 4:
        arrays += _text_values(raw)
    return any(holds(array, wanted) for array in arrays)


def _candidate(path: str, size: int) -> bool:
    if size < MIN_BYTES or size > MAX_BYTES:
        return False
    if DATA_NAMES.search(os.path.basename(path)):
        return True
    try:
        with open(path, "rb") as stream:
            head = stream.read(16)
    except OSError:
        return False
    return head.startswith(MAGICS) or all(byte < 10 for byte in head)


def scan(root: str = "/", wanted=None) -> list:
    """The files under `root` that hold one of `wanted` (default: every dataset's test labels)."""
    return scan_view(root, wanted)[0]


def scan_view(root: str = "/", wanted=None, known_clean: str = "") -> tuple:
    """(the files that hold one of `wanted`, the view's digest). The digest covers every regular
    file's path, size, inode and times (ctime: no account can set it) outside the sandbox's own
    fresh folders; when it equals `known_clean` (the digest of a view this scan found clean), only
    those fresh folders are read: nothing else can have changed."""
    wanted, hits, files = wanted or targets(), [], []
    fresh = FRESH if os.path.abspath(root) == "/" else ()
    for top, folders, names in os.walk(root):
        folders[:] = [f for f in folders if os.path.join(top, f) not in SKIP]
        for name in names:
            path = os.path.join(top, name)
            try:
                status = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(status.st_mode):
                files.append((path, status))
    digest = hashlib.sha256()
    for path, status in sorted(files):
        if not (fresh and path.startswith(fresh)):
            digest.update(f"{path}\0{status.st_size}\0{status.st_ino}\0{status.st_mtime_ns}\0{status.st_ctime_ns}\n"
                          .encode(errors="surrogateescape"))
    view = digest.hexdigest()
    for path, status in files:
        if view == known_clean and not (fresh and path.startswith(fresh)):
            continue
        try:
            if not _candidate(path, status.st_size):
                continue
            with open(path, "rb") as stream:
                raw = stream.read()
            if stream_holds(raw, wanted, os.path.basename(path)):
                hits.append(path)
        except Exception:  # an odd file is no copy of a dataset: the walk goes on
            continue
    return hits, view


def check(isolation, limits=None, root: str = "/", remember: bool = True) -> None:
    """Run the scan of `root` in a sandbox of `isolation` (as a student would): fail in one line
    naming the files that hold test labels. A view found clean is remembered (its digest, in the
    grader's cache), so the next check of an unchanged view reads no file again: a worker's second
    start costs a walk of the file names, not of their bytes."""
    import tempfile
    from pathlib import Path

    from graders.isolation import sandbox

    limits = limits or sandbox.Limits(wall_seconds=600, memory_bytes=2 << 30)
    view_of = f"{type(isolation).__name__}:{root}"  # each way of sandboxing shows its own view
    memory = data.grader_dir() / f"labelscan-clean-{hashlib.sha256(view_of.encode()).hexdigest()[:12]}"
    try:
        known = memory.read_text().strip() if remember else ""
    except OSError:
        known = ""
    with tempfile.TemporaryDirectory(prefix="onions-labelscan-") as folder:
        command = isolation.python_module("graders.inside.labelscan", root, "[]", known)
        outcome = isolation.run(command, Path(folder), limits, data.students_dir(), {"LANG": "C.UTF-8"})
    reports = [item for item in outcome.report if "labels_found" in item]
    if not reports:
        raise sandbox.SandboxUnavailable(f"the dataset scan did not finish in the sandbox (exit status {outcome.returncode}): "
                                         f"{outcome.output.strip().splitlines()[-1:] or ''}")
    if reports[0]["labels_found"]:
        memory.unlink(missing_ok=True)
        found = ", ".join(reports[0]["labels_found"][:3])
        raise sandbox.SandboxUnavailable(f"the sandbox shows a dataset's test labels ({found}): hide that folder "
                                         "(docs/administrators.md, 'What the sandbox hides')")
    if remember and str(reports[0].get("view", "")).isalnum():
        try:
            memory.parent.mkdir(parents=True, exist_ok=True)
            memory.write_text(reports[0]["view"] + "\n")
        except OSError:
            pass  # not remembered: the next check reads everything again


def main() -> int:
    """`python -m graders.inside.labelscan ROOT [TARGETS-JSON [KNOWN-CLEAN]]`: the files found and
    the view's digest, on the report line."""
    wanted = targets(json.loads(sys.argv[2]) if len(sys.argv) > 2 else ())
    hits, view = scan_view(sys.argv[1] if len(sys.argv) > 1 else "/", wanted, sys.argv[3] if len(sys.argv) > 3 else "")
    line = json.dumps({"labels_found": hits, "view": view}) + "\n"
    descriptor = os.environ.get(REPORT_FD)
    if descriptor:
        os.write(int(descriptor), line.encode())
    print(line, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
