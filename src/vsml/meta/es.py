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

`OpenES` is this module's `MetaOptimizer` (meta/protocol.py): the trainer and the statistical tests
(tests/meta/test_es.py) run the same `es_gradient` and `es_update`. The functions are pure and jittable; the
problem's settings, the pair counts and the optimiser are static.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vsml.learners.base import check_count_or_auto
from vsml.meta.population import split_counts
from vsml.meta.protocol import MetaOptimizerDefaults, MetaProblem, MetaState

Array = jax.Array
PyTree = Any

FITNESS_SHAPINGS = ("raw", "centered_rank")


@dataclass(frozen=True)
class OpenESConfig:
    """Settings of antithetic OpenAI-ES; defaults are spec §3.1 except the population (1024 pairs there)."""

    num_pairs: int = 64  # P antithetic pairs, i.e. 2P loss evaluations per iteration
    sigma: float = 0.05  # noise standard deviation σ
    learning_rate: float = 0.025  # Adam step size
    # Not in the paper (a constant step there): decay the Adam step along a half cosine from learning_rate to
    # final_learning_rate over the first decay_iterations ES iterations, constant after. A large step escapes
    # the plateau fast (reports/meta_efficiency) but then hovers: the flagship's pilot at 0.1 sat at one
    # training loss for 1,500 iterations. Both set or neither (null: constant).
    final_learning_rate: float | None = None
    decay_iterations: int | None = None
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    # Not in the paper (off by default): search relative to the starting V_M θ_0. Noise and Adam step of each
    # parameter are scaled by |θ_0| + relative_floor, i.e. plain ES over u in θ = θ_0 + (|θ_0| + floor)·u.
    # A warm start whose entries span many decades (the constructed backprop clone: 1e-5 … 1e6) survives it;
    # isotropic noise of σ = 0.05 wipes out its small entries in one step.
    relative_floor: float | None = None
    # Not in the paper (its ĝ uses raw loss differences): "centered_rank" replaces each of the 2P losses by its
    # rank among them, scaled to [-0.5, 0.5] (Salimans et al. 2017's fitness shaping), so one outlier episode
    # cannot dominate ĝ and the step's size does not follow the loss's scale.
    fitness_shaping: str = "raw"
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
        if self.fitness_shaping not in FITNESS_SHAPINGS:
            raise ValueError(
                f"OpenESConfig.fitness_shaping must be one of {', '.join(FITNESS_SHAPINGS)}, "
                f"got {self.fitness_shaping!r}"
            )
        if not _is_positive_int(self.num_pairs):
            raise ValueError(f"OpenESConfig.num_pairs must be a positive int, got {self.num_pairs!r}")
        for name in ("sigma", "learning_rate", "adam_eps"):
            value = getattr(self, name)
            if not _is_positive_finite(value):
                raise ValueError(f"OpenESConfig.{name} must be a positive finite number, got {value!r}")
        for name in ("adam_b1", "adam_b2"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"OpenESConfig.{name} must be in [0, 1), got {value!r}")
        self._check_decay()

    def _check_decay(self) -> None:
        if (self.final_learning_rate is None) != (self.decay_iterations is None):
            raise ValueError(
                "OpenESConfig.final_learning_rate and decay_iterations go together: set both (a decaying Adam "
                f"step) or neither (a constant one), got {self.final_learning_rate!r} and {self.decay_iterations!r}"
            )
        if self.final_learning_rate is not None and not _is_positive_finite(self.final_learning_rate):
            raise ValueError(
                "OpenESConfig.final_learning_rate must be a positive finite number or null, "
                f"got {self.final_learning_rate!r}"
            )
        if self.decay_iterations is not None and not _is_positive_int(self.decay_iterations):
            raise ValueError(
                f"OpenESConfig.decay_iterations must be a positive int or null, got {self.decay_iterations!r}"
            )


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


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


def centered_ranks(loss_plus: Array, loss_minus: Array, valid: Array) -> tuple[Array, Array]:
    """Each finite pair's two losses as their ranks among the 2P' losses of the valid pairs, scaled to [-0.5, 0.5]
    (lowest loss -0.5); pairs that are not valid get 0. Ties are ranked in an arbitrary but fixed order."""
    num_pairs = loss_plus.shape[0]
    losses = jnp.where(jnp.concatenate([valid, valid]), jnp.concatenate([loss_plus, loss_minus]), jnp.inf)
    ranks = jnp.argsort(jnp.argsort(losses)).astype(loss_plus.dtype)  # invalid members rank last
    num_members = 2 * jnp.sum(valid)
    shaped = ranks / jnp.maximum(num_members - 1, 1).astype(ranks.dtype) - 0.5
    return jnp.where(valid, shaped[:num_pairs], 0.0), jnp.where(valid, shaped[num_pairs:], 0.0)


