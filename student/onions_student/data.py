"""MNIST and Fashion-MNIST as the notebooks see them: the training set and the public half of the test set.

Half of each test set is held back for grading (the private grading split, as on Kaggle): a
student gets the other half as their test set, and never a label of the held-back half. keras'
own loader is tried first; without internet, the students' view that the course built
(``python -m graders data``, verified against the digests pinned here) is read from
$ONIONS_DATA_DIR (the hub's /srv/onions/data, a grading sandbox's /data) or ~/.cache/onions.

The held-back images themselves (`grading_images`) exist only in a grading sandbox, where the
grader shows them at $ONIONS_GRADING_DIR in the course's secret order; everywhere else (a
student's own machine, the hub) the notebooks' "kept for grading" lines run on a stand-in of
the same shape (the public test images), so that the self-check exercises the same code. This
module holds no label of them, and no secret.
"""
import contextlib
import hashlib
import io
import os
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion_mnist")
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
CACHE_DIR_ENV = "ONIONS_DATA_DIR"
GRADING_DIR_ENV = "ONIONS_GRADING_DIR"  # set by the grader in a sandbox only (graders.data)
# Which test images are the students' own: the public half of a seeded permutation of the 10,000
# (graders.data draws the same split; a test checks that both agree).
SPLIT_SEED = 20261130
GRADING_SIZE = 5000
PUBLIC_NOISE_SEED = SPLIT_SEED + 1  # the grading images' noise where no course secret is at hand
PUBLIC_TEST_SIZE = 10000 - GRADING_SIZE
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (PUBLIC_TEST_SIZE, 28, 28),
          "y_test": (PUBLIC_TEST_SIZE,)}
WRITEABLE = {"mnist": True, "fashion_mnist": False}  # as keras returns them (fashion_mnist: np.frombuffer)
# sha256 of each array's bytes: the training set as keras returns it, the public test half
SHA256 = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "5da90bf9e95601c3b41d2b2559cfb848d03ea594ec170f4b975e0346021bbe55",
        "y_test": "137be6d9ee30f5449237d742a7af8fc18fb815733b2c3c04944948d9d2df1fc1",
    },
    "fashion_mnist": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "f52ce6575c105d0be413de9717f413dedc58f98a6fad6e7b6b1071fbd32ca29a",
        "y_test": "dc00e1730504c6934cbbcff90c9daa92447b3dfa65120ad1ab9c3589fc65589c",
    },
}


class DataUnavailable(RuntimeError):
    """The dataset can be had neither from keras nor from a verified offline copy."""


def load_dataset(name: str = "mnist"):
    """``(x_train, y_train), (x_test, y_test)`` like ``keras.datasets.<name>.load_data()``, without the
    held-back half: the test set is the public `PUBLIC_TEST_SIZE` images."""
    view = _view(name)
    return (view["x_train"], view["y_train"]), (view["x_test"], view["y_test"])


def test_set(name: str = "mnist"):
    """Fresh copies of the public test images and labels, loaded quietly."""
    with contextlib.redirect_stdout(io.StringIO()):
        view = _view(name)
    return view["x_test"].copy(), view["y_test"].copy()


def grading_images(name: str = "mnist"):
    """A fresh copy of the held-back images: in a grading sandbox as the grader staged them at
    $ONIONS_GRADING_DIR (the course's secret order); elsewhere, where the full test set is at hand
    (keras' download, a grader's full offline copy: stock nbgrader, --no-sandbox), in the split's
    public order, as graders.data.grading_labels cuts their labels; else (a student's own machine)
    the public test images as a stand-in of the same shape."""
    folder = os.environ.get(GRADING_DIR_ENV)
    if folder:
        try:
            images = np.load(Path(folder) / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError):
            raise DataUnavailable(f"the {TITLES[name]} grading images are not staged at {folder}") from None
        if images.dtype != np.uint8 or images.shape != (GRADING_SIZE, 28, 28):
            raise DataUnavailable(f"the {TITLES[name]} grading images at {folder} are not {GRADING_SIZE} images")
        return images.copy()
    with contextlib.redirect_stdout(io.StringIO()):
        full = _full_test(name)
        if full is not None:
            return graded(full, grading_indices(), PUBLIC_NOISE_SEED)[0]
        return _view(name)["x_test"].copy()


