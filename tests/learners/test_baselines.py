"""Tests for the meta-learned baselines of spec §5: MetaRNN, HebbianFW, FWP and FWMemory.

The core check: each baseline's episode agrees with a literal Haiku version written here from the spec §5 text
(`hk.LSTM`, `hk.Linear`, `hk.Conv2D`, `hk.LayerNorm`), given the same meta-parameters mapped into Haiku's
parameter dict. Haiku is a dev-only dependency, used as a test oracle only.
"""

from __future__ import annotations

import math
from functools import cache, partial

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml.learners import FWP, LEARNERS, FWMemory, HebbianFW, MetaRNN, build_learner
from vsml.learners.base import Learner, TaskSpec, run_episode, run_episodes, softmax_cross_entropy
from vsml.meta.grad import GradConfig, make_grad_optimizer
from vsml.meta.problem import meta_batch_loss

# Small oracle episodes: 12×12×2 images (a 3×3 stride-2 SAME trunk maps 12 → 6 → 3 → 2, the last one padded
# unevenly), 5 classes, 12 steps. A bound of 3 (not 100) makes every place the bound is (or is not) applied
# visible in the logits.
IMAGE = (12, 12, 2)
CLASSES = 5
STEPS = 12
BOUND = 3.0

# Small instances of the four learners for the interface and meta-training tests: 8-d inputs, 3 classes.
SMALL = {
    "metarnn": MetaRNN((8,), 3, slow_size=16),
    "hebbian": HebbianFW((8,), 3),
    "fwp": FWP((8,), 3, fast_size=8),
    "fwmemory": FWMemory((8,), 3, slow_size=16, memory_size=4),
}
SMALL_SPEC = TaskSpec((8,), 3)


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _meta_size(learner) -> int:
    """Number of meta-parameters, from shapes only (nothing is computed)."""
    return _count(jax.eval_shape(learner.init_meta, jax.random.key(0)))


@cache
def _init_meta(learner):
    """`learner.init_meta(key 0)`, jitted (one compilation, not one per random op) and cached per learner."""
    return jax.jit(learner.init_meta)(jax.random.key(0))


def _random_meta(learner, seed: int, scale: float = 1.0):
    """Meta-parameters of the learner's shapes, random everywhere (biases and constants included), drawn with
    NumPy so no random-number kernels are compiled: std scale/√fan_in for matrices, 0.3·scale otherwise."""
    rng = np.random.default_rng(seed)

    def draw(shape):
        std = scale / math.sqrt(math.prod(shape.shape[:-1])) if len(shape.shape) >= 2 else 0.3 * scale
        return jnp.asarray(std * rng.standard_normal(shape.shape), jnp.float32)

    return jax.tree.map(draw, jax.eval_shape(learner.init_meta, jax.random.key(0)))


def _episode(seed: int, input_shape=IMAGE, num_classes=CLASSES, steps=STEPS):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((steps, *input_shape))
    ys = np.eye(num_classes)[rng.integers(num_classes, size=steps)]
    return jnp.asarray(xs, jnp.float32), jnp.asarray(ys, jnp.float32)


def _mean_ce(logits: jax.Array, ys: jax.Array) -> jax.Array:
    return jnp.mean(softmax_cross_entropy(logits, ys))


# ---------------------------------------------------------------------------------------------------------------
# 1. Parameter counts (spec §5), shapes only.


def test_parameter_counts_match_spec():
    # 28×28×1 inputs padded to 62 outputs (the defaults).
    assert _meta_size(MetaRNN()) == 538_942
    assert _meta_size(HebbianFW(use_oja=True)) == 112_655
    assert _meta_size(HebbianFW(use_oja=False)) == 112_655
    assert _meta_size(FWMemory()) == 125_711


