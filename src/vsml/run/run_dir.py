"""The run folder of `vsml meta-train --out R`: its files, its lock, and what a resume must match.

    R/config.yaml          the experiment (for people and `--resume`; the checkpoints record it too)
    R/metrics.jsonl        one JSON line per logged iteration
    R/ckpt_<step>.npz|json checkpoints (`vsml.run.checkpoint`), R/latest.json
    R/.lock                the advisory lock of the process that writes the folder

One folder, one writing process: `lock_run_folder` takes an exclusive `fcntl.flock` on R/.lock (process 0 of
a multi-process run takes it). The operating system drops it when its holder exits, however it exits (kill -9
included), so a dead run never leaves the folder locked; another process is refused with a message naming the
folder and the holder's pid. Within one process the newest trainer of a folder takes the lock over from an
older one (a resumed trainer replacing an interrupted one, as the tests and `vsml reproduce` do). Under the
lock a run clears the temporary files that interrupted atomic writes of its own files left behind
(`clear_stale_temporaries`).

A resumed run must be the same experiment as the one the folder holds: the experiment recorded in the newest
checkpoint is the authority (config.yaml is a copy a person may have edited); only `RESUMABLE_CHANGES` and the
speed-only settings may differ.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import socket
import threading
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from vsml.atomic import stale_temporary_files, write_text_atomically
from vsml.config import config_to_dict, read_yaml_mapping
from vsml.meta.parallel import is_main_process, same_on_every_process
from vsml.run.checkpoint import CheckpointError, checkpoint_metadata, checkpoint_paths, committed_steps
from vsml.run.experiment import ExperimentConfig, experiment_from_dict

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"

# Config keys a resumed run may change: how far it goes and how many checkpoints it keeps.
RESUMABLE_CHANGES = ("train.iterations", "train.keep_checkpoints")

# Config keys that change how fast a run goes, not what it computes (tested equal).
SPEED_ONLY_KEYS = (
    "es.members_at_once",
    "grad.episodes_at_once",
    "learner.dense_block_synapses",
    "learner.dense_kernel",
)

# The files a meta-training run writes into its folder (atomically): their stale temporaries are its own.
_RUN_FILES = re.compile(r"^(ckpt_\d{8,}\.(npz|json)|latest\.json|config\.yaml|metrics\.jsonl)$")


# ---------------------------------------------------------------------------------------------------- lock


class RunFolderBusyError(OSError):
    """Another process holds the run folder's lock (an OSError: the CLI reports it in one line)."""


class RunFolderLock:
    """An exclusive advisory lock on a run folder, held until `release()` (or the end of a `with` block, the
    object's garbage collection, or the process). The lock file stays in the folder: deleting it would let two
    processes lock two different files."""

    def __init__(self, run_dir: Path, file: IO[str]) -> None:
        self.run_dir = run_dir
        self._file: IO[str] | None = file

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:  # dropped without release() (a trainer never run): unlock now, not at exit
        with contextlib.suppress(Exception):  # at interpreter shutdown: the OS unlocks at exit anyway
            self.release()


# This process's locks by folder (weak: a lock nobody holds any more is collected, which unlocks it).
_HELD: weakref.WeakValueDictionary[Path, RunFolderLock] = weakref.WeakValueDictionary()
_HELD_GUARD = threading.Lock()


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as its holder wrote it ("pid 123 on host h"), for the refusal message."""
    try:
        words = lock_path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        words = []
    if not words or not words[0].isdigit():
        return "a process whose pid is not recorded yet"
    return f"pid {words[0]} on host {words[1] if len(words) > 1 else '?'}"


def lock_run_folder(run_dir: str | os.PathLike) -> RunFolderLock:
    """Create `run_dir` if needed and lock it for this process (`RunFolderLock`; usable in a `with` block).

    Raises `RunFolderBusyError` naming the folder and the holder's pid if another process holds it; a lock of
    this process on the folder is handed over to the new holder. The lock is released when its holder exits,
    also when it is killed."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    with _HELD_GUARD:
        previous = _HELD.get(key)
        if previous is not None and previous._file is not None:
            lock = RunFolderLock(run_dir, previous._file)
            previous._file = None  # handed over: releasing the old object no longer unlocks the folder
            _HELD[key] = lock
            return lock
        lock = _lock_new(run_dir)
        _HELD[key] = lock
        return lock


def _lock_new(run_dir: Path) -> RunFolderLock:
    lock_path = run_dir / LOCK_FILE
    file = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for as long as the lock is)
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise RunFolderBusyError(
            f"run folder {run_dir} is in use: {_holder(lock_path)} holds its lock ({lock_path}). Two runs in one "
            "folder would mix their logs and checkpoints: wait for that run to end (or stop it), or choose "
            "another --out"
        ) from None
    except BaseException:
        file.close()
        raise
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()} {socket.gethostname()}\n")
    file.flush()
    return RunFolderLock(run_dir, file)