def graded(test, order, noise_seed) -> tuple:
    """(images, labels) of the test images at `order`: each image gets noise of at most 1 in 255
    per pixel (invisible to a model), so that no file hash lines them up with the published test
    set. graders.data uses this very function, with the course's secret order in a sandbox."""
    x_test, y_test = test
    noise = np.random.default_rng(noise_seed).integers(-1, 2, size=(len(order), 28, 28))
    return np.clip(x_test[order].astype(np.int16) + noise, 0, 255).astype(np.uint8), np.array(y_test[order])


def grading_indices():
    """The indices, sorted, of the held-back test images (public knowledge; their order is not)."""
    return np.sort(np.random.default_rng(SPLIT_SEED).permutation(10000)[:GRADING_SIZE])


def _full_test(name: str):
    """The full 10,000-image test set (x, y), from keras or a grader's full offline copy, or None."""
    import keras

    try:
        return getattr(keras.datasets, name).load_data()[1]
    except Exception:  # keras raises a bare Exception when the download fails
        pass
    folders = [Path(os.environ[CACHE_DIR_ENV])] if os.environ.get(CACHE_DIR_ENV) else []
    for folder in [*folders, Path.home() / ".cache" / "onions"]:
        try:
            with np.load(folder / f"{name}.npz", allow_pickle=False) as npz:
                x_test, y_test = npz["x_test"], npz["y_test"]
        except (OSError, ValueError, KeyError):
            continue
        if x_test.shape == (10000, 28, 28) and _digest(x_test[public_indices()]) == SHA256[name]["x_test"]:
            return x_test, y_test
    return None


def public_indices():
    """The indices, in order, of the test images that are the students' own."""
    return np.sort(np.random.default_rng(SPLIT_SEED).permutation(10000)[GRADING_SIZE:])


def _view(name: str) -> dict:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception:  # keras raises a bare Exception when the download fails
        return _offline(name)
    public = public_indices()
    view = {"x_train": x_train, "y_train": y_train, "x_test": x_test[public], "y_test": y_test[public]}
    for array in view.values():
        array.flags.writeable = WRITEABLE[name] and array.flags.writeable
    return view


def _candidates(name: str) -> list:
    """Where the students' view may be: $ONIONS_DATA_DIR (a sandbox's /data holds it at the top, the
    course's data folder under public/), then ~/.cache/onions/public."""
    folders = [Path(os.environ[CACHE_DIR_ENV])] if os.environ.get(CACHE_DIR_ENV) else []
    folders.append(Path.home() / ".cache" / "onions")
    return [path for folder in folders for path in (folder / f"{name}.npz", folder / "public" / f"{name}.npz")]


def _offline_file(name: str):
    """The first readable students' view of `name` (a file with the view's arrays), or None."""
    for path in _candidates(name):
        try:
            with np.load(path, allow_pickle=False) as npz:
                if set(SHAPES) <= set(npz.files) and npz["y_test"].shape == SHAPES["y_test"]:
                    return path
        except (OSError, ValueError):
            continue
    return None


def _offline(name: str) -> dict:
    path = _offline_file(name)
    if path is None:
        raise DataUnavailable(f"keras could not download {TITLES[name]} and there is no offline copy (tried "
                              f"{', '.join(map(str, _candidates(name)))}): connect to the internet once, or ask your "
                              f"teachers for the course's offline copy and set {CACHE_DIR_ENV} to its folder")
    print(f"keras could not download {name}; using the offline copy {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in SHAPES}
    except Exception as error:
        raise DataUnavailable(f"the offline {TITLES[name]} at {path} is unreadable ({type(error).__name__})")
    for key, shape in SHAPES.items():
        array = arrays[key]
        if array.dtype != np.uint8 or array.shape != shape or _digest(array) != SHA256[name][key]:
            raise DataUnavailable(f"the offline {TITLES[name]} at {path} is corrupt ({key} differs from the "
                                  "canonical one): ask your teachers for a new copy")
        array.flags.writeable = WRITEABLE[name]
    return arrays


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