def test_parameter_counts_of_fwp_and_the_conv_trunks():
    C, D = 62, 28 * 28 * 1

    def linear(fan_in, fan_out):
        return fan_in * fan_out + fan_out

    def trunk(channels):  # 3 × Conv 3×3 (HWIO kernel + bias), 1 input channel
        return (9 * 1 * channels + channels) + 2 * (9 * channels * channels + channels)

    # FWP: one Linear from [x, ŷ, g, y] to k (64), v (C), q (64), β (1).
    assert _meta_size(FWP()) == linear(D + 3 * C, 64 + C + 64 + 1) == 185_461
    assert _meta_size(FWP(fast_size=8)) == linear(D + 3 * C, 8 + C + 8 + 1)

    # 3×3 stride-2 SAME convolutions: 28 → 14 → 7 → 4, so the trunk yields 4·4·channels features.
    # MetaRNN: 64 channels; LSTM(128) = Linear(features + 2C + 128 → 4·128); readout Linear(128 → C).
    features = 4 * 4 * 64
    metarnn = trunk(64) + linear(features + 2 * C + 128, 4 * 128) + linear(128, C)
    assert _meta_size(MetaRNN(use_conv=True)) == metarnn == 736_318

    # HebbianFW: 8 channels; W and C are [features + 2C, C], b [C], ρ [].
    features = 4 * 4 * 8
    hebbian = trunk(8) + 2 * (features + 2 * C) * C + C + 1
    assert _meta_size(HebbianFW(use_conv=True)) == hebbian == 32_559

    # FWMemory: 8 channels; LSTM(32); write head 3·16 + 1; read head 2·16; read projection 16 → 32; readout.
    fwmemory = (
        trunk(8)
        + linear(features + 2 * C + 32, 4 * 32)
        + linear(32, 3 * 16 + 1)
        + linear(32, 2 * 16)
        + linear(16, 32)
        + linear(32, C)
    )
    assert _meta_size(FWMemory(use_conv=True)) == fwmemory == 42_991


# ---------------------------------------------------------------------------------------------------------------
# 2. Haiku oracles, written from the spec §5 table (not from our code).


def _hk_bound(out: jax.Array, bound: float) -> jax.Array:
    return bound * jnp.tanh(out / bound)


def _hk_trunk(use_conv: bool, channels: int) -> list[hk.Conv2D]:
    return [hk.Conv2D(channels, 3, 2, padding="SAME", name=f"conv{i}") for i in range(3)] if use_conv else []


def _hk_features(convs: list[hk.Conv2D], x: jax.Array) -> jax.Array:
    """flatten(x), or the trunk: Conv-ReLU, Conv-ReLU, Conv-tanh on the [H, W, C] image, flattened."""
    if not convs:
        return x.reshape(-1)
    h = x[None]
    for conv, activation in zip(convs, (jax.nn.relu, jax.nn.relu, jnp.tanh), strict=True):
        h = activation(conv(h))
    return h.reshape(-1)


def _hk_metarnn(xs, ys, *, hidden, use_conv, channels, bound, micro_ticks=2):
    """MetaRNN: LSTM(hidden) twice per step on [x_t, g_{t−1}, y_{t−1}], then Linear(C) and the bound."""
    C = ys.shape[-1]
    convs = _hk_trunk(use_conv, channels)
    lstm = hk.LSTM(hidden, name="lstm")
    readout = hk.Linear(C, name="readout")

    def step(carry, xy):
        state, g, y_prev = carry
        x, y = xy
        u = jnp.concatenate([_hk_features(convs, x), g, y_prev])
        for _ in range(micro_ticks):  # the same input, twice
            h, state = lstm(u, state)
        logits = _hk_bound(readout(h), bound)
        return (state, jax.nn.softmax(logits) - y, y), logits

    zeros = jnp.zeros(C)
    return hk.scan(step, (lstm.initial_state(None), zeros, zeros), (xs, ys))[1]


class _HkPlastic(hk.Module):
    """x̃·(W + C⊙F) + b with slow W (trunc-normal 1/√in), plasticity C (0.01), bias b and rate logit ρ (−4.5)."""

    def __init__(self, num_in: int, num_out: int):
        super().__init__(name="plastic")
        self.w = hk.get_parameter("w", [num_in, num_out], init=hk.initializers.TruncatedNormal(num_in**-0.5))
        self.c = hk.get_parameter("c", [num_in, num_out], init=hk.initializers.Constant(0.01))
        self.b = hk.get_parameter("b", [num_out], init=jnp.zeros)
        self.rho = hk.get_parameter("rho", [], init=hk.initializers.Constant(-4.5))

    def __call__(self, x_tilde, fast):
        return x_tilde @ (self.w + self.c * fast) + self.b


