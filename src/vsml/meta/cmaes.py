"""Full-covariance CMA-ES in pure JAX, the BLUR meta-optimiser (Sandler et al. 2021 used pycma).

Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772. Equation numbers below refer to its
Appendix A summary, eqs. (38)–(47), and the default strategy parameters of its Table 1 (the 2023 revision,
whose c_μ carries the 1/4 term). One generation, minimising f over R^n:

    z_k ~ N(0, I),  y_k = B D z_k,  x_k = m + σ y_k                k = 1..λ                    (38)–(40)
    ⟨y⟩_w = Σ_{i≤μ} w_i y_{i:λ}                                    the μ best, w_i > 0, Σ w_i = 1 (41)
    m ← m + c_m σ ⟨y⟩_w                                            c_m = 1                     (42)
    p_σ ← (1 − c_σ) p_σ + √(c_σ (2 − c_σ) μ_eff) C^{-1/2} ⟨y⟩_w                                (43)
    σ ← σ exp((c_σ / d_σ) (‖p_σ‖ / E‖N(0, I)‖ − 1))                                            (44)
    p_c ← (1 − c_c) p_c + h_σ √(c_c (2 − c_c) μ_eff) ⟨y⟩_w                                     (45)
    C ← (1 + c_1 δ(h_σ) − c_1 − c_μ) C + c_1 p_c p_cᵀ + c_μ Σ_i w_i y_{i:λ} y_{i:λ}ᵀ             (47)

Only the positive (default) recombination weights are used: no active CMA, so (46) is the identity. C is
eigendecomposed every generation (the BLUR genome has n ≈ 25, so O(n³) per generation is negligible).

Documented choice: candidates are drawn as y_k = B D Bᵀ z_k, the symmetric square root of C, where the tutorial
writes B D z_k. Any square root of C gives the same distribution N(0, C), and the update only uses the
candidates, y_k = (x_k − m)/σ. But B D z_k depends on the basis that eigh returns (`cmaes_ask`), and B D Bᵀ z_k
does not.

Documented choice: a non-finite fitness (NaN/±inf from a diverging candidate) ranks after every finite one, so
such a candidate is a parent only if fewer than μ candidates are finite; it never becomes the best-so-far.

Everything is a pure function over arrays; `cmaes_ask` and `cmaes_tell` are jittable with the config static.
Meta-parameter pytrees are flattened to the `[n]` search vector with `ravel_meta`.

`CMAES` is the `MetaOptimizer` (meta/protocol.py) of meta-training, BLUR's headline one (blur.md §6, §9: pycma
with population 80, fitness = −accuracy on held-out batches after the unroll, our `query_error` loss). Every
candidate of a generation sees the same episodes of every population slice (common random numbers) and the
same initial synapse keys, so the ranking compares genomes, not data draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from vsml.meta.protocol import MetaOptimizerDefaults, MetaProblem, MetaState

Array = jax.Array
PyTree = Any

__all__ = [
    "CMAES",
    "CMAESConfig",
    "CMAESConstants",
    "CMAESState",
    "cmaes_ask",
    "cmaes_constants",
    "cmaes_init",
    "cmaes_tell",
    "ravel_meta",
]

# Full covariance costs O(n²) memory and an O(n³) eigendecomposition per generation: beyond this many
# meta-parameters (VSML's V_M has ~2.4k; BLUR's genome ~25) a generation is dominated by it.
MAX_FULL_COVARIANCE_DIMENSION = 10_000
_EIGENVALUE_FLOOR = 1e-20  # clamp for eigenvalues of C that rounding made ≤ 0 (float32-safe: > 1.2e-38)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class CMAESConfig:
    """Settings of CMA-ES; the rest of the strategy parameters are Table 1's defaults for (n, λ, μ)."""

    population_size: int | None = None  # λ; None → 4 + ⌊3 ln n⌋ (Table 1)
    sigma: float = 0.1  # initial step size σ⁽⁰⁾
    num_parents: int | None = None  # μ; None → ⌊λ / 2⌋
    # Meta-training only: episodes per population slice and generation, the same for every candidate (common
    # random numbers, so candidates are ranked on equal data); fitness = their mean meta-loss.
    num_episodes: int = 1

    def __post_init__(self) -> None:
        if not _is_int(self.num_episodes) or self.num_episodes < 1:
            raise ValueError(f"cmaes.num_episodes must be an int >= 1, got {self.num_episodes!r}")
        lam, mu, sigma = self.population_size, self.num_parents, self.sigma
        if lam is not None and (not _is_int(lam) or lam < 2):
            raise ValueError(f"cmaes.population_size must be an int >= 2 or null, got {lam!r}")
        if mu is not None and (not _is_int(mu) or mu < 1):
            raise ValueError(f"cmaes.num_parents must be an int >= 1 or null, got {mu!r}")
        if lam is not None and mu is not None and mu > lam:
            raise ValueError(f"cmaes.num_parents must be <= cmaes.population_size ({lam}), got {mu}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0.0 < sigma < math.inf:
            raise ValueError(f"cmaes.sigma must be a positive finite number, got {sigma!r}")


class CMAESConstants(NamedTuple):
    """Strategy parameters derived from (n, config): tutorial Table 1. Plain Python/NumPy values."""

    n: int  # search-space dimension
    population_size: int  # λ
    num_parents: int  # μ
    weights: np.ndarray  # [μ] positive recombination weights, decreasing, summing to 1
    mu_eff: float  # variance-effective selection mass (Σ w_i)² / Σ w_i²
    c_sigma: float  # cumulation rate of p_σ
    d_sigma: float  # damping of the step-size update
    c_c: float  # cumulation rate of p_c
    c_1: float  # learning rate of the rank-one update
    c_mu: float  # learning rate of the rank-μ update
    chi_n: float  # E‖N(0, I_n)‖ ≈ √n (1 − 1/(4n) + 1/(21n²))


class CMAESState(NamedTuple):
    """The search distribution N(m, σ² C) with C = B D² Bᵀ, its evolution paths and the best point seen."""

    mean: Array  # [n]    m
    sigma: Array  # []    σ
    covariance: Array  # [n, n]  C
    p_sigma: Array  # [n]  conjugate evolution path p_σ
    p_c: Array  # [n]      evolution path p_c
    eigenvectors: Array  # [n, n]  B: columns are the eigenvectors of C
    eigenvalues_sqrt: Array  # [n]  D: square roots of C's eigenvalues (clamped to a tiny positive floor)
    generation: Array  # [] int32  g, the number of `cmaes_tell` calls so far
    best_params: Array  # [n]  best candidate evaluated so far (the initial mean before any finite fitness)
    best_fitness: Array  # []  its fitness (+inf before any finite fitness)


def cmaes_constants(n: int, config: CMAESConfig) -> CMAESConstants:
    """Table 1 of the tutorial for dimension n, with λ and μ from `config` (defaults where it says None)."""
    if not _is_int(n) or n < 1:
        raise ValueError(f"CMA-ES needs a search dimension n >= 1, got {n!r}")
    n = int(n)
    lam = config.population_size
    if lam is None:
        lam = 4 + int(math.floor(3 * math.log(n)))
    mu = config.num_parents if config.num_parents is not None else lam // 2
    if mu > lam:
        raise ValueError(f"cmaes.num_parents must be <= the population size λ = {lam} (n = {n}), got {mu}")
    # Table 1: w'_i = ln((λ+1)/2) − ln i, positive for i ≤ ⌊λ/2⌋; normalised to sum to 1 (no active CMA). For a
    # user μ above (λ+1)/2 the reference point moves to μ + 1/2 so that every one of the μ weights stays > 0.
    ranks = np.arange(1, mu + 1, dtype=np.float64)
    raw = math.log(max((lam + 1) / 2, mu + 0.5)) - np.log(ranks)
    weights = raw / raw.sum()
    mu_eff = float(1.0 / np.sum(weights**2))
    alpha_cov = 2.0
    c_sigma = (mu_eff + 2) / (n + mu_eff + 5)
    d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma
    c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
    c_1 = alpha_cov / ((n + 1.3) ** 2 + mu_eff)
    c_mu_raw = alpha_cov * (0.25 + mu_eff + 1 / mu_eff - 2) / ((n + 2) ** 2 + alpha_cov * mu_eff / 2)
    c_mu = min(1 - c_1, c_mu_raw)
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
    return CMAESConstants(n, lam, mu, weights, mu_eff, c_sigma, d_sigma, c_c, c_1, c_mu, chi_n)


def cmaes_init(config: CMAESConfig, mean: Array) -> CMAESState:
    """The initial state: m = `mean` ([n], floating), σ = `config.sigma`, C = B = I, D = 1, zero paths."""
    mean = jnp.asarray(mean)
    if mean.ndim != 1:
        raise ValueError(f"cmaes_init needs a flat [n] mean (see ravel_meta), got shape {mean.shape}")
    if not jnp.issubdtype(mean.dtype, jnp.floating):
        mean = mean.astype(jnp.result_type(float))
    n = mean.shape[0]
    cmaes_constants(n, config)  # validates λ and μ against n now rather than at the first ask
    dtype = mean.dtype
    return CMAESState(
        mean=mean,
        sigma=jnp.asarray(config.sigma, dtype),
        covariance=jnp.eye(n, dtype=dtype),
        p_sigma=jnp.zeros(n, dtype),
        p_c=jnp.zeros(n, dtype),
        eigenvectors=jnp.eye(n, dtype=dtype),
        eigenvalues_sqrt=jnp.ones(n, dtype),
        generation=jnp.asarray(0, jnp.int32),
        best_params=mean,
        best_fitness=jnp.asarray(jnp.inf, dtype),
    )


def cmaes_ask(config: CMAESConfig, state: CMAESState, key: Array) -> Array:
    """λ candidates x_k = m + σ C^{1/2} z_k with z_k ~ N(0, I), as `[λ, n]` (eqs. 38–40).

    The tutorial's y_k = B D z_k is replaced by the symmetric root y_k = B D Bᵀ z_k. Both have the same
    distribution N(0, C), but the symmetric root gives one sample per key. eigh's eigenvectors are fixed only
    up to sign. Within a repeated eigenvalue they are fixed only up to rotation: while μ + 1 < n, C is
    (1 − c_1 − c_μ) I plus a low-rank update for the first ≈ n/(μ + 1) generations. In both cases rounding
    picks the basis, so with B D z one seed gave different genomes on two CPUs
    (tests/meta/test_meta_regression.py failed on an AMD EPYC after passing elsewhere). B D Bᵀ does not depend
    on that basis (tests/meta/test_cmaes.py).
    """
    n = state.mean.shape[0]
    lam = cmaes_constants(n, config).population_size
    z = jax.random.normal(key, (lam, n), dtype=state.mean.dtype)  # (38)
    B, D = state.eigenvectors, state.eigenvalues_sqrt
    y = ((z @ B) * D[None, :]) @ B.T  # (39), row k is B D Bᵀ z_k
    return state.mean[None, :] + state.sigma * y  # (40)


def cmaes_tell(config: CMAESConfig, state: CMAESState, candidates: Array, fitness: Array) -> CMAESState:
    """The state after one generation, from the `[λ, n]` candidates of `cmaes_ask` and their `[λ]` fitness.

    Lower fitness is better. Non-finite fitness ranks after every finite value (ties keep candidate order).
    """
    n = state.mean.shape[0]
    const = cmaes_constants(n, config)
    lam, mu = const.population_size, const.num_parents
    if candidates.shape != (lam, n) or fitness.shape != (lam,):
        raise ValueError(
            f"cmaes_tell expects candidates [{lam}, {n}] and fitness [{lam}], "
            f"got {candidates.shape} and {fitness.shape}"
        )
    dtype = state.mean.dtype
    weights = jnp.asarray(const.weights, dtype)  # [μ]
    candidates = candidates.astype(dtype)
    fitness = jnp.where(jnp.isfinite(fitness), fitness, jnp.inf).astype(dtype)

    # Selection: the μ best, best first (a stable sort, so equal fitness keeps the sampling order).
    order = jnp.argsort(fitness, stable=True)
    parents = candidates[order[:mu]]  # [μ, n]
    y = (parents - state.mean[None, :]) / state.sigma  # [μ, n]  y_{i:λ} = (x_{i:λ} − m) / σ
    y_w = weights @ y  # [n]  (41)
    mean = state.mean + state.sigma * y_w  # (42), c_m = 1

    # Step-size control: C^{-1/2} = B D⁻¹ Bᵀ.
    B, D = state.eigenvectors, state.eigenvalues_sqrt
    c_inv_sqrt_y_w = B @ ((B.T @ y_w) / D)
    c_s = const.c_sigma
    p_sigma = (1 - c_s) * state.p_sigma + math.sqrt(c_s * (2 - c_s) * const.mu_eff) * c_inv_sqrt_y_w  # (43)
    p_sigma_norm = jnp.linalg.norm(p_sigma)
    sigma = state.sigma * jnp.exp((c_s / const.d_sigma) * (p_sigma_norm / const.chi_n - 1))  # (44)

    # h_σ stalls the p_c update while ‖p_σ‖ is large (e.g. right after a σ increase): Appendix A, below (45).
    generation = state.generation + 1
    bias = jnp.sqrt(1 - (1 - c_s) ** (2 * generation.astype(dtype)))
    h_sigma = (p_sigma_norm / bias < (1.4 + 2 / (n + 1)) * const.chi_n).astype(dtype)
    c_c = const.c_c
    p_c = (1 - c_c) * state.p_c + h_sigma * math.sqrt(c_c * (2 - c_c) * const.mu_eff) * y_w  # (45)

    # Covariance: rank-one (p_c p_cᵀ) plus rank-μ (Σ w_i y_i y_iᵀ); Σ w_i = 1 with positive weights only.
    c_1, c_mu = const.c_1, const.c_mu
    delta_h = (1 - h_sigma) * c_c * (2 - c_c)  # δ(h_σ), compensates the variance lost to the stall
    rank_one = p_c[:, None] * p_c[None, :]
    rank_mu = (y * weights[:, None]).T @ y
    covariance = (1 + c_1 * delta_h - c_1 - c_mu) * state.covariance + c_1 * rank_one + c_mu * rank_mu  # (47)

    # Eigendecomposition C = B D² Bᵀ, every generation (n is small). Symmetrise against rounding first.
    covariance = 0.5 * (covariance + covariance.T)
    eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)
    eigenvalues_sqrt = jnp.sqrt(jnp.maximum(eigenvalues, _EIGENVALUE_FLOOR))

    # Best-so-far over every evaluated candidate (inf never beats anything, so non-finite ones never count).
    best = order[0]
    improved = fitness[best] < state.best_fitness
    return CMAESState(
        mean=mean,
        sigma=sigma,
        covariance=covariance,
        p_sigma=p_sigma,
        p_c=p_c,
        eigenvectors=eigenvectors,
        eigenvalues_sqrt=eigenvalues_sqrt,
        generation=generation,
        best_params=jnp.where(improved, candidates[best], state.best_params),
        best_fitness=jnp.where(improved, fitness[best], state.best_fitness),
    )


