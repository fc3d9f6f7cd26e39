"""Tests of the EMNIST, KMNIST and CIFAR-10 loaders (vsml.tasks.datasets, vsml.tasks.cifar; spec/vsml.md §3.3) on
tiny files written in the distributed formats: NumPy only, no JIT."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from vsml.tasks import datasets
from vsml.tasks.cifar import CIFAR10_RECORD_BYTES, read_cifar10_binary, write_cifar10_binary
from vsml.tasks.datasets import NORMALISATION, load_dataset
from vsml.tasks.idx import DataError, write_idx

# spec §3.3's table: (mu, s), image shape, classes.
SPEC = {
    "emnist": ((0.17392, 0.33191), (28, 28, 1), 62),
    "kmnist": ((0.19176, 0.34834), (28, 28, 1), 10),
    "cifar10": ((0.47336, 0.25157), (32, 32, 3), 10),
}
EMNIST_STEMS = {
    "train": ("emnist-byclass-train-images-idx3-ubyte", "emnist-byclass-train-labels-idx1-ubyte"),
    "test": ("emnist-byclass-test-images-idx3-ubyte", "emnist-byclass-test-labels-idx1-ubyte"),
}
KMNIST_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
KMNIST_NPZ = {
    "train": ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"),
    "test": ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"),
}
SIZES = {"train": 7, "test": 4}
MARK = (3, 17)  # (row, col) of a pixel set to 255 in every image, everything else left < 255


@pytest.fixture(autouse=True)
def _fresh_caches():
    caches = (datasets._read_array_cached, datasets._normalised_split, datasets._cifar10_split)
    for cache in caches:  # tests write different files at recycled tmp paths
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    images = rng.integers(0, 255, size=(n, *shape), dtype=np.uint8)  # 0..254
    images[:, MARK[0], MARK[1]] = 255
    images[0, 0, 0] = 0
    return images


def _write_idx_dataset(folder: Path, stems: dict, num_classes: int, suffix: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng, written = np.random.default_rng(0), {}
    for split, (images_stem, labels_stem) in stems.items():
        images = _images(rng, SIZES[split], (28, 28))
        labels = (np.arange(SIZES[split]) * 9 % num_classes).astype(np.uint8)
        labels[-1] = num_classes - 1  # the largest class occurs
        write_idx(folder / f"{images_stem}{suffix}", images)
        write_idx(folder / f"{labels_stem}{suffix}", labels)
        written[split] = (images, labels)
    return written


def _write_kmnist_npz(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng, written = np.random.default_rng(1), {}
    for split, (images_file, labels_file) in KMNIST_NPZ.items():
        images = _images(rng, SIZES[split], (28, 28))
        labels = (np.arange(SIZES[split]) % 10).astype(np.uint8)
        np.savez_compressed(folder / images_file, images)  # positional: stored as 'arr_0', as ROIS-CODH's are
        np.savez_compressed(folder / labels_file, labels)
        written[split] = (images, labels)
    return written


def _write_cifar10(folder: Path, per_batch: int = 3) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng, written = np.random.default_rng(2), {"train": ([], []), "test": ([], [])}
    files = [(f"data_batch_{i}.bin", "train") for i in range(1, 6)] + [("test_batch.bin", "test")]
    for index, (file, split) in enumerate(files):
        images = _images(rng, per_batch, (32, 32, 3))
        labels = ((np.arange(per_batch) + index) % 10).astype(np.uint8)
        write_cifar10_binary(folder / file, images, labels)
        written[split][0].append(images)
        written[split][1].append(labels)
    return {split: (np.concatenate(x), np.concatenate(y)) for split, (x, y) in written.items()}


def _check(ds, name: str, written: dict) -> None:
    (mu, s), shape, num_classes = SPEC[name]
    assert NORMALISATION[name] == (mu, s)
    assert ds.name == name and ds.num_classes == num_classes and ds.input_shape == shape and not ds.is_stream
    for split in ("train", "test"):
        x, y = ds.split(split)
        images, labels = written[split]
        assert x.shape == (len(images), *shape) and x.dtype == np.float32
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, labels)
        expected = (images.reshape(x.shape) / 255.0 - mu) / s  # spec §3.3 steps 1 and 4
        np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
        # Orientation: the marked pixel comes back at (row, col), and nowhere else is at full intensity.
        assert np.all(x[:, MARK[0], MARK[1]] == pytest.approx((1 - mu) / s, abs=1e-6))
        assert x.max(axis=(0, -1)).argmax() == MARK[0] * shape[1] + MARK[1]
        assert not x.flags.writeable


# ------------------------------------------------------------------------------------------------ EMNIST


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_emnist_byclass_from_idx_files(tmp_path: Path, suffix: str) -> None:
    written = _write_idx_dataset(tmp_path / "emnist", EMNIST_STEMS, 62, suffix)
    ds = load_dataset("emnist", data_dir=tmp_path)
    _check(ds, "emnist", written)
    assert ds.train_y.max() == 61  # byclass: 62 classes


def test_emnist_images_are_not_transposed(tmp_path: Path) -> None:
    """spec §3.3: "Images are not transposed": the array is the file's row-major [H, W] as stored (NIST's files hold
    each character transposed; tfds passes them on so), so an asymmetric image comes back unchanged."""
    written = _write_idx_dataset(tmp_path / "emnist", EMNIST_STEMS, 62, ".gz")
    images = written["train"][0].copy()
    images[0] = 0
    images[0, 2, 20] = 255  # row 2, col 20: its transpose (20, 2) stays dark
    write_idx(tmp_path / "emnist" / f"{EMNIST_STEMS['train'][0]}.gz", images)
    x = load_dataset("emnist", data_dir=tmp_path).train_x[0, ..., 0]
    assert x[2, 20] > 2 and x[20, 2] < 0


@pytest.mark.parametrize("folder", ["emnist/gzip", "gzip"])
def test_emnist_as_unzipped_from_nist(tmp_path: Path, folder: str) -> None:
    """NIST's gzip.zip unpacks to gzip/; it is found there, under emnist/ or directly in the data folder."""
    written = _write_idx_dataset(tmp_path / folder, EMNIST_STEMS, 62, ".gz")
    _check(load_dataset("emnist", data_dir=tmp_path), "emnist", written)


