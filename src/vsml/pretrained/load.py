"""Pretrained learning algorithms shipped with the package: `load_pretrained(name)`, `list_pretrained()`.

Each one is a pair of files in `vsml/pretrained/`:

    NAME.npz    the meta-parameters (VSML's V_M, a BLUR genome), one array per leaf, keyed by the leaf's path
                in the pytree (`sets[0].lstm_W`, `synapse_update`): stable under reordering, readable without vsml
    NAME.json   what it is: the learner and its settings, what it was meta-trained on (the experiment config,
                warm starts, the exact commands and their wall times, the git commit), how inputs must be
                prepared, its meta-test table against online SGD/Adam, and a small reference evaluation on
                scikit-learn's digits that the tests recompute

They are written from a run directory by `vsml export-pretrained` (`vsml/pretrained/export.py`), so every
shipped LA comes from the project's own `vsml meta-train` and `vsml evaluate`. Loading builds the learner from
its settings, uses `learner.init_meta` as the template and checks every stored array against it (path, shape)
and the file against its SHA-256; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml.learners import build_learner
from vsml.learners.base import Learner, PyTree
from vsml.tasks.transforms import NORMALISATIONS

__all__ = [
    "PRETRAINED_DIR",
    "Pretrained",
    "PretrainedError",
    "as_pretrained",
    "check_finite_meta",
    "describe_pretrained",
    "headline",
    "leaf_key",
    "list_pretrained",
    "load_pretrained",
]

# The shipped LAs: package data, found as the package finds its resources (STYLE.md §17).
PRETRAINED_DIR = Path(str(importlib.resources.files("vsml.pretrained")))
# The LA a user gets without naming one (`LearnedOnlineClassifier()`, the README's first example).
DEFAULT_PRETRAINED = "vsml_general"
FORMAT_NAME = "vsml-pretrained"
FORMAT_VERSION = 1


class PretrainedError(ValueError):
    """A pretrained LA that cannot be loaded: unknown name, or files that do not fit their description."""


@dataclass(frozen=True, eq=False)
class Pretrained:
    """A learning algorithm ready to use: `learner.step(meta, state, x, y)` learns, `metadata` says what it is."""

    name: str
    learner: Learner
    meta: PyTree
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def normalisation(self) -> str:
        """How its meta-training inputs were scaled: "per_feature" (each feature standardised) or "dataset"."""
        return self.metadata.get("input", {}).get("normalisation", "per_feature")

    @property
    def examples_per_step(self) -> int:
        """Examples per inner step: 1 for VSML (online), a batch for BLUR (128 in its paper setting)."""
        return int(self.metadata.get("input", {}).get("examples_per_step", 1))

    @property
    def query_steps(self) -> int:
        """Forward-only query steps its meta-test scores after learning (BLUR); 0 for plain online learning."""
        return int(self.metadata.get("input", {}).get("query_steps", 0))


def leaf_key(path: tuple) -> str:
    """The npz key of a pytree leaf: its path without the leading dot, e.g. `sets[0].lstm_W`."""
    return jax.tree_util.keystr(path).lstrip(".")


def _available(directory: Path = PRETRAINED_DIR) -> list[str]:
    """Names in `directory` with both their .json and .npz: what every listing and error message shows."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json") if p.with_suffix(".npz").is_file())


def list_pretrained() -> list[str]:
    """Names of the pretrained learning algorithms shipped in this installation, sorted."""
    return _available()


