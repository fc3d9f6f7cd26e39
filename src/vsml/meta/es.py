"""Antithetic OpenAI-ES, the default VSML meta-optimiser (spec vsml.md §3.1).

Salimans et al. 2017, "Evolution Strategies as a Scalable Alternative to Reinforcement Learning",
arXiv:1703.03864, as used by Kirsch & Schmidhuber 2021 (arXiv:2012.14905). One iteration, for P pairs:

    ε_i ~ N(0, I)                                  over every leaf of the meta-parameter pytree θ
    L±_i = L(θ ± σ ε_i; k_i)                       both signs share the pair key k_i (data and initial state)
    ĝ = (1/P) Σ_i (L+_i − L−_i) / (2σ) · ε_i
    θ ← θ − Adam(ĝ)                                lr 0.025, b1 0.9, b2 0.999, eps 1e-8, σ = 0.05

Faithful to §3.1: raw loss differences (no rank/fitness shaping), no noise table, no per-parameter noise
scale (unless `relative_floor` asks for one), no clipping or weight decay. Common random numbers within a
pair make every term of L that depends only on k_i (which episode was drawn, how hard it is) cancel in
L+ − L−, so the estimate sees only the effect of the perturbation.

Documented choice (not in the reference code): a pair whose L+ or L− is NaN/inf contributes nothing and the
mean is over the remaining pairs, so one diverging population member cannot poison θ; if no pair is finite,
ĝ = 0 and `ESInfo.num_nonfinite == P` tells the trainer.

The functions are pure and jittable; `loss_fn`, `num_pairs`, `member_batch_size` and `optimizer` are static.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vsml.learners.base import check_count_or_auto

Array = jax.Array
PyTree = Any
LossFn = Callable[[PyTree, Array], Array]  # (meta, pair_key) -> scalar meta-loss


@dataclass(frozen=True)
class OpenESConfig:
    """Settings of antithetic OpenAI-ES; defaults are spec §3.1 except the population (1024 pairs there)."""

    num_pairs: int = 64  # P antithetic pairs, i.e. 2P loss evaluations per iteration
    sigma: float = 0.05  # noise standard deviation σ
    learning_rate: float = 0.025  # Adam step size
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    # Not in the paper (off by default): search relative to the starting V_M θ_0. Noise and Adam step of each
    # parameter are scaled by |θ_0| + relative_floor, i.e. plain ES over u in θ = θ_0 + (|θ_0| + floor)·u.
    # A warm start whose entries span many decades (the constructed backprop clone: 1e-5 … 1e6) survives it;
    # isotropic noise of σ = 0.05 wipes out its small entries in one step.
    relative_floor: float | None = None
    # Speed only: how many population members each device runs together (null: all of them, vmapped). On a
    # CPU, few at a time keep each member's state in cache (MNIST 784 → 10: 2× faster, benchmarks/
    # es_iteration.py --members-at-once); "auto" picks that from the network's size on a CPU (VSML; see
    # learners.base.resolve_at_once) and all at once elsewhere.
    members_at_once: int | str | None = "auto"

    def __post_init__(self) -> None:
        if self.relative_floor is not None and not _is_positive_finite(self.relative_floor):
            raise ValueError(
                f"OpenESConfig.relative_floor must be a positive finite number or null, got {self.relative_floor!r}"
            )
        check_count_or_auto(self.members_at_once, "OpenESConfig.members_at_once")
        if isinstance(self.num_pairs, bool) or not isinstance(self.num_pairs, int) or self.num_pairs <= 0:
            raise ValueError(f"OpenESConfig.num_pairs must be a positive int, got {self.num_pairs!r}")
        for name in ("sigma", "learning_rate", "adam_eps"):
            value = getattr(self, name)
            if not _is_positive_finite(value):
                raise ValueError(f"OpenESConfig.{name} must be a positive finite number, got {value!r}")
        for name in ("adam_b1", "adam_b2"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"OpenESConfig.{name} must be in [0, 1), got {value!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive_finite(value: Any) -> bool:
    return _is_real(value) and 0.0 < value < float("inf")


class ESInfo(NamedTuple):
    """Diagnostics of one ES gradient estimate (returned, never logged from traced code)."""

    mean_loss: Array  # []  mean over finite pairs of (L+ + L−)/2 (the logged loss, §3.1); NaN if none
    num_nonfinite: Array  # [] int32: pairs dropped because L+ or L− was NaN/inf
    loss_plus: Array  # [P]  L(θ + σε_i)
    loss_minus: Array  # [P]  L(θ − σε_i)


def _check_meta_leaves(meta: PyTree) -> list[Array]:
    leaves = jax.tree.leaves(meta)
    if not leaves:
        raise ValueError("ES needs at least one meta-parameter array; the meta pytree has no leaves")
    for path, leaf in jax.tree_util.tree_flatten_with_path(meta)[0]:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"ES perturbs meta-parameters with Gaussian noise, so every leaf must be floating point; "
                f"leaf {jax.tree_util.keystr(path) or '<root>'} has dtype {jnp.result_type(leaf)}"
            )
    return leaves


def sample_antithetic_noise(key: Array, meta: PyTree, num_pairs: int) -> PyTree:
    """ε_i ~ N(0, I) for i < P: a pytree like `meta` whose leaves have a leading `[P]` axis (§3.1).

    One `[P, n]` normal draw over all n meta-parameters is cut into the leaves (one random-number kernel
    instead of one per leaf: markedly faster to compile for many-leaf meta-parameters); each leaf's noise is
    cast to that leaf's dtype.
    """
    leaves = _check_meta_leaves(meta)
    treedef = jax.tree.structure(meta)
    sizes = [int(np.prod(jnp.shape(leaf), dtype=np.int64)) for leaf in leaves]
    dtype = jnp.result_type(*leaves)  # the widest leaf dtype, so no leaf loses precision
    flat = jax.random.normal(key, (num_pairs, sum(sizes)), dtype=dtype)
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1].tolist(), axis=1) if len(leaves) > 1 else [flat]
    noise = [
        piece.reshape((num_pairs, *jnp.shape(leaf))).astype(jnp.result_type(leaf))
        for piece, leaf in zip(pieces, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


def es_gradient_from_losses(
    eps: PyTree, loss_plus: Array, loss_minus: Array, sigma: float
) -> tuple[PyTree, ESInfo]:
    """ĝ = (1/P') Σ_i (L+_i − L−_i)/(2σ) · ε_i over the P' pairs whose two losses are finite (§3.1).

    `eps` is the noise of `sample_antithetic_noise` (leaves `[P, ...]`); `loss_plus`, `loss_minus` are `[P]`.
    With every pair finite this is exactly the §3.1 estimator; non-finite pairs contribute zero, and if none
    is finite the gradient is zero. Exposed so that a sharded or multi-process evaluation of the population
    can gather the `[P]` losses and reuse the estimator.
    """
    loss_plus = jnp.asarray(loss_plus)
    loss_minus = jnp.asarray(loss_minus)
    num_pairs = loss_plus.shape[0] if loss_plus.ndim == 1 else -1
    if loss_plus.ndim != 1 or loss_minus.shape != loss_plus.shape:
        raise ValueError(
            f"loss_plus and loss_minus must both have shape [P], got {loss_plus.shape} and {loss_minus.shape}"
        )
    for path, leaf in jax.tree_util.tree_flatten_with_path(eps)[0]:
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != num_pairs:
            raise ValueError(
                f"noise leaf {jax.tree_util.keystr(path) or '<root>'} has shape {jnp.shape(leaf)}, "
                f"expected a leading axis of P={num_pairs} pairs"
            )
    valid = jnp.isfinite(loss_plus) & jnp.isfinite(loss_minus)
    num_valid = jnp.sum(valid)
    # `where` before the subtraction's use keeps NaN out of the sum (0 * NaN would still be NaN).
    diff = jnp.where(valid, loss_plus - loss_minus, 0.0)
    coeff = diff / (2.0 * sigma * jnp.maximum(num_valid, 1))

    def weighted_sum(leaf: Array) -> Array:
        return jnp.tensordot(coeff.astype(leaf.dtype), leaf, axes=1)

    grad = jax.tree.map(weighted_sum, eps)
    mid = jnp.where(valid, 0.5 * (loss_plus + loss_minus), 0.0)
    mean_loss = jnp.where(num_valid > 0, jnp.sum(mid) / jnp.maximum(num_valid, 1), jnp.nan)
    info = ESInfo(
        mean_loss=mean_loss,
        num_nonfinite=(num_pairs - num_valid).astype(jnp.int32),
        loss_plus=loss_plus,
        loss_minus=loss_minus,
    )
    return grad, info


def _stack_signs(theta: Array, eps: Array, sigma: float) -> Array:
    # [P, ...] noise -> [2P, ...] members: θ + σε_0..P-1, then θ − σε_0..P-1.
    return jnp.concatenate([theta[None] + sigma * eps, theta[None] - sigma * eps], axis=0)


def evaluate_antithetic_population(
    loss_fn: LossFn,
    meta: PyTree,
    eps: PyTree,
    pair_keys: Array,
    sigma: float,
    member_batch_size: int | None = None,
) -> tuple[Array, Array]:
    """L(θ + σε_i; k_i) and L(θ − σε_i; k_i) for every pair, as `([P], [P])`.

    All 2P members are stacked and evaluated by one vmapped call of `loss_fn` (on CPU much faster than two
    calls, one per sign). Both signs of pair i get the same key `pair_keys[i]`: common random numbers (§3.1).
    `member_batch_size` bounds memory by evaluating that many members at a time (`lax.map`), same result.
    """
    members = jax.tree.map(lambda theta, e: _stack_signs(jnp.asarray(theta), e, sigma), meta, eps)
    member_keys = jnp.concatenate([pair_keys, pair_keys], axis=0)
    if member_batch_size is None:
        losses = jax.vmap(loss_fn)(members, member_keys)
    else:
        losses = jax.lax.map(lambda mk: loss_fn(*mk), (members, member_keys), batch_size=member_batch_size)
    if losses.ndim != 1:
        raise ValueError(f"loss_fn must return a scalar per member, got shape {losses.shape[1:]}")
    num_pairs = pair_keys.shape[0]
    return losses[:num_pairs], losses[num_pairs:]


def es_gradient(
    loss_fn: LossFn,
    meta: PyTree,
    key: Array,
    num_pairs: int,
    sigma: float,
    member_batch_size: int | None = None,
) -> tuple[PyTree, ESInfo]:
    """The antithetic OpenAI-ES estimate of ∇_θ E[L(θ)] for `loss_fn(meta, pair_key) -> scalar` (§3.1).

    `key` is split into a noise key and P pair keys; `loss_fn` must draw its episode data and initial
    state from the pair key it is given, so that both signs of a pair see the same ones. Returns
    `(ĝ, ESInfo)`; ĝ has the structure and dtypes of `meta`. Non-finite losses: see `es_gradient_from_losses`.
    """
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, (int, np.integer)) or num_pairs <= 0:
        raise ValueError(f"num_pairs must be a positive int, got {num_pairs!r}")
    num_pairs = int(num_pairs)
    keys = jax.random.split(key, num_pairs + 1)  # one split: the noise key, then the P pair keys
    eps = sample_antithetic_noise(keys[0], meta, num_pairs)
    pair_keys = keys[1:]
    loss_plus, loss_minus = evaluate_antithetic_population(
        loss_fn, meta, eps, pair_keys, sigma, member_batch_size
    )
    return es_gradient_from_losses(eps, loss_plus, loss_minus, sigma)


def make_es_optimizer(cfg: OpenESConfig) -> optax.GradientTransformation:
    """Adam on ĝ (§3.1: lr 0.025, b1 0.9, b2 0.999, eps 1e-8; no clipping, no weight decay)."""
    return optax.adam(cfg.learning_rate, b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps)


def es_update(
    meta: PyTree, opt_state: optax.OptState, grad: PyTree, optimizer: optax.GradientTransformation
) -> tuple[PyTree, optax.OptState]:
    """θ ← θ − Adam(ĝ): ĝ is fed to the optimiser as the gradient of a loss to minimise (§3.1)."""
    updates, opt_state = optimizer.update(grad, opt_state, meta)
    return optax.apply_updates(meta, updates), opt_state


def relative_noise_scale(meta: PyTree, floor: float) -> PyTree:
    """|θ_0| + floor per parameter: the scale of noise and step under `OpenESConfig.relative_floor`."""
    return jax.tree.map(lambda t: jnp.abs(jnp.asarray(t)) + jnp.asarray(floor, jnp.result_type(t)), meta)