def _hk_hebbian(xs, ys, *, use_oja, use_conv, channels, bound):
    """HebbianFW: pass 1 (aux 0) predicts; pass 2 (aux [g, y]) gives p; then the Oja or plain-Hebb update."""
    C = ys.shape[-1]
    convs = _hk_trunk(use_conv, channels)
    num_in = _hk_features(convs, xs[0]).shape[0] + 2 * C
    layer = _HkPlastic(num_in, C)
    eta = jax.nn.sigmoid(layer.rho)

    def step(fast, xy):
        x, y = xy
        features = _hk_features(convs, x)
        logits = _hk_bound(layer(jnp.concatenate([features, jnp.zeros(C), jnp.zeros(C)]), fast), bound)
        g = jax.nn.softmax(logits) - y
        x_tilde = jnp.concatenate([features, g, y])
        p = jax.nn.softmax(layer(x_tilde, fast))
        if use_oja:  # F_ij += η·p_j·(x̃_i − p_j·F_ij)
            fast = fast + eta * p[None, :] * (x_tilde[:, None] - p[None, :] * fast)
        else:  # F ← (1−η)F + η·x̃ pᵀ
            fast = (1 - eta) * fast + eta * jnp.outer(x_tilde, p)
        return fast, logits

    return hk.scan(step, jnp.zeros((num_in, C)), (xs, ys))[1]


def _hk_fwp(xs, ys, fast, *, fast_size, normalize_keys, bound):
    """FWP: Linear([x, ŷ_{t−1}, g_{t−1}, y_{t−1}]) → k, v, q, σ(β); F ← F + kᵀ(β(v − kF)); ŷ = qF."""
    C, K = ys.shape[-1], fast_size
    slow = hk.Linear(2 * K + C + 1, name="slow")

    def step(carry, xy):
        fast, prev_logits, g, y_prev = carry
        x, y = xy
        out = slow(jnp.concatenate([x.reshape(-1), prev_logits, g, y_prev]))
        k, v, q, beta = out[:K], out[K : K + C], out[K + C : 2 * K + C], jax.nn.sigmoid(out[2 * K + C])
        if normalize_keys:
            k, q = k / jnp.linalg.norm(k), q / jnp.linalg.norm(q)
        fast = fast + jnp.outer(k, beta * (v - k @ fast))
        logits = _hk_bound(q @ fast, bound)
        return (fast, logits, jax.nn.softmax(logits) - y, y), logits

    zeros = jnp.zeros(C)
    return hk.scan(step, (fast, zeros, zeros, zeros), (xs, ys))[1]


def _hk_fwmemory(xs, ys, *, hidden, memory_size, use_conv, channels, bound):
    """FWMemory (Schlag et al. 2021): LSTM, write (β, k1, k2, v), read (n, e), LayerNorm, Linear_H, Linear_C."""
    C, M = ys.shape[-1], memory_size
    convs = _hk_trunk(use_conv, channels)
    lstm = hk.LSTM(hidden, name="lstm")
    write_beta = hk.Linear(1, name="write_beta")
    write_k1, write_k2, write_v = (hk.Linear(M, name=f"write_{s}") for s in ("k1", "k2", "v"))
    read_n, read_e = hk.Linear(M, name="read_n"), hk.Linear(M, name="read_e")
    read_projection = hk.Linear(hidden, name="read_projection")
    readout = hk.Linear(C, name="readout")
    norm = hk.LayerNorm(-1, False, False, name="norm")

    def step(carry, xy):
        state, memory, g, y_prev = carry
        x, y = xy
        o, state = lstm(jnp.concatenate([_hk_features(convs, x), g, y_prev]), state)
        # Write: key = vec(k1 k2ᵀ); M ← M + β(v − M·key)keyᵀ; M ← M / max(1, ‖M‖_F).
        beta = jax.nn.sigmoid(write_beta(o))[0]
        k1, k2, v = jnp.tanh(write_k1(o)), jnp.tanh(write_k2(o)), jnp.tanh(write_v(o))
        key = jnp.outer(k1, k2).reshape(-1)
        memory = memory + beta * jnp.outer(v - memory @ key, key)
        memory = memory / jnp.maximum(1.0, jnp.sqrt(jnp.sum(memory**2)))
        # Read: r = LayerNorm(M·vec(n eᵀ)); o ← o + Linear_H(r).
        n, e = jnp.tanh(read_n(o)), jnp.tanh(read_e(o))
        o = o + read_projection(norm(memory @ jnp.outer(n, e).reshape(-1)))
        logits = _hk_bound(readout(o), bound)
        return (state, memory, jax.nn.softmax(logits) - y, y), logits

    zeros = jnp.zeros(C)
    init = (lstm.initial_state(None), jnp.zeros((M, M * M)), zeros, zeros)
    return hk.scan(step, init, (xs, ys))[1]


