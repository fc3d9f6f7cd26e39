"""Atomic, pickle-free checkpoints: one `.npz` of arrays plus one JSON file per step (DESIGN.md, "Files").

A checkpoint of step s in a run directory is two files:

    ckpt_<s:08d>.npz    the leaves of each named pytree, keyed `<tree>/<leaf index>` (`meta/0`, `opt_state/3`)
                        in `jax.tree.flatten` order; typed PRNG keys are stored as their raw uint32 key data,
                        dtypes numpy cannot store natively (bfloat16, ...) as same-width unsigned ints
    ckpt_<s:08d>.json   the step, the caller's metadata, the npz's SHA-256 and a description of every tree
                        (leaf paths, shapes, dtypes, tree structure) used to check a restore

Each file is written to a hidden temporary file in the same directory, fsynced and `os.replace`d into place,
the JSON last: a checkpoint exists only once its JSON does, so a crash mid-write leaves at worst an orphan
`.npz` or a temporary file, both ignored. `latest.json` names the newest step for people and tools;
`latest_checkpoint` does not trust it blindly but scans for the newest committed checkpoint. Loading uses
`allow_pickle=False`.

Restoring needs a template of each tree (e.g. `learner.init_meta(key)`, `optimizer.init(meta)`): the arrays
are checked against it leaf by leaf (count, path, shape, dtype) and poured into its structure, so NamedTuple
and optax states come back as themselves without ever serialising Python objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml.atomic import write_atomically, write_text_atomically

PyTree = Any

FORMAT_NAME = "vsml-checkpoint"
FORMAT_VERSION = 1
LATEST_NAME = "latest.json"
_CHECKPOINT_JSON = re.compile(r"^ckpt_(\d{8,})\.json$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: corrupt or uncommitted files, or a template that differs."""


def checkpoint_paths(directory: str | os.PathLike, step: int) -> tuple[Path, Path]:
    """The `(.npz, .json)` paths of step `step` in `directory`."""
    stem = Path(directory) / f"ckpt_{step:08d}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


# ---------------------------------------------------------------------------------------------------- writing


def _write_json_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, allow_nan=True) + "\n"
    write_text_atomically(path, text)


def _json_default(value: Any) -> Any:
    # Metadata often holds numpy/jax scalars (losses, step counters); store them as plain numbers or lists.
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"checkpoint metadata must be JSON-serialisable, got {type(value).__name__}: {value!r}")


def _is_prng_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe_leaf(leaf: Any) -> dict[str, Any]:
    """Shape and dtype of a leaf as recorded in the manifest (without copying device arrays to the host)."""
    if _is_prng_key(leaf):
        return {"shape": list(leaf.shape), "dtype": "key", "prng_impl": str(jax.random.key_impl(leaf))}
    if isinstance(leaf, jax.Array):
        return {"shape": list(leaf.shape), "dtype": np.dtype(leaf.dtype).name}
    array = np.asarray(leaf)
    return {"shape": list(array.shape), "dtype": array.dtype.name}


def _leaf_to_numpy(leaf: Any, where: str) -> np.ndarray:
    """The array stored for the leaf at `where`."""
    if _is_prng_key(leaf):
        return np.asarray(jax.random.key_data(leaf))
    array = np.asarray(leaf)
    if array.dtype.kind in "biufc":
        return array
    if array.dtype.kind == "V" and array.dtype.fields is None and array.dtype.itemsize in (1, 2, 4, 8):
        # ml_dtypes (bfloat16, float8, ...) would be saved as opaque void bytes; store same-width uints.
        return array.view(f"uint{8 * array.dtype.itemsize}")
    # Strings or objects would need pickle (or a format of their own): they belong in the metadata.
    raise TypeError(
        f"checkpoint trees hold numeric arrays only, but leaf {where} has dtype {array.dtype} "
        f"({type(leaf).__name__}); put non-numeric values in the metadata"
    )


