"""Turn a meta-trained run into a shipped pretrained LA: `vsml export-pretrained RUN --name NAME`.

Reads the run's newest checkpoint (meta-parameters and experiment config) and its `evaluation.json` (written by
`vsml evaluate RUN`), follows `train.init_from` warm starts back to the first run, and writes NAME.npz (the
meta-parameters keyed by pytree path, `vsml.pretrained.load`) and NAME.json: the learner settings, how inputs are
prepared, the config of every run in the chain with its meta-training time, the commands that made it (from a
JSON-lines file of `{"command": ..., "wall_seconds": ...}`, e.g. written by the script that ran them), the git
commit, the meta-test table, and a reference evaluation on scikit-learn's digits that tests recompute.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.resources
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vsml.atomic import write_atomically, write_text_atomically
from vsml.config import config_to_dict
from vsml.evaluation.arrays import evaluate_arrays
from vsml.evaluation.meta_test import TrainedRun, load_trained_run, meta_trained_label
from vsml.pretrained.load import FORMAT_NAME, FORMAT_VERSION, PRETRAINED_DIR, Pretrained, leaf_key
from vsml.run.experiment import ExperimentConfig, population_slices

__all__ = ["export_destination", "export_pretrained", "reference_evaluation"]

# The reference evaluation stored at export time and recomputed by tests/pretrained/test_pretrained.py: small,
# fixed, and on data that ships with scikit-learn, so the check needs no dataset folder.
REFERENCE = {"dataset": "digits", "episodes": 4, "length": 100, "seed": 0}  # length: at most


def reference_evaluation(la: Pretrained, episodes: int, length: int, seed: int) -> dict[str, Any]:
    """Mean online (and query) accuracy of `la` on scikit-learn's 1,797 digits as raw arrays (standardised)."""
    from sklearn.datasets import load_digits  # imported only here (it is slow to import)

    X, y = load_digits(return_X_y=True)
    result = evaluate_arrays(la, X, y, episodes=episodes, length=length, seed=seed)
    return {"mean_accuracy": result.mean_accuracy, "query_accuracy": result.mean_query_accuracy}


def _git_provenance() -> dict[str, Any]:
    """The commit of the source that runs, where it runs from a git checkout (an editable install); None and
    no changes for an installed package. Asked in the package's own folder: its location is not guessed."""
    package = Path(str(importlib.resources.files("vsml")))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.rstrip("\n") if out.returncode == 0 else None

    # Only a repository that tracks this package's files (not, e.g., one that holds a venv in an ignored folder).
    tracked = bool(git("ls-files", "--", "__init__.py"))
    commit = git("rev-parse", "HEAD") if tracked else None
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return {
        "git_commit": commit,
        # Files of the package (code and shipped configs) that differed from that commit when exporting (a
        # shared working tree); paths relative to the repository root.
        "uncommitted_changes": [line[3:] for line in (changed or "").splitlines()],
    }


def _meta_step_seconds(run_dir: Path, iterations: int) -> float | None:
    """Sum of the per-iteration `seconds` of metrics.jsonl up to `iterations` (compile time included), or None
    where that file does not hold every iteration (`train.log_every` > 1, or lines lost)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    seconds = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by a kill
            continue
        iteration = record.get("iteration") if isinstance(record, dict) else None
        if (
            isinstance(record.get("seconds"), (int, float))
            and isinstance(iteration, int)
            and iteration <= iterations
        ):
            seconds[iteration] = record["seconds"]
    if len(seconds) != iterations:
        return None
    return round(sum(seconds.values()), 1)


def _describe_data(config: ExperimentConfig) -> str:
    """E.g. "mnist 8x8 randomly projected + mnist 8x8"."""
    parts = []
    for piece in population_slices(config):
        transform, text = piece.transform, piece.dataset
        if transform.resize:
            text += f" {transform.resize[0]}x{transform.resize[1]}"
        if transform.classes:
            text += f" classes {list(transform.classes)}"
        if transform.project:
            text += " randomly projected"
        if transform.shuffles:
            text += " pixels shuffled"
        parts.append(text)
    return " + ".join(dict.fromkeys(parts))


def _run_entry(run: TrainedRun) -> dict[str, Any]:
    cfg = run.config
    return {
        "run": str(run.path),
        "data": _describe_data(cfg),
        "meta_optimizer": cfg.meta_optimizer,
        "iterations": run.iteration,
        "meta_step_seconds": _meta_step_seconds(run.path, run.iteration),
        "config": config_to_dict(cfg),
    }


def _chain(run: TrainedRun) -> tuple[list[TrainedRun], str | None]:
    """The run and the meta-train runs it was warm-started from (`train.init_from`), first run first; and the
    first warm start that is not a `vsml meta-train` run (e.g. a `vsml clone` checkpoint), if any."""
    chain, seen = [run], {run.path.resolve()}
    while chain[0].config.train.init_from:
        start = chain[0].config.train.init_from
        try:
            parent = load_trained_run(start)
        except (ValueError, FileNotFoundError) as e:
            return chain, f"{start} ({e})"
        if parent.path.resolve() in seen:
            raise ValueError(f"train.init_from of {chain[0].path} loops back to {parent.path}")
        seen.add(parent.path.resolve())
        chain.insert(0, parent)
    return chain, None


def _meta_test_table(evaluation: dict[str, Any]) -> dict[str, Any]:
    """evaluation.json without the per-step curves (kept small): per dataset and learner the mean, its 95%
    interval, the final step, the blocks, and the mean over the first 50 and 100 steps."""
    table = {key: evaluation.get(key) for key in ("iteration", "episodes", "length", "query_steps")}
    table["datasets"] = {}
    for dataset, entry in evaluation["datasets"].items():
        learners = {}
        for label, r in entry["learners"].items():
            row = {
                key: r.get(key)
                for key in (
                    "role",
                    "mean_accuracy",
                    "mean_accuracy_interval_95",
                    "final_accuracy",
                    "query_accuracy",
                    "block_accuracy",
                )
            }
            curve = r.get("curve") or []
            for steps in (50, 100):
                if len(curve) > steps:
                    row[f"accuracy_steps_1_{steps}"] = float(np.mean(curve[:steps]))
            learners[label] = row
        tuned = {k: v.get("chosen") for k, v in entry.get("tuned_learning_rates", {}).items()}
        table["datasets"][dataset] = {
            "num_classes": entry.get("num_classes"),
            "chance": entry.get("chance"),
            "tuned_learning_rates": tuned,
            "learners": learners,
        }
    return table


def _read_commands(path: str | Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    commands = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}:{number}: not valid JSON ({e}); each line must be an object such as "
                '{"command": "vsml meta-train ...", "wall_seconds": 12.3}'
            ) from e
        if not isinstance(record, dict) or "command" not in record:
            raise ValueError(f"{path}:{number}: expected a JSON object with a 'command', got {line!r}")
        commands.append(record)
    return commands


def export_destination(out_dir: str | Path | None, into_package: bool) -> Path:
    """The folder an export writes to: `out_dir`, or the package's pretrained folder with `into_package`."""
    if out_dir is not None and into_package:
        raise ValueError(
            f"export to --out {out_dir} or --into-package (the installed package's pretrained folder), not both"
        )
    if out_dir is None and not into_package:
        raise ValueError(
            "export-pretrained needs a destination: --out DIR (out_dir=...), or --into-package "
            f"(into_package=True) to write into the installed package's pretrained folder ({PRETRAINED_DIR}), "
            "where load_pretrained(NAME) finds it"
        )
    return PRETRAINED_DIR if into_package else Path(out_dir)  # type: ignore[arg-type]