def _dense(p) -> dict:
    return {"w": p.w, "b": p.b}


def _trunk_params(trunk) -> dict:
    return {f"conv{i}": _dense(layer) for i, layer in enumerate(trunk)}


def _metarnn_to_haiku(meta) -> dict:
    return {**_trunk_params(meta.trunk), "lstm/linear": _dense(meta.lstm), "readout": _dense(meta.readout)}


def _hebbian_to_haiku(meta) -> dict:
    plastic = {"w": meta.w, "c": meta.plasticity, "b": meta.b, "rho": meta.rate_logit}
    return {**_trunk_params(meta.trunk), "plastic": plastic}


def _fwp_to_haiku(meta) -> dict:
    return {"slow": _dense(meta.slow)}


def _fwmemory_to_haiku(meta, memory_size) -> dict:
    M = memory_size

    def cols(p, start, stop):
        return {"w": p.w[:, start:stop], "b": p.b[start:stop]}

    return {
        **_trunk_params(meta.trunk),
        "lstm/linear": _dense(meta.lstm),
        "write_k1": cols(meta.write, 0, M),  # our write head is one Linear to [k1, k2, v, β]
        "write_k2": cols(meta.write, M, 2 * M),
        "write_v": cols(meta.write, 2 * M, 3 * M),
        "write_beta": cols(meta.write, 3 * M, 3 * M + 1),
        "read_n": cols(meta.read, 0, M),  # and one Linear to [n, e]
        "read_e": cols(meta.read, M, 2 * M),
        "read_projection": _dense(meta.read_projection),
        "readout": _dense(meta.readout),
    }


def _check_mapping(transformed, params, *args):
    """The mapped dict has exactly the modules and shapes that Haiku itself creates for the oracle."""
    expected = jax.eval_shape(transformed.init, jax.random.key(0), *args)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, expected)


def _assert_trees_close(ours, oracle, rtol):
    """Leaf by leaf: ‖ours − oracle‖ ≤ rtol·‖oracle‖ (relative to the leaf's norm)."""
    assert jax.tree.structure(ours) == jax.tree.structure(oracle)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(oracle), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.linalg.norm(a - b) <= rtol * np.linalg.norm(b) + 1e-9, (
            np.linalg.norm(a - b),
            np.linalg.norm(b),
        )


def _compare(learner, oracle_fn, to_haiku, meta, xs, ys, *, key, oracle_args=(), check_grad=False):
    """Logits (≤1e-5) and optionally the meta-gradient of the mean episode CE (≤1e-4 relative).

    Returns our jitted episode function of the meta-parameters, for further checks.
    """
    transformed = hk.without_apply_rng(hk.transform(oracle_fn))
    params = to_haiku(meta)
    _check_mapping(transformed, params, xs, ys, *oracle_args)

    def ours(m):
        return run_episode(learner, m, key, xs, ys)

    def oracle(p):
        return transformed.apply(p, xs, ys, *oracle_args)

    def loss_and_logits(episode):
        def loss(m):
            logits = episode(m)
            return _mean_ce(logits, ys), logits

        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    if check_grad:  # one compilation for the logits and the gradient
        (_, logits_ours), grad_ours = loss_and_logits(ours)(meta)
        (_, logits_oracle), grad_oracle = loss_and_logits(oracle)(params)
    else:
        logits_ours, logits_oracle = jax.jit(ours)(meta), jax.jit(oracle)(params)
    assert logits_ours.shape == (xs.shape[0], ys.shape[-1])
    assert bool(jnp.all(jnp.isfinite(logits_ours)))
    assert float(jnp.std(logits_ours)) > 0.05  # a non-trivial episode
    np.testing.assert_allclose(logits_ours, logits_oracle, atol=1e-5, rtol=1e-5)
    if check_grad:
        _assert_trees_close(to_haiku(grad_ours), grad_oracle, rtol=1e-4)
    return jax.jit(ours)


