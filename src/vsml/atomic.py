"""Write-then-rename file output: a crash never leaves a half-written file under the final name.

The temporary file is `.<name>.<8 random characters>.tmp` beside the target (`tempfile.mkstemp`). A process
killed mid-write leaves it behind; `stale_temporary_files` finds such leftovers of chosen targets, for a
caller that knows no other process is writing there (a run folder under its lock, `vsml.run.run_dir`).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_umask() -> int:
    # Reading the umask means setting it; done once, at import, not while other threads may create files.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_NEW_FILE_MODE = 0o666 & ~_read_umask()  # what open() gives a new file


def _file_mode(path: Path) -> int:
    """A replaced file keeps its mode; a new one gets open()'s, not mkstemp's 0600, which would hide
    checkpoints and exported LAs from the other users of a shared folder."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return _NEW_FILE_MODE


_TEMP_SUFFIX = ".tmp"
# mkstemp's names: prefix + 8 characters of [a-z0-9_] + suffix (CPython's tempfile._RandomNameSequence).
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}" + re.escape(_TEMP_SUFFIX) + "$")


def _temporary_target(name: str) -> str | None:
    """The file name a temporary file of `write_atomically` was to become, or None if `name` is not one."""
    match = _TEMP_NAME.match(name)
    return match.group("target") if match else None


def stale_temporary_files(directory: str | os.PathLike, targets: Callable[[str], bool]) -> list[Path]:
    """The temporary files in `directory` (not below) that `write_atomically` left when its process was killed
    mid-write, for target names where `targets(name)` is true; sorted. Only safe to delete while no other
    process writes those targets (the caller's lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        target = _temporary_target(entry.name)
        if target is not None and targets(target) and entry.is_file() and not entry.is_symlink():
            found.append(entry)
    return sorted(found)


def _naming_the_file(error: OSError, path: Path) -> OSError:
    """`error` with `path` as its filename when it has none (a full disk raises `[Errno 28] No space left on
    device` from write/fsync, naming no file): same type and errno, so callers can still tell them apart."""
    if error.filename is not None or error.errno is None:
        return error
    try:
        return type(error)(error.errno, error.strerror or os.strerror(error.errno), str(path))
    except TypeError:  # a subclass with a constructor of its own: keep it as it is
        return error


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temporary file in `path`'s directory (same filesystem, so `os.replace` is an
    atomic rename), fsync it, then move it into place. The temporary file is removed on any failure; an
    `OSError` that names no file (a full disk) is re-raised naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # filesystems without POSIX modes (vfat, some CIFS/FUSE mounts)
            os.chmod(tmp_name, _file_mode(path))
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(error, OSError):
            named = _naming_the_file(error, path)
            if named is not error:
                raise named from error
        raise
    _fsync_directory(path.parent)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))
