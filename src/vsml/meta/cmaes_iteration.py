"""One CMA-ES generation of meta-training: sample genomes, run each on the same episodes, rank, update.

BLUR's headline meta-training (blur.md §6, §9): pycma with population 80, fitness = −accuracy on held-out
batches after the unroll (our `query_error` loss). Every candidate of a generation sees the same episodes of
every population slice (common random numbers) and the same initial synapse keys, so the ranking compares
genomes, not data draws. The search runs over the flattened meta-parameters (`ravel_meta`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from vsml.learners.base import Learner, PyTree
from vsml.meta.cmaes import CMAESConfig, CMAESState, cmaes_ask, cmaes_tell
from vsml.meta.objectives import Objective, episode_meta_loss
from vsml.meta.parallel import shard_over_population
from vsml.meta.population import as_slices, sample_slices
from vsml.tasks.sampler import EpisodeSampler, Source


@partial(jax.jit, static_argnames=("learner", "objective", "config", "num_episodes", "sampler", "unravel"))
def cmaes_iteration(
    learner: Learner,
    objective: str | Objective,
    config: CMAESConfig,
    num_episodes: int | tuple[int, ...],
    sampler: EpisodeSampler | tuple[EpisodeSampler, ...],
    unravel: Callable[[jax.Array], PyTree],
    state: CMAESState,
    source: Source | tuple[Source, ...],
    key: jax.Array,
    transform_key: jax.Array | tuple[jax.Array, ...] | None = None,
) -> tuple[CMAESState, jax.Array, jax.Array, jax.Array]:
    """Returns (new state, mean finite fitness, best fitness of this generation, number of non-finite ones).

    Slice s gives `num_episodes[s]` episodes, which every candidate runs (`cmaes.num_episodes` per slice in the
    trainer); the fitness averages the slices. `unravel` maps a flat candidate back to the learner's
    meta-parameters (from `ravel_meta`; static, so keep the same function object across calls to avoid
    recompiling).
    """
    counts, samplers, sources, transform_keys = as_slices(num_episodes, sampler, source, transform_key)
    ask_key, data_key, init_key = jax.random.split(key, 3)
    candidates = cmaes_ask(config, state, ask_key)
    members = jax.vmap(unravel)(candidates)

    def candidate_fitness(members: PyTree, batch: tuple) -> jax.Array:
        xs, ys, init_keys = batch

        def member_loss(meta):
            return jnp.mean(jax.vmap(partial(episode_meta_loss, learner, objective, meta))(init_keys, xs, ys))

        return jax.vmap(member_loss)(members)

    fitness = jnp.zeros(candidates.shape[0], candidates.dtype)
    for episodes, init_keys in sample_slices(counts, samplers, sources, transform_keys, data_key, init_key):
        # The candidates are split over the devices (and processes); each device runs the slice's episodes.
        batch = (episodes.xs, episodes.ys, init_keys)
        fitness = fitness + shard_over_population(candidate_fitness, members, batch) / len(counts)
    new_state = cmaes_tell(config, state, candidates, fitness)
    finite = jnp.isfinite(fitness)
    mean_fitness = jnp.sum(jnp.where(finite, fitness, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
    best = jnp.min(jnp.where(finite, fitness, jnp.inf))
    return new_state, mean_fitness, best, jnp.sum(~finite).astype(jnp.int32)