def _describe_and_flatten(name: str, tree: PyTree) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    arrays: dict[str, np.ndarray] = {}
    leaves = []
    for index, (path, leaf) in enumerate(path_leaves):
        arrays[f"{name}/{index}"] = _leaf_to_numpy(leaf, f"{name}{jax.tree_util.keystr(path)}")
        leaves.append({"path": jax.tree_util.keystr(path), **_describe_leaf(leaf)})
    return arrays, {"treedef": str(treedef), "leaves": leaves}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    trees: Mapping[str, PyTree],
    metadata: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write the checkpoint of `step` atomically and return its JSON path (the commit marker).

    `trees` maps names (e.g. "meta", "opt_state", "key") to pytrees of arrays; `metadata` is any
    JSON-serialisable mapping (config, metrics). With `keep_last=n`, committed checkpoints older than the
    newest n are deleted once the new one is committed.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"checkpoint step must be a non-negative int, got {step!r}")
    step = int(step)
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    npz_path, json_path = checkpoint_paths(directory, step)

    arrays: dict[str, np.ndarray] = {}
    descriptions: dict[str, Any] = {}
    for name, tree in trees.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"checkpoint tree names must be non-empty strings without '/', got {name!r}")
        tree_arrays, descriptions[name] = _describe_and_flatten(name, tree)
        arrays.update(tree_arrays)
    # Serialise the metadata before touching the disk so a bad value leaves nothing half-written.
    metadata = json.loads(json.dumps(dict(metadata or {}), default=_json_default))

    # Re-saving a step: un-commit the old version first, so a crash before the new JSON lands leaves an
    # ignored orphan .npz rather than an old JSON whose checksum no longer matches the new .npz.
    json_path.unlink(missing_ok=True)
    write_atomically(npz_path, lambda f: np.savez(f, **arrays))
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "step": step,
        "npz": npz_path.name,
        "npz_sha256": _sha256(npz_path),
        "metadata": metadata,
        "trees": descriptions,
    }
    _write_json_atomically(json_path, payload)  # the commit point
    newest = committed_steps(directory)[-1]  # == step unless a later step was already there
    newest_json = checkpoint_paths(directory, newest)[1]
    _write_json_atomically(directory / LATEST_NAME, {"step": newest, "checkpoint": newest_json.name})
    if keep_last is not None:
        for old_step in committed_steps(directory)[:-keep_last]:
            old_npz, old_json = checkpoint_paths(directory, old_step)
            # JSON first: a crash in between leaves an orphan .npz, which is ignored, never a dangling JSON.
            old_json.unlink(missing_ok=True)
            old_npz.unlink(missing_ok=True)
    return json_path


# ---------------------------------------------------------------------------------------------------- finding


def committed_steps(directory: str | os.PathLike) -> list[int]:
    """Steps in `directory` whose JSON and `.npz` both exist, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = []
    for entry in directory.iterdir():
        match = _CHECKPOINT_JSON.match(entry.name)
        if match and entry.with_suffix(".npz").is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The JSON path of the newest committed checkpoint in `directory`, or None if there is none.

    Scans the directory rather than trusting `latest.json`, which a crash can leave one step behind.
    """
    steps = committed_steps(directory)
    return checkpoint_paths(directory, steps[-1])[1] if steps else None


def resolve_checkpoint_json(path_or_dir: str | os.PathLike) -> Path:
    """The committed checkpoint JSON that a run directory, a `.npz`, a `.json` or `latest.json` points at."""
    path = Path(path_or_dir)
    if path.name == LATEST_NAME:
        path = path.parent  # latest.json is a pointer for people; the directory scan is authoritative
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(
                f"no committed checkpoint (ckpt_<step>.json + .npz) in directory {path}; run `vsml meta-train` "
                "into it first"
            )
        return latest
    if path.suffix == ".npz":
        json_path = path.with_suffix(".json")
        if not json_path.exists():
            if path.exists():
                raise CheckpointError(
                    f"checkpoint {path} has no {json_path.name}: it was never committed (interrupted "
                    f"write?); load an earlier checkpoint or the run directory"
                )
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        return json_path
    if path.suffix == ".json":
        if not path.exists():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        return path
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path not found: {path}")
    raise CheckpointError(f"expected a run directory, a ckpt_<step>.npz or a ckpt_<step>.json, got {path}")


# ---------------------------------------------------------------------------------------------------- reading


def checkpoint_metadata(path_or_dir: str | os.PathLike) -> dict[str, Any]:
    """The metadata mapping saved with a checkpoint (a run directory's newest, a `.npz` or a `.json`), without
    reading its arrays."""
    json_path = resolve_checkpoint_json(path_or_dir)
    metadata = _read_manifest(json_path).get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"corrupt checkpoint manifest {json_path}: 'metadata' is not a mapping")
    return metadata