def claim_run_folder(run_dir: str | os.PathLike) -> RunFolderLock | None:
    """The run folder's lock on process 0 (None on the others); when process 0 cannot take it, its error there
    and a `RunFolderBusyError` on the others, so that no process waits for the others in vain."""
    lock, busy = None, None
    if is_main_process():
        try:
            lock = lock_run_folder(run_dir)
        except OSError as error:  # busy, or the folder cannot be made: the others must not wait either
            busy = error
    try:
        same_on_every_process(int(busy is None), "whether process 0 could lock the run folder")
    except ValueError:
        busy = busy or RunFolderBusyError(f"process 0 could not lock the run folder {run_dir}; see its message")
    if busy is not None:
        raise busy
    return lock


def clear_stale_temporaries(run_dir: str | os.PathLike, lock: RunFolderLock) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes of the run's own files (checkpoints,
    latest.json, config.yaml, metrics.jsonl) left in `run_dir`; returns them. Needs the folder's lock, so that
    no live writer's file is taken; files of other commands (e.g. `vsml evaluate`'s reports) are left alone."""
    if not lock.held or Path(lock.run_dir).resolve() != Path(run_dir).resolve():
        raise ValueError(f"clearing temporary files in {run_dir} needs that folder's lock")
    removed = []
    for path in stale_temporary_files(run_dir, lambda name: bool(_RUN_FILES.match(name))):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------- resuming


def _comparable(data: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    """A recorded experiment as `config_to_dict` gives it (defaults filled in), less the keys a resume may
    change."""
    data = config_to_dict(experiment_from_dict(data))
    for dotted in (*ignore, *SPEED_ONLY_KEYS):
        section, key = dotted.split(".")
        data[section].pop(key, None)
    return data


def recorded_experiment(run_dir: str | os.PathLike) -> tuple[str, dict[str, Any]] | None:
    """`(where, experiment)`: the experiment recorded in the newest checkpoint of `run_dir` (the authority on
    what the run is), else its config.yaml, else None. `where` describes the source for messages.

    A newest manifest that cannot be read is passed over for the one before (restoring it fails anyway, with
    its own message saying how to resume from the one before)."""
    run_dir = Path(run_dir)
    for step in reversed(committed_steps(run_dir)):
        checkpoint = checkpoint_paths(run_dir, step)[1]
        try:
            experiment = checkpoint_metadata(checkpoint).get("experiment")
        except CheckpointError:
            continue
        if isinstance(experiment, dict):
            return f"the experiment recorded in its checkpoints ({checkpoint.name})", experiment
        break  # a checkpoint without a record (not written by the trainer): config.yaml is all there is
    saved_path = run_dir / CONFIG_FILE
    if saved_path.exists():
        return str(saved_path), read_yaml_mapping(saved_path)
    return None


def differences_from_saved_config(
    run_dir: str | Path, config: ExperimentConfig, ignore: tuple[str, ...] = RESUMABLE_CHANGES
) -> list[str]:
    """Dotted keys where `config` differs from the experiment `run_dir` holds (`recorded_experiment`: its
    newest checkpoint's record, else its config.yaml; none if there is neither), leaving out the `ignore` keys
    (`section.key`) and the settings that change only the speed (`SPEED_ONLY_KEYS`: a run may resume with
    another choice, or with a default changed since)."""
    recorded = recorded_experiment(run_dir)
    if recorded is None:
        return []
    return differing_keys(_comparable(recorded[1], ignore), _comparable(config_to_dict(config), ignore))


def check_same_experiment(run_dir: str | Path, config: ExperimentConfig) -> None:
    """A `ValueError` unless `config` may resume the run in `run_dir` (`differences_from_saved_config`)."""
    run_dir = Path(run_dir)
    recorded = recorded_experiment(run_dir)
    if recorded is None:
        return
    where, experiment = recorded
    differing = differing_keys(
        _comparable(experiment, RESUMABLE_CHANGES), _comparable(config_to_dict(config), RESUMABLE_CHANGES)
    )
    if not differing:
        return
    saved_path = run_dir / CONFIG_FILE
    edited = ""
    if saved_path.exists() and where != str(saved_path):
        in_yaml = differing_keys(
            _comparable(experiment, RESUMABLE_CHANGES),
            _comparable(read_yaml_mapping(saved_path), RESUMABLE_CHANGES),
        )
        if in_yaml:
            edited = f" ({saved_path} itself differs from that record in {', '.join(in_yaml)}: edited?)"
    raise ValueError(
        f"cannot resume {run_dir}: its config differs in {', '.join(differing)} from {where}{edited}. A run "
        f"resumes as the experiment it started as, changing only {' or '.join(RESUMABLE_CHANGES)}; for "
        "another experiment start a new --out directory"
    )


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested config mappings differ (floats compared with `math.isclose`), sorted."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b):
        return []
    return [] if a == b else [prefix.rstrip(".")]


# ----------------------------------------------------------------------------------------------- metrics


def truncate_metrics(path: Path, iteration: int) -> None:
    """Drop log records written after the checkpoint we resume from, so the log reads like one clean run."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iteration", 0) <= iteration:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut off by the interruption
    write_text_atomically(path, "".join(line + "\n" for line in kept))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "RESUMABLE_CHANGES",
    "SPEED_ONLY_KEYS",
    "RunFolderBusyError",
    "RunFolderLock",
    "check_same_experiment",
    "claim_run_folder",
    "clear_stale_temporaries",
    "differences_from_saved_config",
    "differing_keys",
    "lock_run_folder",
    "read_metrics",
    "recorded_experiment",
    "truncate_metrics",
]
