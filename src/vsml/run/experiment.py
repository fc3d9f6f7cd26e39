"""The experiment config: what a YAML file of `vsml/configs/` (or any other) describes, as frozen dataclasses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsml.config import ConfigError, config_from_dict, config_to_dict, load_config
from vsml.evaluation.defaults import EVAL_SEED
from vsml.meta.cmaes import CMAESConfig
from vsml.meta.es import OpenESConfig
from vsml.meta.grad import GradConfig
from vsml.meta.objectives import NON_DIFFERENTIABLE_LOSSES, Objective
from vsml.meta.registry import META_OPTIMIZERS
from vsml.tasks.datasets import Dataset, load_dataset
from vsml.tasks.episodes import make_episode_source
from vsml.tasks.omniglot import load_omniglot, make_few_shot_source
from vsml.tasks.sampler import EpisodeSampler, Source
from vsml.tasks.transforms import NORMALISATIONS, EpisodeTransform, apply_normalisation, prepare_dataset

FEW_SHOT_DATASETS = ("omniglot",)
# A curriculum stage's `loss_below` compares the mean training loss of this many last iterations.
LOSS_WINDOW = 10


@dataclass(frozen=True)
class TaskConfig:
    """The meta-training task (spec §3.3)."""

    dataset: str = "digits"
    episode_length: int = 100  # T; the paper meta-trains at 500 (spec §2)
    loss: str = "mean"  # "mean": mean online CE (area under the loss curve); "last": final step only
    data_dir: str | None = None  # None: $VSML_DATA, then ../shared/datasets
    # "dataset": the scalar per-dataset constants of spec §3.3; "per_feature": standardise each input feature
    # with train-split statistics (applies to every dataset of the experiment, meta-test included).
    normalisation: str = "dataset"
    ways: int = 5  # few-shot datasets (omniglot) only: classes per episode
    shots: int = 1  # few-shot: examples per class before the query (spec §6.5: 5-way 1-shot, T = 6)
    batch_size: int = 1  # examples per inner step (BLUR: 128, blur.md §9); > 1 gives episodes [N, T, B, ...]
    # Forward-only query steps after the T learning steps, scored by the `query_*` losses (BLUR's held-out
    # batches after the unroll, blur.md §5, §9); the learner needs a `predict`.
    query_steps: int = 0


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 500
    checkpoint_every: int = 50
    # Checkpoints kept in the run folder: the newest n (older ones are deleted once a new one is committed), or
    # None for all of them (the default: they are small, and `vsml evaluate` can read any one).
    keep_checkpoints: int | None = None
    log_every: int = 1
    # A run directory or checkpoint whose meta-parameters start this run (warm start; its optimiser state is
    # not taken). The learner settings must give meta-parameters of the same structure.
    init_from: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """Periodic evaluation on held-out (test split) episodes with a fixed key (spec §2)."""

    datasets: tuple[str, ...] = ("digits",)
    every: int = 50
    num_episodes: int = 64
    episode_length: int = 100
    seed: int = EVAL_SEED


@dataclass(frozen=True)
class SliceConfig:
    """One slice of a heterogeneous population (the paper's `mpi_split`, spec §3.3): a fixed dataset and
    transform for `share` parts of the ES pairs (or of the gradient meta-batch)."""

    dataset: str = "mnist"
    transform: EpisodeTransform = EpisodeTransform()
    share: int = 1


def stage_finished(
    losses: list[float], classes: int, iterations: int | None, loss_below: float | None
) -> bool:
    """Whether a stage with these end conditions is over after the training losses `losses` (one per iteration
    of the stage so far): after `iterations`, or once the mean of the last `LOSS_WINDOW` losses is below
    `loss_below` x ln(classes), a fraction of the loss of guessing (the easier task is learnt)."""
    if iterations is not None and len(losses) >= iterations:
        return True
    if loss_below is None or len(losses) < LOSS_WINDOW:
        return False
    return float(np.mean(losses[-LOSS_WINDOW:])) < loss_below * math.log(classes)


@dataclass(frozen=True)
class CurriculumStage:
    """One stage of a curriculum over the task (issue 24: e.g. 2 classes, then 5, then all 10). `task` is merged
    key by key onto the experiment's `task`; `population`, if given, replaces its population; `transform` is
    merged onto the experiment's `transform` and onto the transform of every population slice the stage trains
    on (so `transform: {classes: [0, 1]}` restricts each slice, projected or not, to two classes). The stage
    ends as `stage_finished` says. V_M and the optimiser's state carry over from stage to stage (VSML's
    shape-free sub-RNNs run any input and output size); after the last stage the experiment's own task runs until
    `train.iterations`. Held-out evaluation always uses the experiment's own task."""

    iterations: int | None = None
    loss_below: float | None = None
    task: dict[str, Any] = field(default_factory=dict)
    transform: dict[str, Any] = field(default_factory=dict)
    population: tuple[SliceConfig, ...] | None = None

    def __post_init__(self) -> None:
        if self.iterations is None and self.loss_below is None:
            raise ValueError(
                "a curriculum stage needs iterations or loss_below (or both), else the stages after it never run"
            )
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"a curriculum stage's iterations must be >= 1, got {self.iterations}")
        if self.loss_below is not None and not self.loss_below > 0:
            raise ValueError(f"a curriculum stage's loss_below must be > 0, got {self.loss_below}")

    def finished(self, losses: list[float], classes: int) -> bool:
        return stage_finished(losses, classes, self.iterations, self.loss_below)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 42  # spec §3.1: init seed 42
    learner: dict[str, Any] = field(default_factory=lambda: {"name": "vsml"})
    task: TaskConfig = TaskConfig()
    meta_optimizer: str = (
        "es"  # "es": antithetic OpenES (spec §3.1); "grad": backprop through the unroll (§3.2)
    )
    es: OpenESConfig = OpenESConfig()
    grad: GradConfig = GradConfig()
    cmaes: CMAESConfig = CMAESConfig()  # meta_optimizer "cmaes" (BLUR, blur.md §6)
    transform: EpisodeTransform = EpisodeTransform()  # spec §3.3, applied to training and evaluation episodes
    # Empty: one population of task.dataset under `transform`. Otherwise the population is split into these
    # slices for meta-training (evaluation still uses `transform`).
    population: tuple[SliceConfig, ...] = ()
    # Stages of easier tasks before the one above (CurriculumStage); empty: none.
    curriculum: tuple[CurriculumStage, ...] = ()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    def __post_init__(self) -> None:
        positive = {
            "task.episode_length": self.task.episode_length,
            "train.iterations": self.train.iterations,
            "train.checkpoint_every": self.train.checkpoint_every,
            "train.log_every": self.train.log_every,
            "eval.every": self.eval.every,
            "eval.num_episodes": self.eval.num_episodes,
            "eval.episode_length": self.eval.episode_length,
            "task.batch_size": self.task.batch_size,
        }
        Objective(self.task.loss, self.task.query_steps)  # validates the loss and its query steps
        if self.meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(
                f"config key meta_optimizer must be one of {', '.join(META_OPTIMIZERS)}, got {self.meta_optimizer!r}"
            )
        if self.meta_optimizer == "grad" and self.task.loss in NON_DIFFERENTIABLE_LOSSES:
            raise ValueError(
                f"task.loss {self.task.loss!r} has no gradient (it is piecewise constant), so meta_optimizer grad "
                "would never change the meta-parameters: use a differentiable loss (e.g. query_ce or query_l2) or "
                "meta_optimizer es / cmaes"
            )
        if self.task.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"config key task.normalisation must be one of {', '.join(NORMALISATIONS)}, "
                f"got {self.task.normalisation!r}"
            )
        if self.train.keep_checkpoints is not None:
            positive["train.keep_checkpoints"] = self.train.keep_checkpoints
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"config key {key} must be >= 1, got {value}")
        for index in range(len(self.curriculum)):
            stage_experiment(self, index)  # each stage's task must be a valid experiment too