@pytest.mark.parametrize("use_conv", [False, True], ids=["dense", "conv"])
def test_metarnn_matches_haiku(use_conv):
    learner = MetaRNN(IMAGE, CLASSES, slow_size=16, tanh_bound=BOUND, use_conv=use_conv, conv_channels=4)
    meta = _random_meta(learner, seed=1)
    xs, ys = _episode(2)
    oracle = partial(_hk_metarnn, hidden=16, use_conv=use_conv, channels=4, bound=BOUND)
    _compare(learner, oracle, _metarnn_to_haiku, meta, xs, ys, key=jax.random.key(3), check_grad=not use_conv)


@pytest.mark.parametrize("use_oja", [True, False], ids=["oja", "hebb"])
@pytest.mark.parametrize("use_conv", [False, True], ids=["dense", "conv"])
def test_hebbian_matches_haiku(use_oja, use_conv):
    learner = HebbianFW(IMAGE, CLASSES, use_oja=use_oja, tanh_bound=BOUND, use_conv=use_conv, conv_channels=4)
    meta = _random_meta(learner, seed=1)
    # Strong plasticity (C ~ N(0, 1)) and a fast rate (η = σ(−1) ≈ 0.27), so the fast weights shape the logits.
    plasticity = np.random.default_rng(4).standard_normal(meta.plasticity.shape)
    meta = meta._replace(plasticity=jnp.asarray(plasticity, jnp.float32), rate_logit=jnp.asarray(-1.0))
    xs, ys = _episode(2)
    oracle = partial(_hk_hebbian, use_oja=use_oja, use_conv=use_conv, channels=4, bound=BOUND)
    episode = _compare(
        learner, oracle, _hebbian_to_haiku, meta, xs, ys, key=jax.random.key(3), check_grad=not use_conv
    )
    # The plastic part matters here: with C = 0 the logits after the first step differ.
    frozen = episode(meta._replace(plasticity=jnp.zeros_like(meta.plasticity)))
    assert float(jnp.max(jnp.abs(frozen[1:] - episode(meta)[1:]))) > 0.1


@pytest.mark.parametrize("normalize_keys", [True, False], ids=["unit-keys", "raw-keys"])
def test_fwp_matches_haiku(normalize_keys):
    input_shape = (6, 6, 1)
    learner = FWP(input_shape, CLASSES, fast_size=8, tanh_bound=BOUND, normalize_keys=normalize_keys)
    # Raw keys: the delta rule is stable only while β‖k‖² < 2, so the slow weights are smaller there.
    meta = _random_meta(learner, seed=1, scale=1.0 if normalize_keys else 0.3)
    xs, ys = _episode(2, input_shape)
    key = jax.random.key(3)
    fast = jax.jit(learner.init_state, static_argnums=2)(
        meta, key, TaskSpec(input_shape, CLASSES)
    ).fast_weights
    oracle = partial(_hk_fwp, fast_size=8, normalize_keys=normalize_keys, bound=BOUND)
    _compare(learner, oracle, _fwp_to_haiku, meta, xs, ys, key=key, oracle_args=(fast,))


def test_fwp_initial_fast_weights_are_variance_scaling_from_the_episode_key():
    learner = FWP((4,), 64, fast_size=64)
    spec = TaskSpec((4,), 64)
    meta = _random_meta(learner, 0)
    init = jax.jit(lambda key: learner.init_state(meta, key, spec).fast_weights)
    fast = init(jax.random.key(1))
    np.testing.assert_array_equal(fast, init(jax.random.key(1)))
    assert not np.array_equal(fast, init(jax.random.key(2)))
    # VarianceScaling(1, fan_in = 64, truncated normal): std 1/8 after the truncation correction, |F| ≤ 2σ/0.88.
    assert fast.shape == (64, 64)
    np.testing.assert_allclose(float(jnp.std(fast)), 1 / 8, rtol=0.05)
    assert float(jnp.max(jnp.abs(fast))) <= 2 / 8 / 0.8796 + 1e-6


