"""Tests of antithetic OpenAI-ES (spec vsml.md §3.1) on problems whose gradient is known.

For the quadratic L(θ) = ½‖A(θ − θ*)‖² the antithetic difference is exact: L(θ+σε) − L(θ−σε) = 2σ gᵀε with
g = AᵀA(θ − θ*), so ĝ = (1/P) Σ_i (gᵀε_i) ε_i. With ε ~ N(0, I_n), E[ĝ] = g and, by Isserlis' theorem,
Cov[ĝ] = (‖g‖² I + g gᵀ) / P: component j has standard error √((‖g‖² + g_j²) / P) and
E‖ĝ − g‖² = (n + 1) ‖g‖² / P. The tests assert the estimate is within a few standard errors of g, and that the
same check rejects a wrong sign or scale, so it cannot pass trivially.

The estimator under test is the one that meta-trains: `es_gradient` and `es_update`, which `OpenES.step` runs
on any `MetaProblem`. Here the problem is `LossProblem`, a loss of (θ, pair key); the trainer's is a learner on
episodes (`meta.problem.EpisodeProblem`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml.learners.base import map_in_batches
from vsml.meta.es import (
    ESInfo,
    OpenES,
    OpenESConfig,
    antithetic_losses,
    centered_ranks,
    es_gradient,
    es_gradient_from_losses,
    es_update,
    make_es_optimizer,
    sample_antithetic_noise,
)
from vsml.meta.protocol import meta_step

# A two-leaf meta pytree of different shapes: n = 3*2 + 4 = 10 parameters.
THETA = {"w": jnp.array([[0.3, -0.2], [0.1, 0.5], [-0.4, 0.2]]), "b": jnp.array([0.2, -0.1, 0.6, -0.3])}
THETA_STAR = {"w": jnp.full((3, 2), 0.1), "b": jnp.array([-0.2, 0.0, 0.1, 0.3])}
N = 10
A = jnp.asarray(np.random.default_rng(0).normal(size=(N, N)) / np.sqrt(N) + np.eye(N), dtype=jnp.float32)



@partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=["loss_fn", "shares"])
@dataclass(frozen=True)
class LossProblem:
    """A `MetaProblem` whose "episode" is a pair key: member θ on key k scores `loss_fn(θ, k)`."""

    loss_fn: Callable[[dict, jax.Array], jax.Array]
    shares: tuple[int, ...] = (1,)
    differentiable = True

    def sample(self, counts, data_key, init_key):
        return [
            jax.random.split(data_key if s == 0 else jax.random.fold_in(data_key, s), count)
            for s, count in enumerate(counts)
        ]

    def member_losses(self, slice_index, members, keys, at_once):
        return map_in_batches(self.loss_fn, (members, keys), None if at_once == "auto" else at_once)

    def candidate_losses(self, slice_index, members, keys):
        return jax.vmap(lambda m: jnp.mean(jax.vmap(partial(self.loss_fn, m))(keys)))(members)

    def mean_loss(self, slice_index, meta, keys, at_once, remat):
        return jnp.mean(jax.vmap(partial(self.loss_fn, meta))(keys))


# Jitted once (per loss function): eager op-by-op dispatch, and compiling the random-number kernels again for
# every test, would dominate the test time.
_es_gradient = jax.jit(es_gradient, static_argnames=("counts", "members_at_once"))
gradient_from_losses = jax.jit(es_gradient_from_losses, static_argnames=("fitness_shaping",))
evaluate_population = jax.jit(antithetic_losses, static_argnames=("counts", "members_at_once"))
sample_noise = jax.jit(sample_antithetic_noise, static_argnums=2)


def estimate_gradient(loss_fn, meta, key, num_pairs, sigma, members_at_once=None, shares=(1,)):
    """The trainer's ES estimate on `LossProblem(loss_fn)`: `num_pairs` pairs split over the slices' shares."""
    problem = LossProblem(loss_fn, shares)
    counts = OpenES(OpenESConfig(num_pairs=num_pairs)).slice_counts(shares) if num_pairs > 0 else (num_pairs,)
    return _es_gradient(problem, meta, key, counts=counts, sigma=sigma, members_at_once=members_at_once)


def population(seed: int, num_pairs: int = 64) -> tuple[dict, jax.Array]:
    """Noise `[P, ...]` and P pair keys, for tests that take the estimator apart."""
    noise_key, pairs_key = jax.random.split(jax.random.key(seed))
    return sample_noise(noise_key, THETA, num_pairs), jax.random.split(pairs_key, num_pairs)


def losses_of_population(loss_fn, eps, keys, members_at_once=None):
    """(L+ [P], L− [P]) of the pairs θ ± σε_i on pair keys `keys`, as `es_gradient` evaluates them."""
    problem = LossProblem(loss_fn)
    counts = (keys.shape[0],)
    return evaluate_population(problem, THETA, eps, [keys], counts=counts, sigma=0.05, members_at_once=members_at_once)


def flat(tree) -> jax.Array:
    return jnp.concatenate([tree["b"].ravel(), tree["w"].ravel()])  # flattening order of the dict: b, w


def quadratic(meta, key=None) -> jax.Array:
    r = A @ (flat(meta) - flat(THETA_STAR))
    return 0.5 * jnp.sum(r**2)


def true_gradient() -> jax.Array:
    return A.T @ (A @ (flat(THETA) - flat(THETA_STAR)))


def z_scores(estimate: jax.Array, g: jax.Array, num_pairs: int) -> np.ndarray:
    """|ĝ_j − g_j| in units of the analytic standard error of component j (module docstring)."""
    se = jnp.sqrt((jnp.sum(g**2) + g**2) / num_pairs)
    return np.asarray(jnp.abs(estimate - g) / se)


def cosine(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def test_estimate_matches_quadratic_gradient_within_standard_errors():
    g = true_gradient()
    num_pairs = 4096
    grad, info = estimate_gradient(quadratic, THETA, jax.random.key(1), num_pairs, 0.05)
    estimate = flat(grad)
    assert jax.tree.structure(grad) == jax.tree.structure(THETA)
    assert all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(THETA), strict=True)
    )
    assert int(info.num_nonfinite) == 0
    assert z_scores(estimate, g, num_pairs).max() < 4.5
    # Relative error ≈ √((n+1)/P) ≈ 0.05, so the direction is nearly exact.
    assert cosine(estimate, g) > 0.99
    # The same check has the power to reject a wrong sign or a missing factor 2 in 2σ.
    assert z_scores(-estimate, g, num_pairs).max() > 4.5
    assert z_scores(2.0 * estimate, g, num_pairs).max() > 4.5
    assert cosine(-estimate, g) < -0.99


def test_empirical_error_matches_analytic_variance():
    g = true_gradient()
    num_pairs, repeats = 64, 200
    keys = jax.random.split(jax.random.key(2), repeats)
    estimates = jnp.stack([flat(estimate_gradient(quadratic, THETA, k, num_pairs, 0.05)[0]) for k in keys])
    sq_err = jnp.sum((estimates - g[None]) ** 2, axis=1)
    expected = (N + 1) * jnp.sum(g**2) / num_pairs
    # Over 200 repeats the mean squared error has a standard error of ~3.5%, so ±15% is ~4 SE.
    assert 0.85 < float(jnp.mean(sq_err) / expected) < 1.15
    assert z_scores(jnp.mean(estimates, axis=0), g, num_pairs * repeats).max() < 4.5


def test_common_random_numbers_cancel_key_dependent_terms():
    """Both signs of a pair share the pair key (§3.1), so a large key-only term cancels exactly."""
    num_pairs = 64

    def noisy_loss(meta, key):
        return quadratic(meta) + 100.0 * jax.random.normal(key)

    key = jax.random.key(3)
    clean, _ = estimate_gradient(quadratic, THETA, key, num_pairs, 0.05)
    noisy, info = estimate_gradient(noisy_loss, THETA, key, num_pairs, 0.05)
    scale = float(jnp.abs(flat(clean)).max())
    np.testing.assert_allclose(flat(noisy), flat(clean), rtol=1e-3, atol=1e-3 * scale)
    # The logged loss does carry the key term: it is the mean of (L+ + L−)/2.
    assert abs(float(info.mean_loss) - float(quadratic(THETA))) > 1.0

    # The estimator is linear in the losses, so with independent keys per sign the key term would add
    # ĝ(100 z+, 100 z−), which swamps the gradient; with shared keys it adds ĝ(100 z, 100 z) = 0.
    rng = np.random.default_rng(0)
    eps = {"b": rng.normal(size=(num_pairs, 4)), "w": rng.normal(size=(num_pairs, 3, 2))}
    eps = jax.tree.map(lambda e: e.astype(np.float32), eps)
    z_plus, z_minus = 100.0 * rng.normal(size=(2, num_pairs)).astype(np.float32)
    independent, _ = gradient_from_losses(eps, z_plus, z_minus, 0.05)
    shared, _ = gradient_from_losses(eps, z_plus, z_plus, 0.05)
    assert jnp.linalg.norm(flat(independent)) > 10 * jnp.linalg.norm(flat(clean))
    assert float(jnp.abs(flat(shared)).max()) == 0.0


def test_loss_sees_the_same_key_for_both_signs():
    def key_only_loss(meta, key):
        return jax.random.uniform(key) + 0.0 * quadratic(meta)

    eps, keys = population(5)
    loss_plus, loss_minus = losses_of_population(key_only_loss, eps, keys)
    np.testing.assert_array_equal(loss_plus, loss_minus)
    assert len(set(np.asarray(loss_plus).tolist())) == 64  # but every pair has its own key
    grad, _ = gradient_from_losses(eps, loss_plus, loss_minus, 0.05)
    assert float(jnp.abs(flat(grad)).max()) == 0.0


def test_non_finite_pairs_are_dropped_from_the_estimate():
    num_pairs = 64
    eps, keys = population(6)
    loss_plus, loss_minus = losses_of_population(quadratic, eps, keys)
    bad = np.zeros(num_pairs, bool)
    bad[[1, 7, 8, 30]] = True
    loss_plus = loss_plus.at[1].set(jnp.nan).at[7].set(jnp.inf)
    loss_minus = loss_minus.at[8].set(-jnp.inf).at[30].set(jnp.nan)

    grad, info = gradient_from_losses(eps, loss_plus, loss_minus, 0.05)
    # Reference: the §3.1 formula, in numpy, over the 60 remaining pairs only.
    keep = ~bad
    lp, lm = np.asarray(loss_plus)[keep], np.asarray(loss_minus)[keep]
    coeff = (lp - lm) / (2 * 0.05 * keep.sum())
    reference = {name: np.tensordot(coeff, np.asarray(e)[keep], axes=1) for name, e in eps.items()}
    assert bool(jnp.all(jnp.isfinite(flat(grad))))
    np.testing.assert_allclose(flat(grad), flat(reference), rtol=1e-5, atol=1e-6)
    assert int(info.num_nonfinite) == 4
    np.testing.assert_allclose(info.mean_loss, np.mean((lp + lm) / 2), rtol=1e-6)


def test_one_diverging_sign_drops_only_its_pairs():
    """Members whose first coordinate exceeds θ_b0 + σ diverge: in each such pair only one sign is inf."""

    def fragile_loss(meta, key):
        return jnp.where(meta["b"][0] > THETA["b"][0] + 0.05, jnp.inf, quadratic(meta))

    eps, keys = population(7)
    loss_plus, loss_minus = losses_of_population(fragile_loss, eps, keys)
    grad, info = gradient_from_losses(eps, loss_plus, loss_minus, 0.05)
    # θ ± σε_b0 > θ_b0 + σ  <=>  ±ε_b0 > 1
    np.testing.assert_array_equal(jnp.isinf(loss_plus), eps["b"][:, 0] > 1.0)
    np.testing.assert_array_equal(jnp.isinf(loss_minus), eps["b"][:, 0] < -1.0)
    expected_bad = int(jnp.sum(jnp.abs(eps["b"][:, 0]) > 1.0))
    assert 0 < int(info.num_nonfinite) == expected_bad < 64
    assert bool(jnp.all(jnp.isfinite(flat(grad)))) and bool(jnp.isfinite(info.mean_loss))


def test_all_non_finite_gives_zero_gradient():
    eps, _ = population(8)
    nan, inf = jnp.full(64, jnp.nan), jnp.full(64, jnp.inf)
    for loss_plus, loss_minus in ((nan, nan), (inf, inf), (nan, jnp.zeros(64))):
        grad, info = gradient_from_losses(eps, loss_plus, loss_minus, 0.05)
        assert float(jnp.abs(flat(grad)).max()) == 0.0
        assert int(info.num_nonfinite) == 64
        assert bool(jnp.isnan(info.mean_loss))


def test_open_es_steps_decrease_the_quadratic():
    """The trainer's step (`meta_step(OpenES(...), ...)`): 60 iterations of ĝ then Adam, compiled once."""
    optimizer = OpenES(OpenESConfig(num_pairs=64))
    problem = LossProblem(quadratic)
    state = optimizer.init(THETA, jax.random.key(9))
    compiled_before = meta_step._cache_size()
    for key in jax.random.split(jax.random.key(9), 60):
        state, info = meta_step(optimizer, state, key, problem)
    assert meta_step._cache_size() == compiled_before + 1  # no recompilation across iterations
    assert float(quadratic(optimizer.meta_of(state))) < 0.1 * float(quadratic(THETA))
    assert set(info) == {"loss", "num_nonfinite"} and int(info["num_nonfinite"]) == 0


