"""Reader for IDX files, the format of MNIST and Fashion-MNIST (spec/vsml.md §3.3; shared/datasets/README.md).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <number of dims>``, then one big-endian uint32
per dimension, then the row-major payload in big-endian order. Files may be gzip-compressed; gzip input is
recognised by its own magic bytes, so a decompressed file keeps working whatever its name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from vsml.atomic import write_atomically

__all__ = ["IDX_DTYPES", "DataError", "read_idx", "write_idx"]

# The standard IDX type codes; payloads are big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "check the file, or copy it again from the original dataset (the layout: README.md, section Data)"


class DataError(ValueError):
    """A data file exists but its content is not what it claims to be (corrupt, truncated, wrong format)."""


def _read_bytes(path: Path) -> bytes:
    """The decompressed bytes of `path`, gzip or raw; corrupt input raises DataError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"IDX file not found: {path}. Pass --data-dir or set $VSML_DATA to the folder that holds the "
            "datasets (e.g. ../shared/datasets; the layout: README.md, section Data)."
        )
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        if path.suffix == ".gz":
            raise DataError(f"{path}: named .gz but is not a gzip file (no gzip magic bytes); {_FIX}")
        return raw
    try:
        return gzip.decompress(raw)
    # EOFError: the gzip stream was cut short; the others: bad header or a corrupt deflate stream.
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err}); {_FIX}") from err


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a native-endian numpy array of the shape its header gives.

    Raises FileNotFoundError if the file is missing and DataError (a ValueError) on a bad magic number,
    an unknown type code, or a payload whose size disagrees with the header (e.g. a truncated download).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, too short for an IDX header; {_FIX}")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} (must start 0x0000), not an IDX file; {_FIX}"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known}); {_FIX}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions; {_FIX}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path}: truncated IDX header ({len(data)} of {header_size} bytes); {_FIX}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_size
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX payload: header says shape {shape} ({expected} bytes) but only {found} "
            f"bytes follow; {_FIX}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} trailing bytes after the IDX payload of shape {shape}; {_FIX}"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_size)
    # astype copies, so the result is writable and independent of `data`, and native-endian for JAX.
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip-compressed if `path` ends in .gz); the inverse of `read_idx`.

    Used to build small fixtures and to export data; the file is written to a temporary name first and then
    renamed, so an interrupted write leaves nothing half-written behind (DESIGN.md, Errors).
    """
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        known = ", ".join(sorted(str(dt) for dt in codes))
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code; use one of {known}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1..255 dimensions, got shape {array.shape}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if Path(path).suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    write_atomically(path, lambda file: file.write(payload))