def _read_manifest(json_path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint manifest {json_path}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{json_path} is not a vsml checkpoint manifest (no format: {FORMAT_NAME!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has checkpoint format version {manifest.get('version')!r}; this vsml reads version "
            f"{FORMAT_VERSION}"
        )
    return manifest


@contextlib.contextmanager
def _open_npz(npz_path: Path, expected_sha256: str | None) -> Iterator[np.lib.npyio.NpzFile]:
    if not npz_path.exists():
        raise CheckpointError(f"checkpoint arrays {npz_path} are missing (its JSON manifest exists)")
    if expected_sha256 is not None and _sha256(npz_path) != expected_sha256:
        raise CheckpointError(f"corrupt checkpoint {npz_path}: its SHA-256 does not match the manifest")
    try:
        npz = np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"corrupt checkpoint {npz_path}: {e}") from e
    with npz:
        yield npz


def _restore_leaf(template: Any, array: np.ndarray, where: str, source: Path) -> Any:
    if _is_prng_key(template):
        if tuple(array.shape[: template.ndim]) != template.shape or array.dtype != np.uint32:
            raise CheckpointError(f"corrupt checkpoint {source}: key data of {where} has shape {array.shape}")
        return jax.random.wrap_key_data(jnp.asarray(array), impl=jax.random.key_impl(template))
    dtype, shape = np.dtype(_describe_leaf(template)["dtype"]), tuple(np.shape(template))
    try:
        if array.dtype != dtype:  # a same-width uint standing in for an ml_dtypes array
            array = array.view(dtype)
    except ValueError as e:
        raise CheckpointError(f"corrupt checkpoint {source}: {where} is stored as {array.dtype}: {e}") from e
    if array.shape != shape:
        raise CheckpointError(
            f"corrupt checkpoint {source}: {where} has shape {array.shape}, expected {shape}"
        )
    if isinstance(template, jax.Array):
        return jnp.asarray(array, dtype=dtype)
    if isinstance(template, np.ndarray):
        return array
    if isinstance(template, np.generic):
        return array[()]
    return type(template)(array.item())  # Python scalars stay Python scalars


def _restore_tree(
    name: str, template: PyTree, description: Mapping[str, Any], npz: np.lib.npyio.NpzFile, source: Path
) -> PyTree:
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    saved = description["leaves"]
    if len(saved) != len(path_leaves):
        raise CheckpointError(
            f"tree {name!r} in {source} has {len(saved)} leaves but the template has {len(path_leaves)}; "
            f"saved structure {description.get('treedef')}, template structure {treedef}"
        )
    restored = []
    for index, ((path, leaf), desc) in enumerate(zip(path_leaves, saved, strict=True)):
        where = f"{name}{jax.tree_util.keystr(path)}"
        if desc.get("path") != jax.tree_util.keystr(path):
            raise CheckpointError(
                f"leaf {index} of tree {name!r} in {source} was saved as {name}{desc.get('path')} but the "
                f"template has {where}"
            )
        expected = _describe_leaf(leaf)
        for field in ("dtype", "shape", "prng_impl"):
            if desc.get(field) != expected.get(field):
                raise CheckpointError(
                    f"leaf {where} in {source}: saved {field} {desc.get(field)!r} but the template has "
                    f"{expected.get(field)!r}"
                )
        key = f"{name}/{index}"
        try:
            array = npz[key]
        except KeyError:
            raise CheckpointError(
                f"corrupt checkpoint {source}: array {key!r} ({where}) is missing"
            ) from None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"corrupt checkpoint {source}: cannot read {key!r} ({where}): {e}") from e
        restored.append(_restore_leaf(leaf, array, where, source))
    return jax.tree.unflatten(treedef, restored)


def load_checkpoint(
    path_or_dir: str | os.PathLike, templates: Mapping[str, PyTree], partial: bool = False
) -> tuple[int, dict[str, PyTree], dict[str, Any]]:
    """Restore `(step, trees, metadata)` from a run directory (its newest checkpoint), a `.npz` or a `.json`.

    Each tree named in `templates` is restored into its template's structure; `metadata` is what was given to
    `save_checkpoint`. The templates must name every tree of the checkpoint unless `partial=True` (e.g. only
    "meta" for evaluation), so that forgetting to restore an optimiser state is an error, not a silent reset.
    Raises `FileNotFoundError` for a missing path and `CheckpointError` naming the file and the offending leaf
    for corrupt files or a template whose leaves differ in number, path, shape or dtype.
    """
    json_path = resolve_checkpoint_json(path_or_dir)
    manifest = _read_manifest(json_path)
    try:
        step = int(manifest["step"])
        descriptions = manifest["trees"]
        npz_path = json_path.parent / manifest["npz"]
        if not isinstance(descriptions, dict) or not all(
            isinstance(d, dict) and isinstance(d.get("leaves"), list) for d in descriptions.values()
        ):
            raise TypeError("'trees' must map names to {'leaves': [...]}")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint manifest {json_path}: missing or bad field {e}") from e
    missing = [name for name in templates if name not in descriptions]
    if missing:
        raise CheckpointError(
            f"checkpoint {json_path} has no tree(s) {missing}; it holds {sorted(descriptions)}"
        )
    unrestored = sorted(set(descriptions) - set(templates))
    if unrestored and not partial:
        raise CheckpointError(
            f"checkpoint {json_path} also holds tree(s) {unrestored} that have no template; pass templates "
            f"for them, or partial=True to restore only {sorted(templates)}"
        )
    with _open_npz(npz_path, manifest.get("npz_sha256")) as npz:
        trees = {
            name: _restore_tree(name, template, descriptions[name], npz, npz_path)
            for name, template in templates.items()
        }
    return step, trees, manifest.get("metadata", {})