@pytest.mark.parametrize("use_conv", [False, True], ids=["dense", "conv"])
def test_fwmemory_matches_haiku(use_conv):
    learner = FWMemory(
        IMAGE, CLASSES, slow_size=12, memory_size=4, tanh_bound=BOUND, use_conv=use_conv, conv_channels=4
    )
    meta = _random_meta(learner, seed=1, scale=2.0)
    xs, ys = _episode(2)
    oracle = partial(_hk_fwmemory, hidden=12, memory_size=4, use_conv=use_conv, channels=4, bound=BOUND)
    to_haiku = partial(_fwmemory_to_haiku, memory_size=4)
    _compare(learner, oracle, to_haiku, meta, xs, ys, key=jax.random.key(3), check_grad=not use_conv)


@pytest.mark.parametrize(
    "learner",
    [
        # Between them: the conv trunk, the LSTM, plain Linears and the Hebbian constants (MetaRNN and FWP use
        # the same initialisers).
        HebbianFW((16, 16, 1), 10, use_conv=True, conv_channels=32),
        FWMemory((16, 16, 1), 10, slow_size=64, memory_size=16, use_conv=True, conv_channels=32),
    ],
    ids=["hebbian", "fwmemory"],
)
def test_initialisation_is_haikus_default(learner):
    """Every `hk.Linear` and `hk.Conv2D` weight [..., fan_out] is Haiku's default TruncatedNormal(1/√fan_in):
    N(0, 1) truncated at ±2, times 1/√fan_in, with no variance correction (so its std is ≈ 0.88/√fan_in; spec
    §1.3 "Haiku semantics"); biases are zero; HebbianFW's C is 0.01 and its ρ is −4.5 (spec §5)."""
    meta = _init_meta(learner)
    for path, leaf in jax.tree_util.tree_leaves_with_path(meta):
        name, leaf = jax.tree_util.keystr(path), np.asarray(leaf)
        if leaf.ndim < 2:
            expected = -4.5 if name.endswith("rate_logit") else 0.0
            np.testing.assert_array_equal(leaf, np.float32(expected), err_msg=name)
        elif name.endswith("plasticity"):
            np.testing.assert_array_equal(leaf, np.float32(0.01), err_msg=name)
        else:
            scale = 1 / math.sqrt(math.prod(leaf.shape[:-1]))
            assert np.max(np.abs(leaf)) <= 2 * scale * (1 + 1e-6), name
            assert np.max(np.abs(leaf)) >= 1.8 * scale, name  # reaches the truncation: not a narrower init
            if leaf.size >= 2000:
                np.testing.assert_allclose(leaf.std(), 0.8796 * scale, rtol=0.05, err_msg=name)


def test_haiku_oracles_have_the_spec_parameter_counts():
    """The oracles themselves, at the default sizes, have the counts of spec §5 (shapes only)."""
    xs, ys = jnp.zeros((1, 28, 28, 1)), jnp.zeros((1, 62))

    def size(fn):
        return _count(jax.eval_shape(hk.transform(fn).init, jax.random.key(0), xs, ys))

    assert size(partial(_hk_metarnn, hidden=128, use_conv=False, channels=64, bound=100.0)) == 538_942
    assert size(partial(_hk_hebbian, use_oja=True, use_conv=False, channels=8, bound=100.0)) == 112_655
    kw = dict(hidden=32, memory_size=16, channels=8, bound=100.0)
    assert size(partial(_hk_fwmemory, use_conv=False, **kw)) == 125_711
    assert size(partial(_hk_metarnn, hidden=128, use_conv=True, channels=64, bound=100.0)) == _meta_size(
        MetaRNN(use_conv=True)
    )
    assert size(partial(_hk_hebbian, use_oja=True, use_conv=True, channels=8, bound=100.0)) == _meta_size(
        HebbianFW(use_conv=True)
    )
    assert size(partial(_hk_fwmemory, use_conv=True, **kw)) == _meta_size(FWMemory(use_conv=True))


