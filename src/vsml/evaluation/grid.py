"""Compare learners on the same held-out episodes: the dataset-generalisation grid (VSML paper Fig. 8, spec §6.4).

Contenders are trained runs (any learner: VSML, BLUR, Meta-RNN, Hebbian, FWP, FWMemory) and hand-designed
online optimisers named by token (`sgd`, `adam`, `sgd-160`, `adam-160`: linear or one 160-unit tanh layer,
spec §5). Every contender sees, per test dataset, the same underlying episodes (same seed, test split), each
preprocessed the way it was meta-trained (its run's normalisation, padding and transform). Hand-designed
optimisers get a learning rate tuned per dataset on the *training* split first, so they are tuned baselines.

Each cell is the mean online accuracy over all steps and episodes, ± a 95% interval over episodes; datasets a
run saw during meta-training (its population, and the runs it was warm-started from) are marked as seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vsml.config import apply_overrides
from vsml.evaluation.baselines import HAND_DESIGNED, sgd_meta, tune_learning_rate
from vsml.evaluation.defaults import EVAL_SEED
from vsml.evaluation.labels import learner_labels
from vsml.evaluation.meta_test import load_trained_run
from vsml.evaluation.online import OnlineEvaluation, evaluate_on_source
from vsml.learners import learner_name
from vsml.learners.base import Learner, PyTree
from vsml.run.checkpoint import checkpoint_metadata
from vsml.run.experiment import (
    ExperimentConfig,
    experiment_from_dict,
    experiment_sampler,
    make_experiment_source,
    population_slices,
)
from vsml.tasks.transforms import DoesNotFitError

# Paper Sec. 4.3 meta-test settings (spec §3.4, the authors' eval_invariances.yaml): 5 classes, all 10, inputs
# resized to 48×48 and 21×21 (sizes never meta-trained on), a new random projection, shuffled pixels.
INVARIANCE_SETTINGS: dict[str, tuple[str, ...]] = {
    "5 classes": ("transform.classes=[5,8,1,4,2]",),
    "10 classes": (),
    "48×48": ("transform.resize=[48,48]",),
    "21×21": ("transform.resize=[21,21]",),
    "projected": ("transform.project=true",),
    "shuffled": ("transform.shuffle=true",),
}


@dataclass(frozen=True)
class Contender:
    """One row of the comparison: a learner, how its episodes are built, and what it was meta-trained on."""

    label: str
    learner: Learner
    config: ExperimentConfig  # its normalisation and transform build its episodes
    meta: PyTree | None = None  # None: hand-designed, the learning rate is tuned per dataset
    rates: tuple[float, ...] = ()
    seen: frozenset[str] = frozenset()


def contender_from_run(path: str | Path, overrides: Sequence[str] = ()) -> Contender:
    """A trained run (directory or checkpoint); `overrides` change its meta-test setting (`transform.resize=null`)."""
    run = load_trained_run(path, tuple(overrides))
    name, _ = learner_labels(run.learner)
    label = f"{name} ({run.path.name}, {run.iteration} it.)"
    return Contender(
        label, run.learner, run.config, run.meta, seen=frozenset(meta_training_datasets(run.config))
    )


def contender_from_token(token: str, overrides: Sequence[str] = ()) -> Contender:
    """A hand-designed optimiser by name: the authors' per-dataset normalisation, no transform unless
    `overrides` (the same meta-test changes the runs get, e.g. `transform.project=true`) set one."""
    if token not in HAND_DESIGNED:
        raise ValueError(
            f"{token!r} is neither a run directory nor a hand-designed learner; use a path made by "
            f"`vsml meta-train` or one of {', '.join(HAND_DESIGNED)}"
        )
    baseline = HAND_DESIGNED[token]
    config = experiment_from_dict(apply_overrides({}, overrides))
    return Contender(baseline.label, baseline.learner(), config, rates=baseline.rates)


def contenders_from_arguments(tokens: Sequence[str], overrides: Sequence[str] = ()) -> list[Contender]:
    """Paths become runs (with `overrides`), known names become hand-designed optimisers."""
    if not tokens:
        raise ValueError("compare needs at least one run directory or learner name")
    return [
        contender_from_run(t, overrides) if Path(t).exists() else contender_from_token(t, overrides)
        for t in tokens
    ]


def meta_training_datasets(config: ExperimentConfig, depth: int = 0) -> set[str]:
    """Datasets of the run's population, plus those of the run it was warm-started from (`train.init_from`)."""
    seen = {s.dataset for s in population_slices(config)}
    if config.train.init_from and depth < 8:
        try:
            experiment = checkpoint_metadata(Path(config.train.init_from)).get("experiment")
        except (FileNotFoundError, ValueError):
            return seen  # the warm start is gone or unreadable; what it saw cannot be known here
        if experiment is not None:
            seen |= meta_training_datasets(experiment_from_dict(experiment), depth + 1)
    return seen


