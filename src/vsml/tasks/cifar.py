"""Reader for CIFAR-10's binary version (spec/vsml.md §3.3; https://www.cs.toronto.edu/~kriz/cifar.html).

``cifar-10-binary.tar.gz`` unpacks to ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` ... ``data_batch_5.bin``
and ``test_batch.bin``: each a plain (never gzipped) run of 3073-byte records, one label byte in 0..9 and then
3072 bytes of pixels, the 1024 red values of the 32×32 image row-major, then the green ones, then the blue ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vsml.atomic import write_atomically
from vsml.tasks.idx import DataError

__all__ = ["CIFAR10_IMAGE_SHAPE", "CIFAR10_RECORD_BYTES", "read_cifar10_binary", "write_cifar10_binary"]

CIFAR10_IMAGE_SHAPE = (32, 32, 3)  # [H, W, C]: channels last, as every image in vsml
CIFAR10_RECORD_BYTES = 1 + 32 * 32 * 3  # the label byte, then the R, G and B planes
_NUM_CLASSES = 10
_FIX = "copy it again from cifar-10-binary.tar.gz (the layout: docs/experiments.md, section Data)"


def read_cifar10_binary(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch file as ``(images [N, 32, 32, 3] uint8, labels [N] uint8)``.

    Raises FileNotFoundError if the file is missing and DataError (a ValueError) naming the file if it is empty,
    is not a whole number of 3073-byte records (e.g. truncated, or the Python-pickle version), or holds a label
    outside 0..9.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 file not found: {path}. Pass --data-dir or set $VSML_DATA to the folder that holds "
            "cifar-10-batches-bin/ (docs/experiments.md, section Data)."
        )
    raw = path.read_bytes()
    if not raw or len(raw) % CIFAR10_RECORD_BYTES:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole, non-zero number of {CIFAR10_RECORD_BYTES}-byte CIFAR-10 "
            f"records (1 label byte + 32x32x3 pixels); truncated, or not the binary version? {_FIX}"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].copy()
    if labels.max() >= _NUM_CLASSES:
        bad = int(np.argmax(labels >= _NUM_CLASSES))
        raise DataError(
            f"{path}: record {bad} has label {labels[bad]}, outside 0..{_NUM_CLASSES - 1}; the file is corrupt "
            f"or not CIFAR-10 (CIFAR-100's records have 2 label bytes); {_FIX}"
        )
    # Planes [N, C, H, W] to channels last; the copy makes the result contiguous and independent of `raw`.
    images = np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def write_cifar10_binary(path: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images [N, 32, 32, 3]`` and ``labels [N]`` (uint8) as one CIFAR-10 binary batch file; the inverse of
    `read_cifar10_binary`. Used to build small fixtures; written atomically (`vsml.atomic`)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != CIFAR10_IMAGE_SHAPE:
        raise ValueError(
            f"write_cifar10_binary: images must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"write_cifar10_binary: labels must be uint8 [{len(images)}], got {labels.dtype} {labels.shape}"
        )
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    payload = np.concatenate([labels[:, None], planes], axis=1).tobytes()
    write_atomically(path, lambda file: file.write(payload))