# ---------------------------------------------------------------------------------------------------------------
# 3. The Learner interface and its errors, for all four.

ALL = pytest.mark.parametrize("name", list(SMALL))


def _example(seed: int, spec: TaskSpec = SMALL_SPEC) -> tuple[jax.Array, jax.Array]:
    xs, ys = _episode(seed, spec.input_shape, spec.num_classes, steps=1)
    return xs[0], ys[0]


@ALL
def test_is_a_registered_learner(name):
    learner = SMALL[name]
    assert isinstance(learner, Learner)
    assert LEARNERS[name] is type(learner)
    # A YAML list input_shape is normalised to a tuple, so the learner stays hashable (a jit static argument).
    from_yaml = build_learner({"name": name, "input_shape": [2, 4], "num_classes": 3})
    assert from_yaml.input_shape == (2, 4) and isinstance(from_yaml.input_shape, tuple)
    assert from_yaml == type(learner)(input_shape=(2, 4), num_classes=3)
    assert hash(type(learner)(input_shape=[2, 4], num_classes=3)) == hash(from_yaml)


@ALL
def test_step_keeps_structure_shapes_and_dtypes(name):
    learner = SMALL[name]
    meta = _init_meta(learner)
    state = jax.jit(learner.init_state, static_argnums=2)(meta, jax.random.key(1), SMALL_SPEC)
    x, y = _example(2)
    logits, new_state = jax.jit(learner.step)(meta, state, x, y)
    assert logits.shape == (SMALL_SPEC.num_classes,) and logits.dtype == jnp.float32
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(new_state), strict=True):
        assert (old.shape, old.dtype) == (new.shape, new.dtype)
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state), strict=True)
    ]
    assert any(changed)


@ALL
def test_task_of_the_wrong_size_names_the_padding(name):
    learner = SMALL[name]
    meta = jax.eval_shape(learner.init_meta, jax.random.key(0))  # shapes suffice: init_state raises first
    for spec in (TaskSpec((9,), 3), TaskSpec((8,), 4), TaskSpec((2, 2), 2)):
        with pytest.raises(ValueError, match="pad_input_to"):
            learner.init_state(meta, jax.random.key(0), spec)
    xs, ys = _episode(0, (10,), 3, steps=4)
    with pytest.raises(ValueError, match="pad_input_to"):
        run_episode(learner, meta, jax.random.key(0), xs, ys)


@ALL
def test_inner_batch_is_refused(name):
    learner = SMALL[name]
    meta = _init_meta(learner)
    state = learner.init_state(meta, jax.random.key(1), SMALL_SPEC)
    x, y = _example(2)
    with pytest.raises(ValueError, match="batch_size"):
        learner.step(meta, state, jnp.stack([x, x]), y)
    # An episode with an inner batch, xs [T, B, 8] and ys [T, B, 3], fails the same way (while tracing).
    xs, ys = _episode(3, (2, 8), 3, steps=4)
    ys = jnp.stack([ys, ys], axis=1)
    with pytest.raises(ValueError, match="batch_size"):
        jax.eval_shape(lambda m: run_episode(learner, m, jax.random.key(0), xs, ys), meta)


@ALL
def test_bad_settings_are_refused(name):
    cls = LEARNERS[name]
    for settings in (
        {"num_classes": 1},
        {"input_shape": [0, 3]},
        {"input_shape": []},
        {"tanh_bound": 0.0},
        {"tanh_bound": -1.0},
    ):
        with pytest.raises(ValueError, match=next(iter(settings))):
            cls(**settings)
    size_settings = {
        "metarnn": ("slow_size", "num_micro_ticks", "conv_channels"),
        "hebbian": ("conv_channels",),
        "fwp": ("fast_size",),
        "fwmemory": ("slow_size", "memory_size", "conv_channels"),
    }[name]
    for setting in size_settings:
        with pytest.raises(ValueError, match=setting):
            cls(**{setting: 0})
    if name != "fwp":  # the conv trunk needs [H, W] or [H, W, C] inputs
        with pytest.raises(ValueError, match="use_conv"):
            cls(input_shape=(8,), use_conv=True)
        assert cls(input_shape=(6, 6), use_conv=True).input_shape == (6, 6)