def _read_metadata(json_path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PretrainedError(f"cannot read pretrained metadata {json_path}: {e}") from e
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise PretrainedError(f"{json_path} is not a vsml pretrained LA (no format: {FORMAT_NAME!r})")
    if metadata.get("version") != FORMAT_VERSION:
        raise PretrainedError(
            f"{json_path} has format version {metadata.get('version')!r}; this vsml reads {FORMAT_VERSION}"
        )
    _check_structure(metadata, json_path)
    return metadata


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_structure(metadata: dict[str, Any], json_path: Path) -> None:
    """The fields that loading and `describe_pretrained` read, checked for type: a hand-edited file is a
    PretrainedError naming the file and the field, not a KeyError or AttributeError from deep inside."""

    def bad(field: str, expected: str, value: Any) -> PretrainedError:
        return PretrainedError(f"{json_path}: {field} must be {expected}, got {_short(value)}")

    learner = metadata.get("learner")
    if not isinstance(learner, Mapping):
        raise bad('"learner"', 'a mapping of learner settings, e.g. {"name": "vsml", ...}', learner)
    if not isinstance(learner.get("name"), str):
        raise bad('"learner"."name"', "a learner name (a string)", learner.get("name"))
    for key in ("meta_parameters", "input", "meta_training"):  # optional; written by every export
        if key in metadata and not isinstance(metadata[key], Mapping):
            raise bad(f'"{key}"', "a mapping", metadata[key])
    sha = metadata.get("meta_parameters", {}).get("npz_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise bad('"meta_parameters"."npz_sha256"', "a SHA-256 hex digest (64 characters) or null", sha)
    given = metadata.get("input", {})
    if "normalisation" in given and given["normalisation"] not in NORMALISATIONS:
        raise bad('"input"."normalisation"', f"one of {', '.join(NORMALISATIONS)}", given["normalisation"])
    for key, minimum in (("examples_per_step", 1), ("query_steps", 0)):
        if key in given and not _is_int(given[key], minimum):
            raise bad(f'"input"."{key}"', f"an integer >= {minimum}", given[key])
    trained_on = metadata.get("meta_training", {}).get("trained_on", "?")
    if not isinstance(trained_on, str):
        raise bad('"meta_training"."trained_on"', "a string", trained_on)
    _check_meta_test(metadata.get("meta_test"), bad)


def _check_meta_test(meta_test: Any, bad: Callable[[str, str, Any], PretrainedError]) -> None:
    """What `headline` reads: per dataset and learner a role and, for the meta-trained LA and the baselines,
    the accuracy it shows (query accuracy where the LA is scored on query steps)."""
    if meta_test is None:
        return
    if not isinstance(meta_test, Mapping):
        raise bad('"meta_test"', "a mapping (or null)", meta_test)
    for key in ("length", "query_steps"):
        if meta_test.get(key) is not None and not _is_int(meta_test[key], 0):
            raise bad(f'"meta_test"."{key}"', "an integer >= 0 (or null)", meta_test[key])
    datasets = meta_test.get("datasets", {})
    if not isinstance(datasets, Mapping):
        raise bad('"meta_test"."datasets"', "a mapping of dataset name to its results", datasets)
    accuracy = "query_accuracy" if meta_test.get("query_steps") else "mean_accuracy"
    for dataset, entry in datasets.items():
        where = f'"meta_test"."datasets"."{dataset}"'
        rows = entry.get("learners", {}) if isinstance(entry, Mapping) else None
        if not isinstance(rows, Mapping):
            raise bad(f'{where}."learners"', "a mapping of learner label to its results", rows)
        for label, row in rows.items():
            if not isinstance(row, Mapping):
                raise bad(f'{where}."learners"."{label}"', "a mapping", row)
            if row.get("role") in ("meta-trained", "baseline") and not _is_number(row.get(accuracy)):
                raise bad(f'{where}."learners"."{label}"."{accuracy}"', "a number", row.get(accuracy))


def _paths(name: str, directory: Path) -> tuple[Path, Path]:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise PretrainedError(f"a pretrained LA is named by a plain string, got {name!r}")
    json_path, npz_path = directory / f"{name}.json", directory / f"{name}.npz"
    if not json_path.is_file() or not npz_path.is_file():
        known = ", ".join(_available(directory)) or "none"
        raise PretrainedError(f"no pretrained learning algorithm {name!r}; available: {known}")
    return json_path, npz_path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_NPZ_ONLY = (
    "a pretrained LA's meta-parameters must be an .npz of plain numeric arrays without pickles "
    "(as `vsml export-pretrained` writes them)"
)


def _open_npz(npz_path: Path) -> np.lib.npyio.NpzFile:
    """`np.load` without pickles, its failures (a pickle, not a zip, a truncated file) named by the file."""
    try:
        return np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PretrainedError(f"{npz_path} is not a readable .npz ({e}); {_NPZ_ONLY}") from e


def _restore_meta(template: PyTree, npz_path: Path) -> PyTree:
    """The arrays of `npz_path` poured into `template`'s structure, each checked by key and shape."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    with _open_npz(npz_path) as npz:
        stored = set(npz.files)
        expected = [leaf_key(path) for path, _ in path_leaves]
        if stored != set(expected):
            raise PretrainedError(
                f"{npz_path} holds arrays {sorted(stored)} but the learner's meta-parameters are "
                f"{sorted(expected)}: the .npz and its .json's learner settings do not belong together"
            )
        leaves = []
        for key, (_, leaf) in zip(expected, path_leaves, strict=True):
            try:
                array = npz[key]
            except ValueError as e:  # an object array: it would need unpickling
                raise PretrainedError(
                    f"{npz_path}: array {key} cannot be read without pickle ({e}); {_NPZ_ONLY}"
                ) from e
            except (OSError, zipfile.BadZipFile) as e:
                raise PretrainedError(f"{npz_path}: array {key} cannot be read ({e}); {_NPZ_ONLY}") from e
            if array.shape != tuple(np.shape(leaf)):
                raise PretrainedError(
                    f"{npz_path}: {key} has shape {array.shape}, the learner expects {tuple(np.shape(leaf))}"
                )
            if array.dtype.kind not in "biuf":
                raise PretrainedError(f"{npz_path}: {key} has dtype {array.dtype}, not a numeric array")
            if not np.isfinite(array).all():
                raise PretrainedError(
                    f"{npz_path}: {key} has {np.size(array) - np.isfinite(array).sum()} NaN or infinite "
                    "values; a learner would predict nothing with them (e.g. a diverged meta-training run): "
                    "export the LA again from a checkpoint with finite meta-parameters"
                )
            leaves.append(jnp.asarray(array, dtype=jnp.result_type(leaf)))
    return jax.tree.unflatten(treedef, leaves)


def check_finite_meta(meta: PyTree, name: str) -> None:
    """A ValueError naming the first leaf of `meta` with NaN or infinite values: a learner runs on them without
    complaint and predicts class 0 (NaN logits) for everything."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(meta)[0]:
        try:
            array = np.asarray(leaf)
        except jax.errors.TracerArrayConversionError:  # inside jit/vmap: its values are not known here
            return
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise ValueError(
                f"the meta-parameters of {name} are not finite: {leaf_key(path) or 'the leaf'} has "
                f"{array.size - np.isfinite(array).sum()} NaN or infinite values (e.g. from a diverged "
                "meta-training run); use meta-parameters from a finite checkpoint"
            )


def load_pretrained(name: str, directory: str | Path | None = None) -> Pretrained:
    """The pretrained learning algorithm `name` (see `list_pretrained()`; `vsml list-pretrained`).

        >>> la = load_pretrained("vsml_mnist")
        >>> state = la.learner.init_state(la.meta, key, TaskSpec((64,), 10))
        >>> logits, state = la.learner.step(la.meta, state, x, y)   # predict x, then learn from its label

    `directory` reads the files from elsewhere (default: the package's `pretrained/` folder). Raises
    `PretrainedError` (a ValueError) naming the available ones for an unknown name, and for files that do not
    match their description (checksum, array keys or shapes).
    """
    directory = PRETRAINED_DIR if directory is None else Path(directory)
    json_path, npz_path = _paths(name, directory)
    metadata = _read_metadata(json_path)
    expected_sha = metadata.get("meta_parameters", {}).get("npz_sha256")
    if expected_sha is not None and _sha256(npz_path) != expected_sha:
        raise PretrainedError(f"{npz_path} does not match the SHA-256 recorded in {json_path.name}")
    try:
        learner = build_learner(metadata["learner"])
    except (ValueError, TypeError) as e:
        raise PretrainedError(f'{json_path}: its "learner" settings do not build a learner: {e}') from e
    meta = _restore_meta(learner.init_meta(jax.random.PRNGKey(0)), npz_path)
    return Pretrained(name, learner, meta, metadata)


def as_pretrained(learner_or_pretrained: Any, meta: PyTree | None = None) -> Pretrained:
    """A `Pretrained` from a name, a `Pretrained`, a `(learner, meta)` pair or a learner (`meta` given, else the
    learner's own `init_meta`, e.g. the configured rate of `online_sgd(0.01)`). Meta-parameters with NaN or
    infinite values are a ValueError (`check_finite_meta`)."""
    obj = learner_or_pretrained
    if isinstance(obj, str):
        obj = load_pretrained(obj)
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], Learner):
        obj, meta = obj
    if isinstance(obj, Pretrained):
        la = obj if meta is None else Pretrained(obj.name, obj.learner, meta, obj.metadata)
    elif isinstance(obj, Learner):
        meta = obj.init_meta(jax.random.PRNGKey(0)) if meta is None else meta
        la = Pretrained(type(obj).__name__, obj, meta, {})
    else:
        raise TypeError(
            "expected a pretrained name (see vsml.list_pretrained()), a Pretrained, a Learner or a (learner, "
            f"meta) pair, got {type(learner_or_pretrained).__name__}"
        )
    check_finite_meta(la.meta, repr(la.name))
    return la