def es_gradient_from_losses(
    eps: PyTree, loss_plus: Array, loss_minus: Array, sigma: float, fitness_shaping: str = "raw"
) -> tuple[PyTree, ESInfo]:
    """ĝ = (1/P') Σ_i (L+_i − L−_i)/(2σ) · ε_i over the P' pairs whose two losses are finite (§3.1).

    `fitness_shaping="centered_rank"` puts `centered_ranks` of the losses in place of L± (not in the paper).

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
    if fitness_shaping == "centered_rank":
        shaped_plus, shaped_minus = centered_ranks(loss_plus, loss_minus, valid)
        diff = shaped_plus - shaped_minus
    elif fitness_shaping == "raw":
        diff = jnp.where(valid, loss_plus - loss_minus, 0.0)
    else:
        raise ValueError(f"fitness_shaping must be one of {', '.join(FITNESS_SHAPINGS)}, got {fitness_shaping!r}")
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


def antithetic_members(meta: PyTree, eps: PyTree, sigma: float) -> PyTree:
    """The `[2P]` population θ + σε_0 … θ + σε_{P−1}, then θ − σε_0 … θ − σε_{P−1} (§3.1)."""
    return jax.tree.map(lambda t, e: jnp.concatenate([t[None] + sigma * e, t[None] - sigma * e]), meta, eps)


def antithetic_losses(
    problem: MetaProblem,
    meta: PyTree,
    eps: PyTree,
    batches: list[PyTree],
    counts: tuple[int, ...],
    sigma: float,
    noise_scale: PyTree | None = None,
    members_at_once: int | str | None = None,
) -> tuple[Array, Array]:
    """L(θ ± σ·s·ε_i) of every pair, `([P], [P])`, slice by slice: slice s has `counts[s]` pairs on
    `batches[s]` (its episodes), both signs of a pair on the same episode (common random numbers, §3.1).
    `noise_scale` s (a tree like θ, `relative_noise_scale`) scales each parameter's noise; `members_at_once`
    how many members a device runs together (None: all; "auto": see `learners.base.resolve_at_once`)."""
    # Only the members see the scale; ĝ is taken over the unscaled ε (the search variable u).
    scaled_eps = eps if noise_scale is None else jax.tree.map(lambda e, s: e * s[None], eps, noise_scale)
    plus, minus, start = [], [], 0
    for index, (count, batch) in enumerate(zip(counts, batches, strict=True)):
        slice_eps = jax.tree.map(lambda e, a=start, n=count: e[a : a + n], scaled_eps)
        members = antithetic_members(meta, slice_eps, sigma)
        both_signs = jax.tree.map(lambda a: jnp.concatenate([a, a], axis=0), batch)
        losses = problem.member_losses(index, members, both_signs, members_at_once)
        if losses.shape != (2 * count,):
            raise ValueError(f"member_losses must return one scalar per member, got shape {losses.shape}")
        plus.append(losses[:count])
        minus.append(losses[count:])
        start += count
    return jnp.concatenate(plus), jnp.concatenate(minus)


def es_gradient(
    problem: MetaProblem,
    meta: PyTree,
    key: Array,
    counts: tuple[int, ...],
    sigma: float,
    noise_scale: PyTree | None = None,
    members_at_once: int | str | None = None,
    fitness_shaping: str = "raw",
) -> tuple[PyTree, ESInfo]:
    """The antithetic OpenAI-ES estimate ĝ of ∇_θ E[L(θ)] on `problem` (§3.1), with `counts[s]` pairs in slice s.

    `key` is split into the noise key (ε), the data key (each pair's episode) and the initial-state key (each
    pair's learner state), as the trainer always has, so runs resumed or repeated draw the same. Returns
    `(ĝ, ESInfo)`; ĝ has the structure and dtypes of `meta`. Non-finite losses: see `es_gradient_from_losses`.
    """
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
            raise ValueError(f"every slice needs a positive int number of pairs, got {counts!r}")
    noise_key, data_key, init_key = jax.random.split(key, 3)
    eps = sample_antithetic_noise(noise_key, meta, sum(counts))
    batches = problem.sample(counts, data_key, init_key)
    loss_plus, loss_minus = antithetic_losses(
        problem, meta, eps, batches, counts, sigma, noise_scale, members_at_once
    )
    return es_gradient_from_losses(eps, loss_plus, loss_minus, sigma, fitness_shaping)


def es_learning_rate(cfg: OpenESConfig) -> optax.ScalarOrSchedule:
    """Adam's step size: `learning_rate`, or its half-cosine decay to `final_learning_rate` (see OpenESConfig)."""
    if cfg.decay_iterations is None:
        return cfg.learning_rate
    final = cfg.final_learning_rate / cfg.learning_rate
    return optax.cosine_decay_schedule(cfg.learning_rate, cfg.decay_iterations, alpha=final)


def make_es_optimizer(cfg: OpenESConfig) -> optax.GradientTransformation:
    """Adam on ĝ (§3.1: lr 0.025, b1 0.9, b2 0.999, eps 1e-8; no clipping, no weight decay)."""
    return optax.adam(es_learning_rate(cfg), b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps)


def es_update(
    optimizer: optax.GradientTransformation,
    meta: PyTree,
    opt_state: optax.OptState,
    grad: PyTree,
    info: ESInfo,
    noise_scale: PyTree | None = None,
) -> tuple[PyTree, optax.OptState]:
    """θ ← θ − s·Adam(ĝ): ĝ is fed to the optimiser as the gradient of a loss to minimise (§3.1), each
    parameter's step scaled by `noise_scale` s when it is set. If every pair was non-finite there is no
    information: θ and Adam's moments stay as they were."""
    updates, new_opt_state = optimizer.update(grad, opt_state, meta)
    if noise_scale is not None:
        updates = jax.tree.map(lambda u, s: u * s, updates, noise_scale)
    new_meta = optax.apply_updates(meta, updates)
    any_valid = info.num_nonfinite < info.loss_plus.shape[0]
    new_meta = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o), new_meta, meta)
    new_opt_state = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o), new_opt_state, opt_state)
    return new_meta, new_opt_state


