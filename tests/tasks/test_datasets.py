"""Tests of the dataset registry (vsml.tasks.datasets; spec/vsml.md §3.3)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.conftest import DATASETS_DIR as SHARED_DATA
from vsml.tasks import datasets
from vsml.tasks.datasets import (
    DATASET_NAMES,
    NORMALISATION,
    load_dataset,
    resolve_data_dir,
    sample_sum_sign,
)
from vsml.tasks.idx import DataError, write_idx
from vsml.tasks.toy2d import TOY2D_TASKS
from vsml.tasks.transforms import standardise_per_feature

MNIST_MU, MNIST_S = 0.13066, 0.30811  # spec §3.3


def _write_fake_idx_dataset(
    folder: Path, num_train: int = 12, num_test: int = 6, suffix: str = ".gz"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny MNIST-layout IDX files; returns the raw arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for stem, n in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, :2] = [0, 255]  # make sure both extremes occur
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels)
        arrays[stem] = (images, labels)
    return arrays


@pytest.fixture(autouse=True)
def _fresh_idx_cache():
    datasets._read_array_cached.cache_clear()  # tests write different files at recycled tmp paths
    datasets._normalised_split.cache_clear()
    yield
    datasets._read_array_cached.cache_clear()
    datasets._normalised_split.cache_clear()


# ---------------------------------------------------------------------------------------------- registry


def test_unknown_dataset_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'") as info:
        load_dataset("cifar100")
    for name in ("mnist", "fashion_mnist", "digits", "random", "sum"):
        assert name in str(info.value)
    assert set(DATASET_NAMES) == {
        *("mnist", "fashion_mnist", "emnist", "kmnist", "cifar10", "digits", "random", "sum"),
        *TOY2D_TASKS,
    }


def test_normalisation_constants_are_the_spec_values() -> None:
    assert NORMALISATION["mnist"] == NORMALISATION["fashion_mnist"] == (0.13066, 0.30811)
    assert NORMALISATION["random"] == NORMALISATION["sum"] == (0.0, 1.0)


# ------------------------------------------------------------------------------- IDX datasets (fake files)


@pytest.mark.parametrize("name, folder", [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")])
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_dataset_from_files(tmp_path: Path, name: str, folder: str, suffix: str) -> None:
    written = _write_fake_idx_dataset(tmp_path / folder, suffix=suffix)
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.name == name and ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert not ds.is_stream
    for x, y, stem in ((ds.train_x, ds.train_y, "train"), (ds.test_x, ds.test_y, "t10k")):
        images, labels = written[stem]
        assert x.dtype == np.float32 and x.shape == (len(images), 28, 28, 1)
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, labels)
        # spec §3.3: uint8 -> [0, 1], then (x - mu) / s
        np.testing.assert_allclose(x[..., 0], (images / 255.0 - MNIST_MU) / MNIST_S, rtol=1e-6, atol=1e-6)
    assert ds.train_x[0, 0, 0, 0] == pytest.approx(-MNIST_MU / MNIST_S, abs=1e-6)
    assert ds.train_x[0, 0, 1, 0] == pytest.approx((1 - MNIST_MU) / MNIST_S, abs=1e-6)


def test_hyphenated_name_is_accepted(tmp_path: Path) -> None:
    _write_fake_idx_dataset(tmp_path / "fashion-mnist")
    assert load_dataset("fashion-mnist", data_dir=tmp_path).name == "fashion_mnist"


def test_idx_files_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fake_idx_dataset(tmp_path / "mnist")
    reads = []
    real_read = datasets.read_idx
    monkeypatch.setattr(datasets, "read_idx", lambda path: reads.append(path) or real_read(path))
    first = load_dataset("mnist", data_dir=tmp_path)
    assert len(reads) == 4
    second = load_dataset("mnist", data_dir=tmp_path)
    assert len(reads) == 4, "the second load re-read the files"
    assert second.train_x is first.train_x  # normalised once: every load shares the arrays
    with pytest.raises(ValueError, match="read-only"):
        first.train_x[...] = 0  # so no caller can change what later loads get
    assert load_dataset("mnist", data_dir=tmp_path).train_x.std() > 0
    # Standardising per feature is done once for those arrays; a writeable dataset is standardised anew.
    standardised = standardise_per_feature(first)
    assert standardise_per_feature(second).train_x is standardised.train_x
    assert not standardised.train_x.flags.writeable
    copy = dataclasses.replace(first, train_x=first.train_x.copy(), test_x=first.test_x.copy())
    fresh = standardise_per_feature(copy)
    assert fresh.train_x is not standardised.train_x
    np.testing.assert_array_equal(fresh.train_x, standardised.train_x)
    # A new version of a file (here: the same size, another time stamp) is read again.
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_dataset("mnist", data_dir=tmp_path).train_x is not first.train_x and len(reads) == 5


def test_missing_idx_file_names_it_and_the_fix(tmp_path: Path) -> None:
    _write_fake_idx_dataset(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert "VSML_DATA" in str(info.value) and "--data-dir" in str(info.value)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    _write_fake_idx_dataset(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="12 images but .* 5 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_must_be_in_range(tmp_path: Path) -> None:
    _write_fake_idx_dataset(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_images_must_be_uint8_3d(tmp_path: Path) -> None:
    _write_fake_idx_dataset(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((12, 784), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 images \[N, H, W\]"):
        load_dataset("mnist", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------- data folder


def test_resolve_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    cwd, shared = tmp_path / "repo", tmp_path / "shared" / "datasets"
    for path in (explicit, env, cwd, shared):
        path.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("VSML_DATA", str(env))
    assert resolve_data_dir(explicit) == explicit.resolve()
    assert resolve_data_dir(str(explicit)) == explicit.resolve()
    assert resolve_data_dir() == env.resolve()
    monkeypatch.delenv("VSML_DATA")
    assert resolve_data_dir() == shared.resolve()  # ../shared/datasets from the working directory


def test_the_source_tree_is_not_a_data_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the package lives plays no part (an installed package behaves as a checkout does): from a folder
    without ../shared/datasets the data folder is not found, even though this checkout has one beside it."""
    elsewhere = tmp_path / "b" / "elsewhere"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("VSML_DATA", raising=False)
    assert not hasattr(datasets, "_REPO_ROOT")
    with pytest.raises(FileNotFoundError) as info:
        resolve_data_dir()
    message = str(info.value)
    assert str(elsewhere / ".." / "shared" / "datasets") in message  # the one candidate: from the cwd
    assert "current directory" in message and "--data-dir" in message and "VSML_DATA" in message
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_dataset("mnist")