def headline(metadata: Mapping[str, Any]) -> str:
    """One line of the meta-test table: the meta-trained LA's mean online accuracy against the best baseline."""
    meta_test = metadata.get("meta_test") or {}
    parts = []
    for dataset, entry in meta_test.get("datasets", {}).items():
        rows = entry.get("learners", {})
        key = "query_accuracy" if meta_test.get("query_steps") else "mean_accuracy"
        trained = [r for r in rows.values() if r.get("role") == "meta-trained"]
        baselines = {label: r for label, r in rows.items() if r.get("role") == "baseline"}
        if not trained:
            continue
        text = f"{dataset} {trained[0][key]:.3f}"
        if baselines:
            label, best = max(baselines.items(), key=lambda item: item[1][key])
            text += f" ({label.split(' (')[0]} {best[key]:.3f})"
        parts.append(text)
    if not parts:
        return "no meta-test recorded"
    if meta_test.get("query_steps"):
        what = f"query accuracy after {meta_test.get('length')} learning steps"
    else:
        what = f"mean online accuracy over {meta_test.get('length')} steps"
    return f"{what}: " + ", ".join(parts)


def describe_pretrained(directory: str | Path | None = None) -> list[str]:
    """One line per shipped LA: name, learner, what it was meta-trained on, its headline meta-test result; a
    pair of files that is not a readable pretrained LA gets a line saying why, the others are still listed."""
    directory = PRETRAINED_DIR if directory is None else Path(directory)
    lines = []
    for name in _available(directory):
        try:
            metadata = _read_metadata(directory / f"{name}.json")
        except PretrainedError as e:
            lines.append(f"{name}: cannot be read: {e}")
            continue
        trained_on = metadata.get("meta_training", {}).get("trained_on", "?")
        lines.append(
            f"{name}: {metadata['learner'].get('name')}, meta-trained on {trained_on}; {headline(metadata)}"
        )
    return lines
