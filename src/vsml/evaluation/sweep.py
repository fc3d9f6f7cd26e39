"""Learning-rate sweeps for the hand-designed online baselines, so every comparison uses a tuned baseline.

Online SGD and Adam (VSML spec §5, the SGD/Adam row; `vsml.learners.sgd`) come with the spec's default rates
(SGD 0.01, Adam 0.001), but the best rate depends on the dataset, the architecture, the transform and the
episode length. `sweep_learning_rates` measures the mean online accuracy (spec §2: the accuracy of each
prediction made before its label, averaged over all steps and episodes) of every rate on the same episodes, for
each dataset × optimiser × architecture, with the selection rule `vsml evaluate` uses
(`baselines.tune_learning_rate`). A best rate at the edge of the grid is flagged: the optimum may lie outside
it, so the grid should be widened on that side.

`vsml sweep-lr` is the command-line front end; `vsml.report.sweep` writes `lr_sweep.json` and `lr_sweep.md`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from vsml.config import config_to_dict
from vsml.evaluation.baselines import (
    LEARNING_RATES,
    SPEC_DEFAULT_RATES,
    HandDesigned,
    grid_edge,
    sgd_meta,
    tune_learning_rate,
)
from vsml.evaluation.defaults import TUNE_SEED
from vsml.learners.sgd import OPTIMIZERS
from vsml.run.experiment import ExperimentConfig, TaskConfig, experiment_sampler, make_experiment_source
from vsml.tasks.datasets import DATASET_NAMES, SPLITS
from vsml.tasks.transforms import EpisodeTransform

DEFAULT_HIDDEN_SIZES: tuple[tuple[int, ...], ...] = ((), (160,))  # spec §5: linear, one tanh layer of 160


def _rate_key(rate: float) -> str:
    # JSON object keys are strings; `:g` keeps them short and round-trips the grids used here.
    return f"{rate:g}"


def _canonical_dataset(name: str) -> str:
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in DATASET_NAMES:
        hint = (
            " (omniglot is few-shot: its baselines are tuned by `vsml evaluate`)" if key == "omniglot" else ""
        )
        raise ValueError(
            f"unknown dataset {name!r}{hint}; choose from {', '.join(DATASET_NAMES)}, e.g. --datasets mnist,digits"
        )
    return key


def _check_rates(rates: Sequence[float], what: str) -> tuple[float, ...]:
    """Sorted ascending (so "edge of the grid" means the smallest or largest), positive, finite, distinct."""
    if not rates:
        raise ValueError(f"{what} is empty: give at least one learning rate, e.g. 0.001,0.01,0.1")
    checked = []
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValueError(f"{what} must be numbers, got {rate!r}")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{what} must be positive and finite, got {rate!r}; e.g. 0.001,0.01,0.1")
        checked.append(float(rate))
    if len(set(checked)) != len(checked):
        raise ValueError(f"{what} has a repeated rate: {checked}; list each rate once")
    return tuple(sorted(checked))


def _check_hidden_sizes(options: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    if not options:
        raise ValueError("hidden_sizes_options is empty: give at least one architecture, e.g. () for linear")
    checked = []
    for sizes in options:
        sizes = tuple(sizes)
        if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in sizes):
            raise ValueError(
                f"hidden sizes must be positive integers, got {sizes!r}; () is the linear model, (160,) one layer"
            )
        checked.append(sizes)
    if len(set(checked)) != len(checked):
        raise ValueError(f"an architecture is listed twice in {checked}; list each once")
    return tuple(checked)


def sweep_learning_rates(
    datasets: Sequence[str],
    optimizers: Sequence[str] = OPTIMIZERS,
    hidden_sizes_options: Sequence[Sequence[int]] = DEFAULT_HIDDEN_SIZES,
    rates: Sequence[float] | None = None,
    *,
    num_episodes: int = 32,
    length: int = 500,
    seed: int = TUNE_SEED,
    data_dir: str | None = None,
    transform: EpisodeTransform | None = None,
    normalisation: str = "dataset",
    split: str = "train",
    quiet: bool = False,
) -> dict[str, Any]:
    """Mean online accuracy of every learning rate, for each dataset × optimiser × architecture.

    Args:
        datasets: dataset names (`vsml.tasks.DATASET_NAMES`); hyphens are accepted for underscores.
        optimizers: "sgd" (no momentum) and/or "adam".
        hidden_sizes_options: architectures; () is the linear softmax model, (160,) one tanh layer (spec §5).
        rates: one grid for every optimiser; None takes each optimiser's default grid of `vsml evaluate`.
        num_episodes, length: episodes per rate and online steps per episode; tune at the length you compare
            at, since the best rate shrinks as episodes grow.
        seed: the episode key; every rate of a dataset sees the same episodes and initial weights.
        data_dir: dataset folder (None: $VSML_DATA, then ../shared/datasets).
        transform: an `EpisodeTransform` (padding, resize, projection, ...), None for the identity.
        normalisation: "dataset" or "per_feature", as `task.normalisation` of an experiment.
        split: "train" (tune here, then test elsewhere, as `vsml evaluate` does) or "test".
        quiet: no progress bar.

    Returns a JSON-able report: the settings, and per dataset its number of classes, chance accuracy and per
    learner the grid, `accuracy` (rate as a string → mean online accuracy), `best_rate`, `best_accuracy`,
    `edge` ("low" / "high" / "both" when the best rate is at that end of the grid, else None) and `at_edge`.
    """
    names = [_canonical_dataset(name) for name in datasets]
    if not names:
        raise ValueError("no datasets given: name at least one, e.g. --datasets digits")
    if len(set(names)) != len(names):
        raise ValueError(f"a dataset is listed twice in {names}; list each once")
    optimizers = tuple(optimizers)
    unknown = [o for o in optimizers if o not in OPTIMIZERS]
    if unknown or not optimizers:
        what = f"unknown optimizer(s) {', '.join(map(repr, unknown))}" if unknown else "no optimizers given"
        raise ValueError(f"{what}; choose from {', '.join(OPTIMIZERS)}, e.g. --optimizers sgd,adam")
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"an optimizer is listed twice in {list(optimizers)}; list each once")
    grids = {
        o: _check_rates(LEARNING_RATES[o] if rates is None else tuple(rates), "learning rates")
        for o in optimizers
    }
    architectures = _check_hidden_sizes(hidden_sizes_options)
    if num_episodes < 1 or length < 1:
        raise ValueError(f"episodes and length must be >= 1, got {num_episodes} episodes of {length} steps")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    transform = EpisodeTransform() if transform is None else transform
    # A minimal experiment: the source and sampler are then made exactly as `vsml evaluate` makes them.
    config = ExperimentConfig(
        task=TaskConfig(normalisation=normalisation, data_dir=data_dir), transform=transform
    )
    sampler = experiment_sampler(config, length)

    report: dict[str, Any] = {
        "split": split,
        "episodes": num_episodes,
        "length": length,
        "seed": seed,
        "selection": "mean online accuracy over all steps and episodes",
        "normalisation": normalisation,
        "transform": config_to_dict(transform),
        "datasets": {},
    }
    combinations = [(n, o, h) for n in names for o in optimizers for h in architectures]
    progress = tqdm(total=len(combinations), desc="lr sweep", unit="learner", disable=quiet)
    try:
        for name in names:
            source = make_experiment_source(config, name, split, data_dir)
            num_classes = sampler.num_classes(source)
            learners: dict[str, Any] = {}
            for optimizer in optimizers:
                for hidden_sizes in architectures:
                    baseline = HandDesigned(optimizer, hidden_sizes)
                    progress.set_postfix_str(f"{name}: {baseline.label}")
                    grid = grids[optimizer]
                    # The rate lives in the meta (log α), so each learner compiles once for the whole grid.
                    learner = baseline.learner()
                    best, scores = tune_learning_rate(
                        learner, grid, source, num_episodes, sampler, seed=seed, meta_for_rate=sgd_meta
                    )
                    edge = grid_edge(best, grid)
                    learners[baseline.label] = {
                        "optimizer": optimizer,
                        "hidden_sizes": list(hidden_sizes),
                        "rates": list(grid),
                        "accuracy": {_rate_key(r): scores[r] for r in grid},
                        "best_rate": best,
                        "best_accuracy": scores[best],
                        "spec_default_rate": SPEC_DEFAULT_RATES[optimizer],
                        "edge": edge,
                        "at_edge": edge is not None,
                    }
                    progress.update()
            report["datasets"][name] = {
                "num_classes": num_classes,
                "chance": 1.0 / sampler.occurring_classes(source),  # padded label slots never occur
                "learners": learners,
            }
    finally:
        progress.close()
    return report