def test_explicit_or_env_data_dir_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match="data_dir argument.*typo"):
        resolve_data_dir(missing)
    monkeypatch.setenv("VSML_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=r"\$VSML_DATA.*typo"):
        resolve_data_dir()


# ---------------------------------------------------------------------------------------------- random


def test_random_dataset() -> None:
    ds = load_dataset("random", seed=3)
    assert ds.train_x.shape == ds.test_x.shape == (20, 28, 28, 1)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.train_y.min() >= 0 and ds.train_y.max() < 10
    assert abs(ds.train_x.mean()) < 0.02 and abs(ds.train_x.std() - 1) < 0.02  # N(0, 1), 15680 values
    assert not np.allclose(ds.train_x, ds.test_x), "train and test instances must differ (spec §3.3)"
    again = load_dataset("random", seed=3)
    np.testing.assert_array_equal(ds.train_x, again.train_x)
    np.testing.assert_array_equal(ds.test_y, again.test_y)
    assert not np.allclose(ds.train_x, load_dataset("random", seed=4).train_x)


# ------------------------------------------------------------------------------------------------- sum


def test_sum_sign_dataset_is_a_stream() -> None:
    ds = load_dataset("sum")
    assert ds.is_stream and ds.train_x is None and ds.num_classes == 2 and ds.input_shape == (28, 28, 1)
    with pytest.raises(ValueError, match="generated stream"):
        ds.split("train")


def test_sum_sign_samples() -> None:
    num = 2000
    x, y = jax.jit(sample_sum_sign, static_argnums=1)(jax.random.key(0), num)
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == (num, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, (x.reshape(num, -1).sum(-1) >= 0).astype(np.int32))
    assert 0.42 < y.mean() < 0.58, "labels should be roughly balanced"  # +-7 standard errors
    # x = m + noise with m in (-1, 1) and noise in [-2, 2]: every pixel lies within 3 of 0, within 2 of m.
    assert np.abs(x).max() <= 3.0
    per_image_spread = x.reshape(num, -1).max(-1) - x.reshape(num, -1).min(-1)
    assert per_image_spread.max() <= 4.0 + 1e-5
    assert per_image_spread.min() > 3.0  # 784 draws reach near both truncation points: noise is not clipped


# ---------------------------------------------------------------------------------------------- digits


def test_digits_dataset() -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ds = load_dataset("digits")
    assert ds.train_x.shape == (898, 8, 8, 1) and ds.test_x.shape == (899, 8, 8, 1)
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    # The hard-coded constants are the mean and std of all digits pixels after /16.
    bunch = sklearn_datasets.load_digits()
    pixels = bunch.images / 16.0
    mu, s = NORMALISATION["digits"]
    assert mu == pytest.approx(pixels.mean(), abs=1e-5) and s == pytest.approx(pixels.std(), abs=1e-5)
    both = np.concatenate([ds.train_x, ds.test_x])
    assert abs(both.mean()) < 1e-4 and abs(both.std() - 1) < 1e-4
    # The split is a fixed 50/50 partition: the same whatever the seed, and it covers every example.
    other = load_dataset("digits", seed=7)
    np.testing.assert_array_equal(ds.test_x, other.test_x)
    np.testing.assert_array_equal(np.sort(np.concatenate([ds.train_y, ds.test_y])), np.sort(bunch.target))
    assert set(np.unique(ds.test_y)) == set(range(10))


def test_digits_without_sklearn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install scikit-learn"):
        load_dataset("digits")


# ------------------------------------------------------------------------------------- real MNIST files


@pytest.fixture(scope="module")
def real_mnist():
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"MNIST files not found under {SHARED_DATA} (set $VSML_DATA to run this test)")
    return load_dataset("mnist", data_dir=SHARED_DATA)


def test_real_mnist(real_mnist) -> None:
    ds = real_mnist
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    assert ds.train_y.shape == (60000,) and ds.test_y.shape == (10000,)
    assert ds.num_classes == 10 and set(np.unique(ds.train_y)) == set(range(10))
    # The spec constants are MNIST's training statistics, so the normalised train set is ~N(0, 1)-scaled.
    assert abs(float(ds.train_x.mean())) < 0.01 and abs(float(ds.train_x.std()) - 1) < 0.01


def test_real_fashion_mnist() -> None:
    if not (SHARED_DATA / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST files not found under {SHARED_DATA} (set $VSML_DATA to run this test)")
    ds = load_dataset("fashion_mnist", data_dir=SHARED_DATA)
    assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ds.train_y), [6000] * 10)  # shared/datasets/README.md
    np.testing.assert_array_equal(np.bincount(ds.test_y), [1000] * 10)