def relative_noise_scale(meta: PyTree, floor: float) -> PyTree:
    """|θ_0| + floor per parameter: the scale of noise and step under `OpenESConfig.relative_floor`."""
    return jax.tree.map(lambda t: jnp.abs(jnp.asarray(t)) + jnp.asarray(floor, jnp.result_type(t)), meta)


@dataclass(frozen=True)
class OpenES(MetaOptimizerDefaults):
    """Antithetic OpenAI-ES behind the `MetaOptimizer` protocol: each iteration `es_gradient`, then `es_update`."""

    config: OpenESConfig = OpenESConfig()
    name: ClassVar[str] = "es"
    label: ClassVar[str] = "ES"

    def init(self, meta: PyTree, key: Array | None = None) -> MetaState:
        _check_meta_leaves(meta)
        floor = self.config.relative_floor
        # Fixed at the start (warm start or seed), so a resumed run searches the same space.
        noise_scale = None if floor is None else relative_noise_scale(meta, floor)
        return MetaState(meta, make_es_optimizer(self.config).init(meta), noise_scale)

    def step(self, state: MetaState, key: Array, problem: MetaProblem) -> tuple[MetaState, dict[str, Array]]:
        cfg = self.config
        grad, info = es_gradient(
            problem, state.meta, key, self.slice_counts(problem.shares), cfg.sigma, state.fixed,
            cfg.members_at_once, cfg.fitness_shaping,
        )  # fmt: skip
        meta, opt_state = es_update(make_es_optimizer(cfg), state.meta, state.opt_state, grad, info, state.fixed)
        return state._replace(meta=meta, opt_state=opt_state), {
            "loss": info.mean_loss,
            "num_nonfinite": info.num_nonfinite,
        }

    def check(self, problem: MetaProblem, meta: PyTree) -> None:
        _check_meta_leaves(meta)
        self.slice_counts(problem.shares)

    def slice_counts(self, shares: tuple[int, ...]) -> tuple[int, ...]:
        return split_counts(self.config.num_pairs, shares, "es.num_pairs")

    def describe_nonfinite(self, count: int) -> str:
        return f"{count} of {self.config.num_pairs} pairs had a non-finite loss and were left out of the update"