def test_open_es_step_is_es_gradient_then_es_update():
    """One ES implementation: `OpenES.step` equals `es_gradient` followed by `es_update` (to float32 rounding:
    the step is one compiled program, the reference two)."""
    cfg = OpenESConfig(num_pairs=8)
    optimizer, problem, key = OpenES(cfg), LossProblem(quadratic), jax.random.key(16)
    state, info = meta_step(optimizer, optimizer.init(THETA), key, problem)
    grad, es_info = estimate_gradient(quadratic, THETA, key, 8, cfg.sigma, cfg.members_at_once)
    adam = make_es_optimizer(cfg)
    meta, opt_state = es_update(adam, THETA, adam.init(THETA), grad, es_info)
    np.testing.assert_allclose(flat(state.meta), flat(meta), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(opt_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(info["loss"], es_info.mean_loss, rtol=1e-6)


def test_update_skipped_when_every_pair_fails():
    cfg = OpenESConfig()
    optimizer = make_es_optimizer(cfg)
    grad = {"w": jnp.full((3, 2), 2.0), "b": jnp.array([1.0, -1.0, 3.0, -0.5])}
    info = ESInfo(jnp.nan, jnp.int32(4), jnp.full(4, jnp.nan), jnp.full(4, jnp.nan))
    opt_state = optimizer.init(THETA)
    meta, new_opt_state = es_update(optimizer, THETA, opt_state, grad, info)
    np.testing.assert_array_equal(flat(meta), flat(THETA))
    for a, b in zip(jax.tree.leaves(new_opt_state), jax.tree.leaves(opt_state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_update_descends_along_the_estimate():
    """θ ← θ − Adam(ĝ): Adam's first step is −lr·sign(ĝ), so the sign convention is visible."""
    cfg = OpenESConfig()
    optimizer = make_es_optimizer(cfg)
    grad = {"w": jnp.full((3, 2), 2.0), "b": jnp.array([1.0, -1.0, 3.0, -0.5])}
    info = ESInfo(jnp.float32(0.0), jnp.int32(0), jnp.zeros(4), jnp.zeros(4))
    meta, _ = es_update(optimizer, THETA, optimizer.init(THETA), grad, info)
    step = jax.tree.map(lambda new, old: new - old, meta, THETA)
    np.testing.assert_allclose(flat(step), -cfg.learning_rate * jnp.sign(flat(grad)), rtol=1e-5)


def test_decaying_step_follows_the_half_cosine_then_stays_final():
    """With decay, Adam's n-th step (a constant ĝ: a step of lr_n in size) is
    lr_n = final + (lr − final)·(1 + cos(π n / N)) / 2 for n < N and final after; without it every step is lr."""
    lr, final, n_decay = 0.1, 0.01, 4
    grad = {"w": jnp.full((3, 2), 2.0), "b": jnp.array([1.0, -1.0, 3.0, -0.5])}
    info = ESInfo(jnp.float32(0.0), jnp.int32(0), jnp.zeros(4), jnp.zeros(4))
    for cfg, expected in (
        (
            OpenESConfig(learning_rate=lr, final_learning_rate=final, decay_iterations=n_decay),
            [final + (lr - final) * (1 + np.cos(np.pi * n / n_decay)) / 2 for n in range(n_decay)] + [final] * 2,
        ),
        (OpenESConfig(learning_rate=lr), [lr] * (n_decay + 2)),
    ):
        optimizer, meta = make_es_optimizer(cfg), THETA
        opt_state = optimizer.init(meta)
        for n, size in enumerate(expected):
            new_meta, opt_state = es_update(optimizer, meta, opt_state, grad, info)
            step = flat(jax.tree.map(lambda new, old: new - old, new_meta, meta))
            np.testing.assert_allclose(np.abs(step), size, rtol=1e-4, err_msg=f"step {n}")
            meta = new_meta


def test_estimate_over_population_slices_matches_the_gradient():
    """Pairs split over slices (shares 1:3): every slice's noise is its own part of ε, the mean is over all."""
    g = true_gradient()
    num_pairs = 4096
    grad, info = estimate_gradient(quadratic, THETA, jax.random.key(17), num_pairs, 0.05, shares=(1, 3))
    assert z_scores(flat(grad), g, num_pairs).max() < 4.5 and int(info.num_nonfinite) == 0
    assert info.loss_plus.shape == (num_pairs,)


def test_deterministic_for_a_fixed_key():
    a, _ = estimate_gradient(quadratic, THETA, jax.random.key(10), 64, 0.05)
    b, _ = estimate_gradient(quadratic, THETA, jax.random.key(10), 64, 0.05)
    c, _ = estimate_gradient(quadratic, THETA, jax.random.key(11), 64, 0.05)
    np.testing.assert_array_equal(flat(a), flat(b))
    assert not np.array_equal(flat(a), flat(c))


def test_raw_uint32_keys_work():
    typed, _ = estimate_gradient(quadratic, THETA, jax.random.key(12), 64, 0.05)
    raw, _ = estimate_gradient(quadratic, THETA, jax.random.PRNGKey(12), 64, 0.05)
    np.testing.assert_allclose(flat(raw), flat(typed), rtol=1e-6)


def test_member_batching_gives_the_same_losses():
    eps = sample_antithetic_noise(jax.random.key(13), THETA, 6)
    keys = jax.random.split(jax.random.key(14), 6)
    loss = lambda m, k: quadratic(m) + jax.random.normal(k)
    full = losses_of_population(loss, eps, keys)
    batched = losses_of_population(loss, eps, keys, 5)  # 12 members: batches of 5, 5 and a remainder
    np.testing.assert_allclose(jnp.stack(full), jnp.stack(batched), rtol=1e-6)


def test_noise_shapes_and_statistics():
    eps = sample_antithetic_noise(jax.random.key(15), THETA, 2000)
    assert eps["w"].shape == (2000, 3, 2) and eps["b"].shape == (2000, 4)
    values = flat(jax.tree.map(lambda e: e.reshape(-1), eps))
    assert abs(float(values.mean())) < 0.02 and abs(float(values.std()) - 1.0) < 0.02
    assert not np.allclose(eps["w"][:, 0, 0], eps["b"][:, 0])  # leaves draw independent noise


def test_rejects_bad_inputs():
    with pytest.raises(TypeError, match=r"\['n'\].*int32"):
        sample_antithetic_noise(jax.random.key(0), {"n": jnp.zeros(3, jnp.int32)}, 4)
    with pytest.raises(ValueError, match="pairs"):
        estimate_gradient(quadratic, THETA, jax.random.key(0), 0, 0.05)
    with pytest.raises(ValueError, match="scalar"):
        estimate_gradient(lambda m, k: jnp.zeros(2), THETA, jax.random.key(0), 4, 0.05)
    eps = sample_antithetic_noise(jax.random.key(0), THETA, 4)
    with pytest.raises(ValueError, match="leading axis"):
        gradient_from_losses(eps, jnp.zeros(5), jnp.zeros(5), 0.05)


def test_centered_ranks_span_minus_half_to_half_over_the_valid_pairs():
    loss_plus = jnp.array([3.0, 0.5, jnp.nan, 2.0])
    loss_minus = jnp.array([1.0, 4.0, 0.0, jnp.inf])
    valid = jnp.isfinite(loss_plus) & jnp.isfinite(loss_minus)
    plus, minus = centered_ranks(loss_plus, loss_minus, valid)
    # Valid members 3.0, 0.5 | 1.0, 4.0 rank 2, 0 | 1, 3 of 4: (rank / 3) - 0.5; invalid pairs get 0.
    np.testing.assert_allclose(plus, [2 / 3 - 0.5, -0.5, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(minus, [1 / 3 - 0.5, 0.5, 0.0, 0.0], atol=1e-7)


def test_centered_rank_estimate_ignores_the_loss_scale_and_descends():
    """Ranks are invariant under any increasing map of the losses (here exp, which would make the raw
    estimate follow the largest losses), and the shaped estimate still points along the gradient."""
    eps, keys = population(12)
    loss_plus, loss_minus = losses_of_population(quadratic, eps, keys)
    shaped, info = gradient_from_losses(eps, loss_plus, loss_minus, 0.05, "centered_rank")
    shaped_exp, _ = gradient_from_losses(eps, jnp.exp(loss_plus), jnp.exp(loss_minus), 0.05, "centered_rank")
    raw, _ = gradient_from_losses(eps, loss_plus, loss_minus, 0.05)
    np.testing.assert_allclose(flat(shaped), flat(shaped_exp), rtol=1e-6)
    assert cosine(flat(shaped), true_gradient()) > 0.5
    assert cosine(flat(shaped), flat(raw)) > 0.8
    assert not np.allclose(flat(shaped), flat(raw))  # a different estimate, not the raw one rescaled ...
    np.testing.assert_allclose(info.mean_loss, jnp.mean((loss_plus + loss_minus) / 2), rtol=1e-6)  # ... raw log
    optimizer = OpenES(OpenESConfig(num_pairs=64, fitness_shaping="centered_rank"))
    state = optimizer.init(THETA, jax.random.key(9))
    for key in jax.random.split(jax.random.key(9), 60):
        state, _ = meta_step(optimizer, state, key, LossProblem(quadratic))
    assert float(quadratic(optimizer.meta_of(state))) < 0.1 * float(quadratic(THETA))


def test_centered_rank_drops_non_finite_pairs():
    eps, keys = population(13)
    loss_plus, loss_minus = losses_of_population(quadratic, eps, keys)
    broken_plus = loss_plus.at[3].set(jnp.nan)
    grad, info = gradient_from_losses(eps, broken_plus, loss_minus, 0.05, "centered_rank")
    keep = np.arange(64) != 3
    kept = {name: e[keep] for name, e in eps.items()}
    reference, _ = gradient_from_losses(kept, loss_plus[keep], loss_minus[keep], 0.05, "centered_rank")
    np.testing.assert_allclose(flat(grad), flat(reference), rtol=1e-5, atol=1e-7)
    assert int(info.num_nonfinite) == 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"fitness_shaping": "ranks"}, "fitness_shaping"),
        ({"num_pairs": 0}, "num_pairs"),
        ({"num_pairs": 2.0}, "num_pairs"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"adam_b1": 1.0}, "adam_b1"),
        ({"final_learning_rate": 0.01}, "final_learning_rate and decay_iterations go together"),
        ({"decay_iterations": 100}, "final_learning_rate and decay_iterations go together"),
        ({"final_learning_rate": 0.0, "decay_iterations": 100}, "final_learning_rate must"),
        ({"final_learning_rate": 0.01, "decay_iterations": 0}, "decay_iterations must"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"OpenESConfig.{field}"):  # field: the message's start
        OpenESConfig(**kwargs)


def test_config_defaults_follow_the_spec():
    cfg = OpenESConfig()
    adam = (cfg.learning_rate, cfg.adam_b1, cfg.adam_b2, cfg.adam_eps)
    assert cfg.sigma == 0.05 and adam == (0.025, 0.9, 0.999, 1e-8)
    state = make_es_optimizer(cfg).init(THETA)
    assert isinstance(state[0], optax.ScaleByAdamState)