def generalisation_grid(
    contenders: Sequence[Contender],
    datasets: Sequence[str],
    num_episodes: int = 16,
    length: int = 500,
    seed: int = EVAL_SEED,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Online accuracy of every contender on every dataset, on the same held-out episodes; JSON-able."""
    if not datasets:
        raise ValueError("compare needs at least one meta-test dataset (--datasets)")
    report: dict[str, Any] = {"episodes": num_episodes, "length": length, "seed": seed, "rows": []}
    chance: dict[str, float] = {}
    bar = tqdm(total=len(contenders) * len(datasets), desc="compare", unit="cell", disable=not progress)
    for contender in contenders:
        row: dict[str, Any] = {"label": contender.label, "seen": sorted(contender.seen), "cells": {}}
        if contender.meta is not None:
            row["learner"] = learner_name(contender.learner)
        for dataset in datasets:
            try:
                cell = _evaluate_cell(contender, dataset, num_episodes, length, seed, data_dir)
                chance[dataset] = cell.pop("chance")
            except DoesNotFitError as error:
                # E.g. a padded baseline cannot take a larger input (the paper's CIFAR10 column, spec §6.4).
                cell = {"unavailable": str(error)}
            row["cells"][dataset] = cell
            bar.set_postfix_str(f"{contender.label} on {dataset}"[:60])
            bar.update()
        report["rows"].append(row)
    bar.close()
    missing = [d for d in datasets if d not in chance]
    if missing:
        raise ValueError(f"no contender could run on {missing}: {report['rows'][0]['cells'][missing[0]]}")
    report["chance"] = {d: chance[d] for d in datasets}
    return report


def _evaluate_cell(
    contender: Contender, dataset: str, num_episodes: int, length: int, seed: int, data_dir: str | None
) -> dict[str, Any]:
    cfg = contender.config
    test = make_experiment_source(cfg, dataset, "test", data_dir)
    sampler = experiment_sampler(cfg, length)
    cell: dict[str, Any] = {}
    if contender.meta is None:
        train = make_experiment_source(cfg, dataset, "train", data_dir)
        # Tuned on the training split with the next key (not `TUNE_SEED`): other episodes than the reported ones.
        rate, scores = tune_learning_rate(
            contender.learner, contender.rates, train, min(num_episodes, 16), sampler, seed=seed + 1
        )
        cell["learning_rate"] = rate
        cell["tuning_accuracy"] = {str(k): v for k, v in scores.items()}
        meta = sgd_meta(rate)
    else:
        meta = contender.meta
    result: OnlineEvaluation = evaluate_on_source(
        contender.learner, meta, test, num_episodes=num_episodes, seed=seed, sampler=sampler
    )
    half = result.accuracy.shape[1] // 2
    cell.update(
        mean_accuracy=result.mean_accuracy,
        interval_95=result.accuracy_interval,
        final_accuracy=result.final_accuracy,
        second_half_accuracy=float(result.accuracy[:, half:].mean()),
        curve=result.curve.tolist(),
        chance=1.0 / sampler.occurring_classes(test),
    )
    return cell


def invariance_grid(
    tokens: Sequence[str],
    datasets: Sequence[str],
    settings: dict[str, Sequence[str]] | None = None,
    overrides: Sequence[str] = (),
    **grid_options: Any,
) -> dict[str, Any]:
    """The invariance table of paper Sec. 4.3 (spec §3.4): every contender on every dataset under each meta-test
    setting (class subset, input size, random projection, pixel shuffle); one grid whose columns are
    "dataset · setting". A setting a contender cannot take (a padded baseline at 48×48) is "n/a"."""
    settings = INVARIANCE_SETTINGS if settings is None else settings
    merged: dict[str, Any] | None = None
    for setting, changes in settings.items():
        contenders = contenders_from_arguments(tokens, [*overrides, *changes])
        report = generalisation_grid(contenders, datasets, **grid_options)
        columns = {d: f"{d} · {setting}" for d in datasets}
        if merged is None:
            merged = {key: report[key] for key in ("episodes", "length", "seed")}
            merged["settings"] = {name: list(c) for name, c in settings.items()}
            merged["rows"] = [{**row, "cells": {}, "seen": []} for row in report["rows"]]
            merged["chance"] = {}
        for target, row in zip(merged["rows"], report["rows"], strict=True):
            target["cells"].update({columns[d]: cell for d, cell in row["cells"].items()})
            target["seen"] += [columns[d] for d in row["seen"] if d in columns]
        merged["chance"].update({columns[d]: value for d, value in report["chance"].items()})
    if merged is None:
        raise ValueError("invariance_grid needs at least one setting")
    return merged