def test_emnist_labels_beyond_61_are_rejected(tmp_path: Path) -> None:
    _write_idx_dataset(tmp_path / "emnist", EMNIST_STEMS, 62, ".gz")
    path = tmp_path / "emnist" / f"{EMNIST_STEMS['test'][1]}.gz"
    write_idx(path, np.full(SIZES["test"], 62, np.uint8))
    with pytest.raises(DataError, match=r"emnist-byclass-test-labels.*labels must lie in \[0, 62\)"):
        load_dataset("emnist", data_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ KMNIST


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_kmnist_from_idx_files(tmp_path: Path, suffix: str) -> None:
    written = _write_idx_dataset(tmp_path / "kmnist", KMNIST_STEMS, 10, suffix)
    _check(load_dataset("kmnist", data_dir=tmp_path), "kmnist", written)


def test_kmnist_from_npz_files(tmp_path: Path) -> None:
    written = _write_kmnist_npz(tmp_path / "kmnist")
    _check(load_dataset("kmnist", data_dir=tmp_path), "kmnist", written)


def test_kmnist_prefers_idx_and_never_mixes_forms(tmp_path: Path) -> None:
    idx = _write_idx_dataset(tmp_path / "kmnist", KMNIST_STEMS, 10, ".gz")
    _write_kmnist_npz(tmp_path / "kmnist")
    np.testing.assert_array_equal(load_dataset("kmnist", data_dir=tmp_path).test_y, idx["test"][1])
    # Images as .npz only: the labels are read from the .npz too, and a missing one is named.
    (tmp_path / "kmnist" / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "kmnist" / "kmnist-test-labels.npz").unlink()
    with pytest.raises(FileNotFoundError, match="kmnist-test-labels.npz"):
        load_dataset("kmnist", data_dir=tmp_path)


def test_kmnist_missing_file_names_both_forms(tmp_path: Path) -> None:
    _write_idx_dataset(tmp_path / "kmnist", KMNIST_STEMS, 10, ".gz")
    (tmp_path / "kmnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("kmnist", data_dir=tmp_path)
    message = str(info.value)
    assert (
        str(tmp_path / "kmnist" / "t10k-images-idx3-ubyte.gz") in message
        and "kmnist-test-imgs.npz" in message
    )
    assert "--data-dir" in message and "VSML_DATA" in message


def test_kmnist_npz_errors_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "kmnist"
    _write_kmnist_npz(folder)
    np.savez_compressed(folder / "kmnist-train-labels.npz", labels=np.zeros(SIZES["train"], np.uint8))
    with pytest.raises(DataError, match=r"kmnist-train-labels.npz: no array 'arr_0'.*\['labels'\]"):
        load_dataset("kmnist", data_dir=tmp_path)
    datasets._read_array_cached.cache_clear()
    data = (folder / "kmnist-train-imgs.npz").read_bytes()
    (folder / "kmnist-train-imgs.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="kmnist-train-imgs.npz: corrupt or truncated"):
        load_dataset("kmnist", data_dir=tmp_path)
    (folder / "kmnist-train-imgs.npz").write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="kmnist-train-imgs.npz"):
        load_dataset("kmnist", data_dir=tmp_path)


def test_kmnist_npz_counts_must_agree(tmp_path: Path) -> None:
    _write_kmnist_npz(tmp_path / "kmnist")
    np.savez_compressed(tmp_path / "kmnist" / "kmnist-test-labels.npz", np.zeros(2, np.uint8))
    with pytest.raises(
        DataError, match=r"kmnist-test-imgs.npz has 4 images but .*kmnist-test-labels.npz has 2"
    ):
        load_dataset("kmnist", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("folder", ["cifar-10-batches-bin", "cifar10", "cifar10/cifar-10-batches-bin"])
def test_cifar10_from_binary_batches(tmp_path: Path, folder: str) -> None:
    written = _write_cifar10(tmp_path / folder)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    _check(ds, "cifar10", written)
    assert len(ds.train_y) == 5 * 3 and len(ds.test_y) == 3  # the five training batches, in order


def test_cifar10_record_layout(tmp_path: Path) -> None:
    """A record by hand: label byte, then the R, G and B planes of 32x32, each row-major."""
    planes = np.zeros((3, 32, 32), np.uint8)
    planes[0, 1, 2], planes[1, 3, 4], planes[2, 5, 6] = 10, 20, 30  # R at (1, 2), G at (3, 4), B at (5, 6)
    (tmp_path / "one.bin").write_bytes(bytes([7]) + planes.tobytes())
    images, labels = read_cifar10_binary(tmp_path / "one.bin")
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8 and labels.tolist() == [7]
    assert images[0, 1, 2, 0] == 10 and images[0, 3, 4, 1] == 20 and images[0, 5, 6, 2] == 30
    assert int(images.sum()) == 60
    write_cifar10_binary(tmp_path / "again.bin", images, labels)
    assert (tmp_path / "again.bin").read_bytes() == (tmp_path / "one.bin").read_bytes()


def test_cifar10_corrupt_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar10(folder)
    path = folder / "data_batch_3.bin"
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # truncated
    with pytest.raises(
        DataError, match=rf"data_batch_3.bin: {len(data) - 5} bytes .* {CIFAR10_RECORD_BYTES}-byte"
    ):
        load_dataset("cifar10", data_dir=tmp_path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="data_batch_3.bin: 0 bytes"):
        load_dataset("cifar10", data_dir=tmp_path)
    path.write_bytes(bytes([10]) + data[1:])  # label 10 in the first record
    with pytest.raises(DataError, match=r"data_batch_3.bin: record 0 has label 10, outside 0..9"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_missing_batch_is_named(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch.bin.*--data-dir.*VSML_DATA"):
        load_dataset("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    "name, folders, file",
    [
        ("emnist", ["emnist/", "emnist/gzip/", "gzip/"], "emnist-byclass-train-images-idx3-ubyte.gz"),
        ("kmnist", ["kmnist/"], "train-images-idx3-ubyte.gz"),
        (
            "cifar10",
            ["cifar-10-batches-bin/", "cifar10/", "cifar10/cifar-10-batches-bin/"],
            "data_batch_1.bin",
        ),
    ],
)
def test_missing_folder_names_where_it_looked_and_the_fix(
    tmp_path: Path, name: str, folders: list[str], file: str
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert f"dataset {name!r}: folder not found" in message and file in message
    for folder in folders:
        assert str(tmp_path / folder) in message
    assert "--data-dir" in message and "VSML_DATA" in message and "docs/experiments.md" in message


def test_wrong_image_size_is_rejected(tmp_path: Path) -> None:
    """An image file of another size (e.g. another dataset's) is named, not loaded with a wrong input shape."""
    _write_idx_dataset(tmp_path / "kmnist", KMNIST_STEMS, 10, ".gz")
    write_idx(tmp_path / "kmnist" / "t10k-images-idx3-ubyte.gz", np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte.gz: kmnist images must be 28x28x1 .*got 32x32x1"
    ):
        load_dataset("kmnist", data_dir=tmp_path)


def test_idx_corruption_is_named(tmp_path: Path) -> None:
    """The IDX reader's checks (bad magic, truncation) reach the new datasets with the file's name."""
    _write_idx_dataset(tmp_path / "emnist", EMNIST_STEMS, 62, "")
    path = tmp_path / "emnist" / EMNIST_STEMS["train"][0]
    data = path.read_bytes()
    path.write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DataError, match="emnist-byclass-train-images-idx3-ubyte: bad IDX magic"):
        load_dataset("emnist", data_dir=tmp_path)
    datasets._read_array_cached.cache_clear()
    path.unlink()
    (tmp_path / "emnist" / f"{EMNIST_STEMS['train'][0]}.gz").write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(DataError, match="emnist-byclass-train-images-idx3-ubyte.gz: truncated IDX payload"):
        load_dataset("emnist", data_dir=tmp_path)


def test_emnist_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    _write_idx_dataset(tmp_path / "emnist", EMNIST_STEMS, 62, ".gz")
    write_idx(tmp_path / "emnist" / f"{EMNIST_STEMS['train'][1]}.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="has 7 images but .*emnist-byclass-train-labels-idx1-ubyte.gz has 3"):
        load_dataset("emnist", data_dir=tmp_path)


def test_dataset_files_present(tmp_path: Path) -> None:
    """Present only with every file of both splits; a wrong data folder is an error, not "absent"."""
    _write_kmnist_npz(tmp_path / "kmnist")
    _write_cifar10(tmp_path / "cifar-10-batches-bin")
    assert datasets.dataset_files_present("kmnist", tmp_path)
    assert datasets.dataset_files_present("cifar10", tmp_path)
    assert not datasets.dataset_files_present("emnist", tmp_path)  # no folder
    assert datasets.dataset_files_present("digits", tmp_path)  # not file-backed
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    assert not datasets.dataset_files_present("cifar10", tmp_path)  # one batch missing
    (tmp_path / "kmnist" / "kmnist-test-labels.npz").unlink()
    assert not datasets.dataset_files_present("kmnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        datasets.dataset_files_present("kmnist", tmp_path / "typo")


def test_dataset_files_present_agrees_with_the_loader(tmp_path: Path) -> None:
    """KMNIST's .npz images are read with .npz labels only: IDX labels beside them do not make it present."""
    folder = tmp_path / "kmnist"
    _write_kmnist_npz(folder)
    for split in ("train", "test"):
        (folder / KMNIST_NPZ[split][1]).unlink()  # the labels only as IDX
        write_idx(folder / f"{KMNIST_STEMS[split][1]}.gz", np.zeros(SIZES[split], np.uint8))
    assert not datasets.dataset_files_present("kmnist", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_dataset("kmnist", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'kmnsit'"):
        datasets.dataset_files_present("kmnsit", tmp_path)
