"""Meta-optimisation by gradients: backprop through the whole unrolled inner loop (spec §3.2).

The meta-gradient flows through every step, including the feedback (softmax − y) — no stop-gradient. Each step
is rematerialised (`jax.checkpoint`) so memory grows with T only by the carried state. Optimiser: clip by global
norm 25, then Adam (b1 .9, b2 .999) at lr 1e-3. Each episode of the meta-batch has its own data and key; the
gradient is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import optax

from vsml.learners.base import (
    AUTO,
    CPU_APPLICATIONS_AT_ONCE_BACKPROP,
    Learner,
    PyTree,
    check_count_or_auto,
    map_in_batches,
    resolve_at_once,
)
from vsml.meta.objectives import Objective, episode_meta_loss
from vsml.meta.parallel import shard_over_population
from vsml.meta.population import as_slices, sample_slices
from vsml.tasks.sampler import EpisodeSampler, Source


@dataclass(frozen=True)
class GradConfig:
    num_episodes: int = 16  # meta-batch; the paper's backprop.yaml uses 128 ("population" 128)
    learning_rate: float = 1e-3
    clip_norm: float = 25.0
    # true (or 1): jax.checkpoint per step; an int k >= 2: blocks of k steps checkpointed as well (T/k + k states kept
    # instead of T; k ≈ √T; benchmarks/bptt_memory.py); false: keep every intermediate.
    remat: bool | int = True
    # Unroll curriculum (BLUR, blur.md §6): T grows by `curriculum_increment` every `curriculum_every` steps.
    curriculum_increment: int = 0
    curriculum_every: int = 10_000
    # Speed only, as es.members_at_once: how many episodes of the meta-batch a device runs (and differentiates)
    # together; "auto" on a CPU: the largest power of two of episodes within 8k sub-RNN applications (784 → 10:
    # one episode at a time; 8 episodes, T = 100: 4.8 s vs 12.2 s per meta-step), all at once on GPUs and
    # otherwise; null: all at once.
    episodes_at_once: int | str | None = "auto"

    def __post_init__(self) -> None:
        check_count_or_auto(self.episodes_at_once, "config key grad.episodes_at_once")
        if not isinstance(self.remat, (bool, int)) or (not isinstance(self.remat, bool) and self.remat < 0):
            raise ValueError(
                "config key grad.remat must be true, false or a block length k >= 2 (0 and 1 mean false and true), "
                f"got {self.remat!r}"
            )
        if self.curriculum_increment < 0:
            raise ValueError(
                f"config key grad.curriculum_increment must be >= 0, got {self.curriculum_increment}"
            )
        for name in ("num_episodes", "learning_rate", "clip_norm", "curriculum_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key grad.{name} must be positive, got {getattr(self, name)}")


def make_grad_optimizer(cfg: GradConfig) -> optax.GradientTransformation:
    """Clip by global norm, then Adam (spec §3.2)."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm), optax.adam(cfg.learning_rate, b1=0.9, b2=0.999)
    )


def meta_batch_loss(
    learner: Learner,
    objective: str | Objective,
    remat: bool | int,
    meta: PyTree,
    xs: jax.Array,
    ys: jax.Array,
    keys: jax.Array,
    episodes_at_once: int | str | None = AUTO,
) -> jax.Array:
    """Mean meta-loss over a batch of episodes xs [N, T, ...], ys [N, T, C], init keys [N]. The episodes are
    split over the devices (and processes); the gradient flows back through the split to the shared V_M. A
    device runs `episodes_at_once` of its episodes together (`learners.base.resolve_at_once`)."""

    def episode_losses(batch: tuple, meta: PyTree) -> jax.Array:
        def one(x, y, k):
            return episode_meta_loss(learner, objective, meta, k, x, y, remat=remat)

        at_once = resolve_at_once(
            learner, episodes_at_once, batch[0], batch[1], CPU_APPLICATIONS_AT_ONCE_BACKPROP
        )
        return map_in_batches(one, batch, at_once)

    return jnp.mean(shard_over_population(episode_losses, (xs, ys, keys), meta))


@partial(
    jax.jit,
    static_argnames=(
        "learner",
        "objective",
        "num_episodes",
        "sampler",
        "remat",
        "optimizer",
        "episodes_at_once",
    ),
)
def grad_iteration(
    learner: Learner,
    objective: str | Objective,
    num_episodes: int | tuple[int, ...],
    sampler: EpisodeSampler | tuple[EpisodeSampler, ...],
    remat: bool | int,
    optimizer: optax.GradientTransformation,
    meta: PyTree,
    opt_state: optax.OptState,
    source: Source | tuple[Source, ...],
    key: jax.Array,
    transform_key: jax.Array | tuple[jax.Array, ...] | None = None,
    episodes_at_once: int | str | None = AUTO,
) -> tuple[PyTree, optax.OptState, jax.Array, jax.Array, jax.Array]:
    """One meta-gradient step. Returns (meta, opt_state, loss, gradient norm before clipping, non-finite flag).

    A non-finite loss or gradient skips the update (V_M and the optimiser state are kept) and is flagged.
    With tuples (a heterogeneous meta-batch), slice s contributes `num_episodes[s]` episodes and the loss is
    the mean over all episodes of all slices.
    """
    counts, samplers, sources, transform_keys = as_slices(num_episodes, sampler, source, transform_key)
    data_key, init_key = jax.random.split(key)
    batches = [
        (episodes.xs, episodes.ys, keys)
        for episodes, keys in sample_slices(counts, samplers, sources, transform_keys, data_key, init_key)
    ]

    def total_loss(meta: PyTree) -> jax.Array:
        per_slice = [
            count * meta_batch_loss(learner, objective, remat, meta, *batch, episodes_at_once)
            for count, batch in zip(counts, batches, strict=True)
        ]
        return sum(per_slice) / sum(counts)

    loss, grad = jax.value_and_grad(total_loss)(meta)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grad)))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    safe_grad = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grad)
    updates, new_opt_state = optimizer.update(safe_grad, opt_state, meta)
    new_meta = optax.apply_updates(meta, updates)
    new_meta = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_meta, meta)
    new_opt_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_opt_state, opt_state)
    return new_meta, new_opt_state, loss, grad_norm, jnp.logical_not(finite).astype(jnp.int32)