# ---------------------------------------------------------------------------------------------------------------
# 4. Each baseline learns something real: a short gradient meta-training teaches it to learn within an episode.


def _blob_episodes(seed: int, shape: tuple[int, ...], dim: int = 8, num_classes: int = 3):
    """Episodes [*shape, T, dim] of 3 Gaussian blobs whose centres are drawn anew for every episode, so the
    classes can only be told apart by learning within the episode (chance: cross-entropy ln 3)."""
    rng = np.random.default_rng(seed)
    *batch, steps = shape
    means = rng.standard_normal((*batch, num_classes, dim))
    labels = rng.integers(num_classes, size=shape)
    xs = np.take_along_axis(means, labels[..., None], axis=-2) + 0.3 * rng.standard_normal((*shape, dim))
    return jnp.asarray(xs, jnp.float32), jnp.asarray(np.eye(num_classes)[labels], jnp.float32)


@ALL
def test_meta_training_teaches_learning_within_an_episode(name):
    learner = SMALL[name]
    meta_steps, episodes, steps = 400, 32, 24
    xs, ys = _blob_episodes(0, (meta_steps, episodes, steps))  # fresh episodes at every meta-step
    test_xs, test_ys = _blob_episodes(1, (128, steps))
    keys, test_keys = jax.random.split(jax.random.key(5), episodes), jax.random.split(jax.random.key(6), 128)
    optimizer = make_grad_optimizer(GradConfig(learning_rate=0.01))  # the project's clip + Adam

    @jax.jit
    def train(meta):
        def meta_step(carry, batch):
            meta, opt_state = carry
            loss, grad = jax.value_and_grad(meta_batch_loss, argnums=3)(
                learner, "mean", False, meta, *batch, keys
            )
            updates, opt_state = optimizer.update(grad, opt_state, meta)
            return (optax.apply_updates(meta, updates), opt_state), loss

        (meta, _), losses = jax.lax.scan(meta_step, (meta, optimizer.init(meta)), (xs, ys))
        correct = jnp.argmax(run_episodes(learner, meta, test_keys, test_xs, test_ys), -1) == jnp.argmax(
            test_ys, -1
        )
        return losses, jnp.mean(correct, axis=0)

    losses, accuracy = train(_init_meta(learner))
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses))
    # Every meta-step's loss is on episodes not seen before, so a lower loss is learning, not memorising.
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert last < 0.9 * first and last < 0.9 * math.log(3), (first, last)
    # On 128 held-out episodes the meta-trained learner gets better as the episode goes on (chance: 1/3).
    accuracy = np.asarray(accuracy)
    assert accuracy[steps // 2 :].mean() > accuracy[: steps // 2].mean() + 0.05, accuracy
    assert accuracy[steps // 2 :].mean() > 0.5, accuracy


@pytest.mark.parametrize("use_oja", [True, False], ids=["oja", "hebb"])
def test_hebbian_fast_weights_learn_and_are_gated_by_plasticity(use_oja):
    learner = HebbianFW((8,), 3, use_oja=use_oja)
    meta = _init_meta(learner)
    xs, ys = _blob_episodes(2, (16,))

    state = learner.init_state(meta, jax.random.key(0), SMALL_SPEC)
    assert not np.any(state.fast_weights)  # zero at episode start
    _, state = jax.jit(learner.step)(meta, state, xs[0], ys[0])
    assert np.any(state.fast_weights) and np.all(np.isfinite(state.fast_weights))

    # With plasticity C = 0 the prediction is the slow linear layer on [x, 0, 0], whatever F has become.
    frozen = meta._replace(plasticity=jnp.zeros_like(meta.plasticity))
    logits = jax.jit(lambda m: run_episode(learner, m, jax.random.key(0), xs, ys))(frozen)
    slow = 100.0 * jnp.tanh((xs @ meta.w[:8] + meta.b[None, :]) / 100.0)
    np.testing.assert_allclose(logits, slow, atol=1e-5)