def ravel_meta(meta: PyTree) -> tuple[Array, Callable[[Array], PyTree]]:
    """Flatten a meta-parameter pytree to the `[n]` CMA-ES search vector, with the inverse `unravel(vector)`.

    A thin wrapper of `jax.flatten_util.ravel_pytree`: leaves are concatenated in `jax.tree.leaves` order and
    promoted to a common dtype; `unravel` restores every leaf's shape and dtype.
    """
    if not jax.tree.leaves(meta):
        raise ValueError("CMA-ES needs at least one meta-parameter array; the meta pytree has no leaves")
    return ravel_pytree(meta)


@dataclass(frozen=True)
class CMAES(MetaOptimizerDefaults):
    """CMA-ES behind the `MetaOptimizer` protocol. The state's `opt_state` is the search distribution
    (`CMAESState`), its `meta` the search mean as the learner's meta-parameters (what is evaluated and
    checkpointed)."""

    config: CMAESConfig = CMAESConfig()
    name: ClassVar[str] = "cmaes"
    label: ClassVar[str] = "CMA-ES"

    def init(self, meta: PyTree, key: Array | None = None) -> MetaState:
        flat, _ = ravel_meta(meta)
        return MetaState(meta, cmaes_init(self.config, flat))

    def step(self, state: MetaState, key: Array, problem: MetaProblem) -> tuple[MetaState, dict[str, Array]]:
        """One generation: sample candidates, run each on the same episodes, rank, update. Slice s gives
        `num_episodes` episodes, which every candidate runs; the fitness averages the slices."""
        counts = self.slice_counts(problem.shares)
        _, unravel = ravel_meta(state.meta)
        ask_key, data_key, init_key = jax.random.split(key, 3)
        candidates = cmaes_ask(self.config, state.opt_state, ask_key)
        members = jax.vmap(unravel)(candidates)
        fitness = jnp.zeros(candidates.shape[0], candidates.dtype)
        for index, batch in enumerate(problem.sample(counts, data_key, init_key)):
            fitness = fitness + problem.candidate_losses(index, members, batch) / len(counts)
        search = cmaes_tell(self.config, state.opt_state, candidates, fitness)
        finite = jnp.isfinite(fitness)
        mean_fitness = jnp.sum(jnp.where(finite, fitness, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
        info = {
            "loss": mean_fitness,
            "num_nonfinite": jnp.sum(~finite).astype(jnp.int32),
            "best_loss": jnp.min(jnp.where(finite, fitness, jnp.inf)),  # this generation's best candidate
        }
        return MetaState(unravel(search.mean), search, state.fixed), info

    def check(self, problem: MetaProblem, meta: PyTree) -> None:
        n = sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(meta))  # shapes only
        if n > MAX_FULL_COVARIANCE_DIMENSION:
            raise ValueError(
                f"meta_optimizer cmaes keeps a full {n}×{n} covariance of the learner's {n} meta-parameters "
                f"(more than {MAX_FULL_COVARIANCE_DIMENSION:,}): its memory and eigendecomposition would dominate "
                "every generation. Use meta_optimizer es (or grad) for this learner, or a learner with fewer "
                "meta-parameters"
            )

    def slice_counts(self, shares: tuple[int, ...]) -> tuple[int, ...]:
        return (self.config.num_episodes,) * len(shares)  # every candidate runs every slice's episodes

    def describe_nonfinite(self, count: int) -> str:
        return f"{count} candidates had a non-finite fitness (ranked last)"
