"""The course's grading secret: the order (and noise) in which the grading images reach a kernel.

Which 5,000 test images are graded is public (graders.data.grading_split). Their order is not: a
table of labels made from the public dataset and this package (5,000 digits pasted into a
notebook) lines up with nothing. The secret is 32 random bytes per course, in
.graders/grading-secret (mode 0600, never committed, never shown to a sandbox), or in the file
`c.GradersBatch.grading_secret_file` names (an instructor's, to share between machines).

From the secret and the verified full copy, `build` derives the grading set: the grading
images in the secret's order, with the secret's noise (a sandbox shows them at /grading), and
their labels (staged for the checker alone). Everything that must agree derives it from the one
secret: this machine's pool, every Dask worker (the secret travels with each task, over TLS, and
the worker's set must have the client's digests), and a recheck (the secret's `key_id` is part of
what kept exports were made with: another key grades in full).
"""
import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graders import data
from graders.files import write_atomically

logger = logging.getLogger(__name__)

SECRET_FILE = "grading-secret"  # in the course's .graders/
INSIDE = "/grading"  # where a sandbox shows the grading images ($ONIONS_GRADING_DIR)
MADE_HINT = "python -m graders data (in the course directory) makes one"


def secret_path(course_root: Path, configured: str = "") -> Path:
    """The instructor's file if configured, else the course's own."""
    return Path(configured).expanduser() if configured else Path(course_root) / ".graders" / SECRET_FILE


def read_secret(path: Path) -> bytes:
    """The secret in `path`; refused (one line) if missing, malformed, or readable by others."""
    try:
        mode, text = path.stat().st_mode, path.read_text().strip()
    except OSError as error:
        raise data.DataUnavailable(f"no grading secret at {path} ({type(error).__name__}): {MADE_HINT}") from None
    if mode & 0o077:
        raise data.DataUnavailable(f"the grading secret {path} is readable by others: chmod 600 {path}")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise data.DataUnavailable(f"{path} is not a grading secret (64 hex digits): {MADE_HINT}")
    return secret


def make_secret(path: Path, replace: bool = False) -> bytes:
    """A new secret in `path` (0600); an existing one is kept unless `replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{path.name}")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(secrets.token_hex(32) + "\n")
    if replace:
        os.replace(partial, path)
    else:
        try:
            os.link(partial, path)  # never over a secret made meanwhile
        except FileExistsError:
            pass
        partial.unlink()
    return read_secret(path)


def course_secret(course_root: Path, configured: str = "") -> bytes:
    """The course's secret; the course's own file is made on first use, an instructor's never."""
    path = secret_path(course_root, configured)
    if not configured and not path.exists():
        make_secret(path)
        logger.info(f"made this course's grading secret: {path} (keep it with the gradebook; docs/instructors.md)")
    return read_secret(path)


def key_id(secret: bytes) -> str:
    """A name for the secret that says nothing of it (folders, the recheck fingerprint)."""
    return hashlib.sha256(b"onions grading key\0" + secret).hexdigest()[:16]


def _seed(secret: bytes, purpose: str, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{purpose}\0{name}\0".encode() + secret).digest(), "big")


def derive(name: str, secret: bytes, test) -> tuple:
    """(images, labels) of the grading split of keras' test arrays, in the secret's order."""
    graded = data.grading_split()[0]
    order = graded[np.random.default_rng(_seed(secret, "order", name)).permutation(len(graded))]
    return data.graded(test, order, _seed(secret, "noise", name))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class GradingSet:
    """One secret's grading set on this machine: files per dataset, and their digests."""
    key: str
    folder: Path
    digests: dict = field(default_factory=dict)  # name -> {"images": sha256, "labels": sha256} (of the .npy files)

    def images(self, name: str) -> Path:
        return self.folder / "images" / f"{name}.npy"

    def labels(self, name: str) -> Path:
        return self.folder / "labels" / f"{name}.npy"

    def files(self) -> dict:
        """{path in the sandbox: host path} of the grading images."""
        return {f"{INSIDE}/{name}.npy": self.images(name) for name in self.digests}

    def env(self) -> dict:
        return {data.GRADING_DIR_ENV: INSIDE} if self.digests else {}

    def stage_labels(self, folder: Path) -> None:
        """The labels into `folder`/LABELS_FOLDER (replacing whatever a submission holds under that
        name), for the sandbox's checker: it takes them before any student code runs."""
        target = Path(folder) / data.LABELS_FOLDER
        if target.is_symlink() or target.is_file():
            target.unlink()
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name in self.digests:
            shutil.copyfile(self.labels(name), target / f"{name}.npy")


def build(secret: bytes, required=(), expected: dict = None) -> GradingSet:
    """The grading set of `secret` for every dataset whose full copy is here (`required` ones
    must be), in the grader's own grading/<key id>/ (data.grader_dir()): reused when its files still have the digests
    written when they were made. `expected`: the digests another machine made (a cluster's
    client): a worker whose set differs refuses to grade."""
    key = key_id(secret)
    folder = data.grader_dir() / "grading" / key
    made = folder / "digests.json"
    try:
        known = json.loads(made.read_text())
    except (OSError, ValueError):
        known = {}
    result = GradingSet(key, folder)
    for name in data.DATASETS:
        wanted = (expected or {}).get(name)
        if expected is not None and not wanted:
            continue
        entry = known.get(name)
        if not (entry and result.images(name).is_file() and result.labels(name).is_file()
                and _digest(result.images(name)) == entry["images"] and _digest(result.labels(name)) == entry["labels"]):
            try:
                full = data.load_offline(name)
            except data.DataUnavailable:
                if name in required or wanted:
                    raise
                continue
            entry = _write(result, name, *derive(name, secret, full[1]))
        if wanted and wanted != entry:
            raise data.DataUnavailable(f"this machine's {data.SPECS[name].title} grading set differs from the grader's "
                                       "(another dataset copy or code): run scripts/setup and python -m graders data")
        result.digests[name] = entry
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(made, lambda stream: stream.write(json.dumps(result.digests, sort_keys=True).encode()))
    return result


def _write(result: GradingSet, name: str, images, labels) -> dict:
    for path, array, mode in ((result.images(name), images, 0o644), (result.labels(name), labels, 0o600)):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(result.folder, 0o700)
        write_atomically(path, lambda stream: np.save(stream, array, allow_pickle=False), mode)
    return {"images": _digest(result.images(name)), "labels": _digest(result.labels(name))}


def known_label_arrays() -> list:
    """The grading labels this machine holds, as arrays: every grading set's in the cache (any
    course's secret order) and the split's public order (from the full copy): what no file a
    student is given may contain (the student kit's guard, the hub's walk)."""
    found = []
    folders = sorted({data.grader_dir() / "grading", data.cache_dir() / "grading"})  # a shared data folder may hold some
    for path in sorted(path for folder in folders for path in folder.glob("*/labels/*.npy")):
        try:
            found.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            continue
    for name in data.DATASETS:
        try:
            test = data.load_offline(name)[1]  # the verified full copy (keras is not imported: a quiet command)
        except data.DataUnavailable:
            continue
        found.append(data.graded(test, *data.public_order())[1])
    return found