def stage_experiment(config: ExperimentConfig, stage: int) -> ExperimentConfig:
    """The experiment as curriculum stage `stage` meta-trains it (`len(config.curriculum)`: the config itself)."""
    if stage == len(config.curriculum):
        return config
    spec = config.curriculum[stage]
    data = config_to_dict(config)
    data["curriculum"] = []
    data["task"].update(spec.task)
    if spec.population is not None:
        data["population"] = config_to_dict(spec)["population"]
    for transform in (data["transform"], *(piece["transform"] for piece in data["population"])):
        transform.update(spec.transform)
    try:
        return config_from_dict(ExperimentConfig, data)
    except ConfigError as error:
        raise ConfigError(f"curriculum stage {stage}: {error}") from None


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment config and apply `--set a.b=c` overrides; unknown keys are clear errors."""
    return load_config(ExperimentConfig, path, list(overrides))


def load_experiment_dataset(config: ExperimentConfig, name: str, data_dir: str | None = None) -> Dataset:
    """Dataset `name` as this experiment sees it: loaded with its seed, then normalised as configured."""
    dataset = load_dataset(name, data_dir or config.task.data_dir, seed=config.seed)
    return apply_normalisation(dataset, config.task.normalisation)


def make_experiment_source(
    config: ExperimentConfig,
    name: str,
    split: str,
    data_dir: str | None = None,
    transform: EpisodeTransform | None = None,
) -> Source:
    """Where the experiment's episodes of dataset `name` come from: few-shot classes for Omniglot (spec §6.5),
    otherwise the normalised, class-filtered arrays of that split."""
    if name in FEW_SHOT_DATASETS:
        return make_few_shot_source(load_omniglot(data_dir or config.task.data_dir), split)
    transform = config.transform if transform is None else transform
    dataset = prepare_dataset(load_experiment_dataset(config, name, data_dir), transform)
    return make_episode_source(dataset, split)


def experiment_sampler(
    config: ExperimentConfig, length: int, transform: EpisodeTransform | None = None
) -> EpisodeSampler:
    transform = config.transform if transform is None else transform
    task = config.task
    return EpisodeSampler(length + task.query_steps, transform, task.ways, task.shots, task.batch_size)


def population_slices(config: ExperimentConfig) -> tuple[SliceConfig, ...]:
    return config.population or (SliceConfig(config.task.dataset, config.transform),)


def experiment_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    return config_from_dict(ExperimentConfig, data)