def export_pretrained(
    run_path: str | Path,
    name: str,
    *,
    out_dir: str | Path | None = None,
    into_package: bool = False,
    evaluation: str | Path | None = None,
    commands: str | Path | None = None,
    description: str = "",
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write `out_dir/NAME.npz` and `NAME.json` from the run at `run_path` and its `evaluation.json` (or
    `evaluation`); returns their paths.

    The destination is explicit: `out_dir` (`--out DIR`), or `into_package=True` (`--into-package`) for the
    installed package's pretrained folder, where `load_pretrained(NAME)` finds it; neither (or both) is a
    ValueError. An existing NAME there (e.g. a shipped LA such as `vsml_mnist`) is a FileExistsError unless
    `overwrite` (`--force`) is given.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"--name must be letters, digits, '_' or '-', got {name!r}")
    out_dir = export_destination(out_dir, into_package)
    existing = [str(p) for p in (out_dir / f"{name}.npz", out_dir / f"{name}.json") if p.exists()]
    if existing and not overwrite:  # checked first: before the run is loaded and evaluated
        raise FileExistsError(
            f"pretrained LA {name!r} already exists ({' and '.join(existing)}): pick another --name or --out, "
            "or pass --force (overwrite=True) to replace it"
        )
    run = load_trained_run(run_path)
    evaluation_path = Path(evaluation) if evaluation else run.path / "evaluation.json"
    if not evaluation_path.is_file():
        raise FileNotFoundError(
            f"{evaluation_path} not found: meta-test the run first (`vsml evaluate {run.path}`) or pass --evaluation"
        )
    meta_test = _meta_test_table(json.loads(evaluation_path.read_text()))
    cfg = run.config
    chain, other_start = _chain(run)

    arrays = {
        leaf_key(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(run.meta)[0]
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    payload = buffer.getvalue()

    metadata: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": name,
        "description": description,
        "learner": dict(cfg.learner),
        "meta_parameters": {
            "npz": f"{name}.npz",
            "npz_sha256": hashlib.sha256(payload).hexdigest(),
            "count": int(sum(a.size for a in arrays.values())),
            "leaves": {key: {"shape": list(a.shape), "dtype": a.dtype.name} for key, a in arrays.items()},
        },
        "input": {
            "normalisation": cfg.task.normalisation,
            "examples_per_step": cfg.task.batch_size,
            "query_steps": cfg.task.query_steps,
        },
        "meta_training": {
            "trained_on": " -> ".join(_describe_data(entry.config) for entry in chain),
            "label": meta_trained_label(run),
            "runs": [_run_entry(entry) for entry in chain],
            "started_from": other_start,  # None: the first run started from its learner's init_meta
            "commands": _read_commands(commands),
        },
        "meta_test": {"source": str(evaluation_path), **meta_test},
        "provenance": {
            **_git_provenance(),
            "exported_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "jax_version": jax.__version__,
        },
    }
    la = Pretrained(name, run.learner, run.meta, metadata)
    # At most the meta-test's episode length: BLUR's LA learns for 15 batches, then answers its queries.
    check = {**REFERENCE, "length": min(REFERENCE["length"], int(meta_test["length"]))}
    reference = reference_evaluation(la, check["episodes"], check["length"], check["seed"])
    metadata["reference_check"] = {**check, **reference}

    npz_path = write_atomically(out_dir / f"{name}.npz", lambda f: f.write(payload))
    json_path = write_text_atomically(out_dir / f"{name}.json", json.dumps(metadata, indent=1) + "\n")
    return npz_path, json_path
