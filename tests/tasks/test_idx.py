"""Tests of the IDX reader (vsml.tasks.idx): round trips, and a clear DataError for every kind of bad file."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from vsml.tasks.idx import DataError, read_idx, write_idx

SHARED_DATA = Path(os.environ.get("VSML_DATA") or Path(__file__).resolve().parents[3] / "shared" / "datasets")


def _raw_idx(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes() + payload


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([[-300, 2], [5, 32000]], dtype=np.int16),
        np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        np.array([np.pi, -np.e], dtype=np.float64),
    ],
    ids=["uint8", "int8", "int16", "int32", "float32", "float64"],
)
def test_round_trip(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"data-idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is an ordinary writable array
    assert not list(tmp_path.glob("*.tmp")), "write_idx left a temporary file behind"


def test_reads_a_hand_written_big_endian_file(tmp_path: Path) -> None:
    # Written byte by byte, independently of write_idx: labels 1, 258 as big-endian int32.
    path = tmp_path / "labels-idx1"
    path.write_bytes(_raw_idx(0x0C, (2,), b"\x00\x00\x00\x01\x00\x00\x01\x02"))
    np.testing.assert_array_equal(read_idx(path), [1, 258])


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"  # gzip data without the .gz suffix
    path.write_bytes(gzip.compress(_raw_idx(0x08, (1, 2, 2), bytes([1, 2, 3, 4]))))
    np.testing.assert_array_equal(read_idx(path), [[[1, 2], [3, 4]]])


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-idx3-ubyte.gz"
    with pytest.raises(FileNotFoundError, match="nope-idx3-ubyte.gz") as info:
        read_idx(path)
    assert "VSML_DATA" in str(info.value) and "--data-dir" in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x01\x02\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x42\x01\x00\x00\x00\x01\x05", "type code 0x42"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (_raw_idx(0x08, (2, 3), bytes(5)), r"truncated IDX payload.*\(2, 3\)"),
        (_raw_idx(0x0C, (2,), bytes(7)), "truncated IDX payload"),
        (_raw_idx(0x08, (2,), bytes(3)), "trailing bytes"),
    ],
    ids=["magic", "type", "zero-dims", "short", "short-header", "truncated", "truncated-int32", "extra"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_bad_content_is_a_data_error(tmp_path: Path, content: bytes, message: str, compress: bool) -> None:
    path = tmp_path / ("bad.gz" if compress else "bad")
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(_raw_idx(0x08, (100,), bytes(range(100))))
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(good[:10] + bytes(reversed(good[10:])))
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(garbage)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good[: len(good) // 2])  # e.g. an interrupted download
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(cut)


def test_gz_name_without_gzip_content(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(_raw_idx(0x08, (1,), b"\x07"))
    with pytest.raises(DataError, match="not a gzip file"):
        read_idx(path)


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_write_idx_rejects_types_without_a_code(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason=f"MNIST files not found under {SHARED_DATA}")
def test_real_mnist_test_labels() -> None:
    labels = read_idx(SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist()[:2] == [980, 1135]  # the well-known MNIST test counts of 0 and 1
