"""The meta-training problem of a learner: episodes drawn from data sources, scored by a meta-loss.

`EpisodeProblem` is the `MetaProblem` every meta-optimiser trains on: population slice s draws its episodes
from `sources[s]` through `samplers[s]` (its dataset, transform and shapes; spec §3.3) and scores a member θ
on an episode by `objectives.episode_meta_loss` (learn online from the episode, then the loss of its
predictions). Members and episodes are split over every device (`parallel.shard_over_population`); on a CPU
a device runs few members at a time (`learners.base.resolve_at_once`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from vsml.learners.base import (
    AUTO,
    CPU_APPLICATIONS_AT_ONCE_BACKPROP,
    Learner,
    PyTree,
    map_in_batches,
    resolve_at_once,
)
from vsml.meta.objectives import NON_DIFFERENTIABLE_LOSSES, Objective, episode_meta_loss
from vsml.meta.parallel import shard_over_population
from vsml.meta.population import sample_slices
from vsml.tasks.sampler import EpisodeSampler, Source

Array = jax.Array


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["sources", "transform_keys"],
    meta_fields=["learner", "objective", "samplers", "shares"],
)
@dataclass(frozen=True)
class EpisodeProblem:
    """A learner's meta-training problem: static settings (learner, objective, samplers, shares) and the data
    (sources, each slice's fixed transform key) as leaves, so it passes through `jit` as an argument."""

    learner: Learner
    objective: Objective
    samplers: tuple[EpisodeSampler, ...]  # one per population slice: episode length, transform, shapes
    shares: tuple[int, ...]  # each slice's share of the population
    sources: tuple[Source, ...]  # each slice's training data
    transform_keys: tuple[Array, ...]  # each slice's fixed projection / permutation (spec §3.3)

    def __post_init__(self) -> None:
        if not len(self.samplers) == len(self.shares) == len(self.sources) == len(self.transform_keys):
            raise ValueError("population slices: samplers, shares, sources and transform keys differ in number")

    @property
    def differentiable(self) -> bool:
        return self.objective.loss not in NON_DIFFERENTIABLE_LOSSES

    def sample(self, counts: tuple[int, ...], data_key: Array, init_key: Array) -> list[tuple]:
        """Per slice: (its `counts[s]` episodes, their initial-state keys); slice 0 uses the keys themselves, so
        a one-slice population draws exactly what an unsliced one would."""
        return sample_slices(counts, self.samplers, self.sources, self.transform_keys, data_key, init_key)

    def member_losses(self, slice_index: int, members: PyTree, batch: tuple, at_once: int | str | None) -> Array:
        """Member i on episode i: `[M]`, vmapped and split over the devices; with `at_once`, a device runs that
        many members at a time ("auto": `resolve_at_once`)."""
        episodes, init_keys = batch
        return shard_over_population(
            partial(_paired_losses, self.learner, self.objective, at_once),
            (members, episodes.xs, episodes.ys, init_keys),
        )

    def candidate_losses(self, slice_index: int, members: PyTree, batch: tuple) -> Array:
        """Every member on every episode of `batch` (common random numbers), their mean: `[M]`. The members are
        split over the devices; each device runs all the episodes."""
        episodes, init_keys = batch
        return shard_over_population(
            partial(_candidate_losses, self.learner, self.objective), members, (episodes.xs, episodes.ys, init_keys)
        )

    def mean_loss(
        self, slice_index: int, meta: PyTree, batch: tuple, at_once: int | str | None, remat: bool | int
    ) -> Array:
        """Mean meta-loss of `meta` over the episodes of `batch`, differentiable (each step rematerialised as
        `remat` says); the episodes are split over the devices."""
        episodes, init_keys = batch
        return meta_batch_loss(
            self.learner, self.objective, remat, meta, episodes.xs, episodes.ys, init_keys, at_once
        )


def _paired_losses(learner: Learner, objective: Objective, at_once: int | str | None, batch: tuple) -> Array:
    members, xs, ys, init_keys = batch
    return map_in_batches(
        partial(episode_meta_loss, learner, objective),
        (members, init_keys, xs, ys),
        resolve_at_once(learner, at_once, xs, ys),
    )


def _candidate_losses(learner: Learner, objective: Objective, members: PyTree, batch: tuple) -> Array:
    xs, ys, init_keys = batch

    def member_loss(meta: PyTree) -> Array:
        return jnp.mean(jax.vmap(partial(episode_meta_loss, learner, objective, meta))(init_keys, xs, ys))

    return jax.vmap(member_loss)(members)


def meta_batch_loss(
    learner: Learner,
    objective: str | Objective,
    remat: bool | int,
    meta: PyTree,
    xs: Array,
    ys: Array,
    keys: Array,
    episodes_at_once: int | str | None = AUTO,
) -> Array:
    """Mean meta-loss over a batch of episodes xs [N, T, ...], ys [N, T, C], init keys [N]. The episodes are
    split over the devices (and processes); the gradient flows back through the split to the shared V_M. A
    device runs `episodes_at_once` of its episodes together (`learners.base.resolve_at_once`, with the budget
    of differentiated episodes)."""

    def episode_losses(batch: tuple, meta: PyTree) -> Array:
        def one(x, y, k):
            return episode_meta_loss(learner, objective, meta, k, x, y, remat=remat)

        at_once = resolve_at_once(
            learner, episodes_at_once, batch[0], batch[1], CPU_APPLICATIONS_AT_ONCE_BACKPROP
        )
        return map_in_batches(one, batch, at_once)

    return jnp.mean(shard_over_population(episode_losses, (xs, ys, keys), meta))


def population_problem(
    learner: Learner,
    objective: str | Objective,
    samplers: tuple[EpisodeSampler, ...],
    sources: tuple[Source, ...],
    shares: tuple[int, ...] | None = None,
    transform_keys: tuple[Array, ...] | None = None,
) -> EpisodeProblem:
    """An `EpisodeProblem` with defaults: equal shares, and slice s's transform key `PRNGKey(0)` if not given."""
    objective = objective if isinstance(objective, Objective) else Objective(objective)
    count = len(samplers)
    keys = transform_keys if transform_keys is not None else (None,) * count
    keys = tuple(jax.random.PRNGKey(0) if k is None else k for k in keys)
    return EpisodeProblem(learner, objective, tuple(samplers), shares or (1,) * count, tuple(sources), keys)


__all__ = ["EpisodeProblem", "meta_batch_loss", "population_problem"]
