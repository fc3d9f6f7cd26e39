"""Meta-optimisation by gradients: backprop through the whole unrolled inner loop (spec §3.2).

The meta-gradient flows through every step, including the feedback (softmax − y) — no stop-gradient. Each step
is rematerialised (`jax.checkpoint`) so memory grows with T only by the carried state. Optimiser: clip by global
norm 25, then Adam (b1 .9, b2 .999) at lr 1e-3. Each episode of the meta-batch has its own data and key; the
gradient is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from vsml.learners.base import PyTree, check_count_or_auto
from vsml.meta.population import split_counts
from vsml.meta.protocol import MetaOptimizerDefaults, MetaProblem, MetaState


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


def meta_gradient_update(
    optimizer: optax.GradientTransformation, meta: PyTree, opt_state: optax.OptState, loss: jax.Array, grad: PyTree
) -> tuple[PyTree, optax.OptState, jax.Array, jax.Array]:
    """(meta, opt_state, gradient norm before clipping, finite flag). A non-finite loss or gradient skips the
    update: V_M and the optimiser state are kept."""
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grad)))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    safe_grad = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grad)
    updates, new_opt_state = optimizer.update(safe_grad, opt_state, meta)
    new_meta = optax.apply_updates(meta, updates)
    new_meta = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_meta, meta)
    new_opt_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_opt_state, opt_state)
    return new_meta, new_opt_state, grad_norm, finite


@dataclass(frozen=True)
class MetaGradient(MetaOptimizerDefaults):
    """Backprop through the unrolled inner loop behind the `MetaOptimizer` protocol."""

    config: GradConfig = GradConfig()
    name: ClassVar[str] = "grad"
    label: ClassVar[str] = "meta-gradient"

    def init(self, meta: PyTree, key: jax.Array | None = None) -> MetaState:
        return MetaState(meta, make_grad_optimizer(self.config).init(meta))

    def step(self, state: MetaState, key: jax.Array, problem: MetaProblem) -> tuple[MetaState, dict[str, jax.Array]]:
        """One meta-gradient step on a meta-batch: slice s contributes `counts[s]` episodes and the loss is the
        mean over all episodes of all slices."""
        cfg = self.config
        counts = self.slice_counts(problem.shares)
        data_key, init_key = jax.random.split(key)
        batches = problem.sample(counts, data_key, init_key)

        def total_loss(meta: PyTree) -> jax.Array:
            per_slice = [
                count * problem.mean_loss(index, meta, batch, cfg.episodes_at_once, cfg.remat)
                for index, (count, batch) in enumerate(zip(counts, batches, strict=True))
            ]
            return sum(per_slice) / sum(counts)

        loss, grad = jax.value_and_grad(total_loss)(state.meta)
        meta, opt_state, grad_norm, finite = meta_gradient_update(
            make_grad_optimizer(cfg), state.meta, state.opt_state, loss, grad
        )
        info = {"loss": loss, "num_nonfinite": jnp.logical_not(finite).astype(jnp.int32), "grad_norm": grad_norm}
        return state._replace(meta=meta, opt_state=opt_state), info

    def check(self, problem: MetaProblem, meta: PyTree) -> None:
        if not problem.differentiable:
            raise ValueError(
                "the meta-loss has no gradient (it is piecewise constant), so meta_optimizer grad would never "
                "change the meta-parameters: use a differentiable loss (e.g. query_ce or query_l2) or "
                "meta_optimizer es / cmaes"
            )
        self.slice_counts(problem.shares)

    def slice_counts(self, shares: tuple[int, ...]) -> tuple[int, ...]:
        return split_counts(self.config.num_episodes, shares, "grad.num_episodes")

    def episode_length(self, base: int, iteration: int) -> int:
        """BLUR's unroll curriculum (blur.md §6): T grows by `curriculum_increment` every `curriculum_every`."""
        return base + self.config.curriculum_increment * (iteration // self.config.curriculum_every)

    @property
    def has_curriculum(self) -> bool:
        return self.config.curriculum_increment > 0

    def describe_nonfinite(self, count: int) -> str:
        return "non-finite meta-loss or gradient; update skipped"
