"""Tests for BLUR (spec blur.md §4, §8, §11): the fast path `vsml.learners.blur.learner` against plain SGD (the backprop
genome, §8.2–8.3 with the §11 corrections), against the literal packed-layout oracle `blur.reference`, and the
unit checks of the authors' `blur_test.py` (§8.1, with the §11.9 corrections) on the oracle's pieces."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners.base import Learner, TaskSpec
from vsml.learners.blur import reference as ref
from vsml.learners.blur.learner import (
    BLUR,
    BLURGenome,
    BLURState,
    backprop_blur,
    backprop_genome,
)

# ----- helpers: an MLP trained by plain SGD (spec §8.3) ---------------------------------------------------------

# Test data come from numpy generators: on a CPU, every new shape of a jax.random call costs a compilation.
# For the same reason most tests share one network shape (the spec's 4 → 8 → 6 → 3, batch 5).
SIZES = (4, 8, 6, 3)
BATCH = 5
SGD_STEPS = 5
LEARNING_RATE = 0.1
HIDDEN_ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda z: z}
# XLA's cheapest optimisation level, for the tests that compile whole steps or unrolls.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
# float32: spec §11.8 (rtol 1e-5 and atol 1e-6, many entries are near 0); float64: the spec measured ≤ 3e-15.
TOLERANCES = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-12}}

MLPParams = list[tuple[jax.Array, jax.Array]]


def _rng(*seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _array(values, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """numpy -> jax, cast on the host (a cast on the device would compile once per shape)."""
    return jnp.asarray(np.asarray(values, dtype=np.dtype(dtype)))


def _mlp_init(rng: np.random.Generator, dtype: jnp.dtype) -> MLPParams:
    return [
        (
            _array(rng.normal(size=(n, m)) / np.sqrt(n), dtype),
            _array(0.5 * rng.normal(size=(m,)), dtype),
        )
        for n, m in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]


def _mlp_forward(
    params: MLPParams, x: jax.Array, activation: str, offsets: list[jax.Array]
) -> tuple[list[jax.Array], list[jax.Array]]:
    """z_1..z_L (with `offsets` added, so ∂L/∂z_ℓ = ∂L/∂offset_ℓ) and h_0..h_{L−1} (h_0 = x)."""
    hs, zs = [x], []
    for layer, (w, b) in enumerate(params):
        z = hs[-1] @ w + b[None] + offsets[layer]
        zs.append(z)
        if layer + 1 < len(params):
            hs.append(HIDDEN_ACTIVATIONS[activation](z))
    return zs, hs


def _batch_loss(feedback: str, logits: jax.Array, y: jax.Array) -> jax.Array:
    """The loss SUMMED over the batch whose ∂L/∂z_L the feedback writes (spec §11.2, §11.6)."""
    target_pm1 = 2.0 * y - 1.0
    if feedback == "mse":
        return 0.5 * jnp.sum((logits - target_pm1) ** 2)
    if feedback == "ce":
        return -jnp.sum(y * jax.nn.log_softmax(logits, axis=-1))
    return -jnp.sum(target_pm1 * logits)  # "label": δ_L = y_pm1 = −∂L/∂z_L, so η̃ = +λ is descent


def _blur_state_of(params: MLPParams) -> BLURState:
    """F_ℓ[c] = [W_ℓ; b_ℓ] and G_ℓ[c] = W_ℓᵀ for both channels c (spec §8.3 step 2; BLURState is channel-first)."""
    forward = tuple(jnp.stack([jnp.concatenate([w, b[None]], axis=0)] * 2) for w, b in params)
    backward = tuple(jnp.stack([w.T] * 2) for w, _ in params)
    return BLURState(forward, backward)


def _exact_genome(synapse_update: float, dtype: jnp.dtype) -> BLURGenome:
    """The backprop genome with every field in `dtype` and η̃ set in that dtype (not a float32 cast)."""
    genome = jax.tree.map(lambda g: _array(np.asarray(g), dtype), backprop_genome(2))
    return genome._replace(synapse_update=_array(synapse_update, dtype))


def _inputs(rng: np.random.Generator, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    return _array(rng.normal(size=shape), dtype)


def _one_hot(rng: np.random.Generator, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    num_classes = SIZES[-1]
    return _array(np.eye(num_classes)[rng.integers(0, num_classes, shape)], dtype)


Comparison = tuple[str, np.ndarray, np.ndarray]


def _blur_step(impl: str, blur: BLUR, genome: BLURGenome, carry, x, y):
    """One step of either implementation: (logits, neurons after the backward pass, BLURState, carry)."""
    if impl == "fast":
        logits, state, activity = blur.step_with_activity(genome, carry, x, y)
        return logits, list(activity.backward), state, state
    logits, packed, _, after_backward = ref.reference_step(blur, genome, carry, x, y)
    return logits, after_backward, ref.unpack_state(blur, packed), packed


@functools.partial(jax.jit, static_argnames=("feedback", "activation"), compiler_options=FAST_COMPILE)
def _sgd_step(
    params: MLPParams, x: jax.Array, y: jax.Array, learning_rate: jax.Array, feedback: str, activation: str
):
    """Plain SGD on the batch-summed loss: (z_ℓ, h_ℓ, ∂L/∂z_ℓ at the old weights, the new weights). Jitted: one
    small compilation per setting is cheaper than compiling each op of jax.grad eagerly."""
    offsets = [jnp.zeros(x.shape[:1] + (m,), x.dtype) for m in SIZES[1:]]

    def loss(p, o):
        return _batch_loss(feedback, _mlp_forward(p, x, activation, o)[0][-1], y)

    zs, hs = _mlp_forward(params, x, activation, offsets)
    grads, dz = jax.grad(loss, argnums=(0, 1))(params, offsets)
    new_params = [
        (w - learning_rate * gw, b - learning_rate * gb)
        for (w, b), (gw, gb) in zip(params, grads, strict=True)
    ]
    return zs, hs, dz, new_params


def _sgd_comparisons(
    impl: str,
    blur: BLUR,
    feedback: str,
    activation: str,
    dtype: jnp.dtype,
    synapse_update: float,
    learning_rate: float = LEARNING_RATE,
) -> list[Comparison]:
    """Spec §8.3/§11.8: T steps of BLUR and of SGD on the same fresh batches; (name, blur value, sgd value)."""
    rng = _rng(83)
    params = _mlp_init(rng, dtype)
    genome = _exact_genome(synapse_update, dtype)
    state = _blur_state_of(params)
    carry = state if impl == "fast" else ref.pack_state(blur, state)
    sign = -1.0 if feedback == "label" else 1.0  # the label feedback writes −∂L/∂z_L
    rate = _array(learning_rate, dtype)
    comparisons = []
    for t in range(SGD_STEPS):
        x, y = _inputs(rng, (BATCH, SIZES[0]), dtype), _one_hot(rng, (BATCH,), dtype)
        zs, hs, dz, params = _sgd_step(params, x, y, rate, feedback=feedback, activation=activation)
        logits, neurons, state, carry = _blur_step(impl, blur, genome, carry, x, y)
        # compare in numpy (eager jax slicing would compile once per shape)
        zs, hs, dz, numpy_params, logits, neurons, state = jax.tree.map(
            np.asarray, (zs, hs, dz, params, logits, neurons, state)
        )
        comparisons.append((f"step {t} logits", logits, zs[-1]))
        for layer in range(1, len(SIZES) - 1):
            comparisons.append(
                (f"step {t} A_{layer}[...,1] = dL/dz", neurons[layer][..., 1], sign * dz[layer - 1])
            )
            comparisons.append((f"step {t} A_{layer}[...,0] = h", neurons[layer][..., 0], hs[layer]))
        for layer, (w, b) in enumerate(numpy_params):
            f, g = state.forward[layer], state.backward[layer]
            for c in range(f.shape[0]):
                comparisons.append((f"step {t} F_{layer}[{c}]", f[c], np.concatenate([w, b[None]])))
            comparisons.append((f"step {t} G_{layer} = F[0:n]^T", g, np.transpose(f[:, :-1], (0, 2, 1))))
    return comparisons


def _max_error(comparisons: list[Comparison]) -> float:
    errors = [np.abs(a - b) for _, a, b in comparisons]
    return float(max(np.max(np.where(np.isfinite(e), e, np.inf)) for e in errors))


# ----- 1. the backprop genome is plain SGD (spec §8.2–8.3, §11) -------------------------------------------------


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("feedback", ["mse", "ce", "label"])
def test_backprop_genome_is_sgd(impl, dtype, activation, feedback):
    # mse/ce write +∂L/∂z_L, so η̃ = −λ; the label writes y = −∂(−Σ y·z)/∂z, so η̃ = +λ (spec §11.2).
    synapse_update = LEARNING_RATE if feedback == "label" else -LEARNING_RATE
    blur = backprop_blur(SIZES[1:-1], activation=activation, feedback=feedback)
    with jax.enable_x64(dtype == "float64"):
        comparisons = _sgd_comparisons(impl, blur, feedback, activation, jnp.dtype(dtype), synapse_update)
    for name, actual, expected in comparisons:
        assert actual.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(actual, expected, err_msg=name, **TOLERANCES[dtype])


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_backprop_genome_is_sgd_on_a_linear_net(impl):
    """A linear net needs the per-state forward activation (x₀, 1) too (spec §11.3). λ = 0.01: at 0.1 the
    batch-summed loss of this linear net diverges."""
    blur = backprop_blur(SIZES[1:-1], activation="identity", feedback="mse")
    comparisons = _sgd_comparisons(impl, blur, "mse", "identity", jnp.float32, -0.01, learning_rate=0.01)
    for name, actual, expected in comparisons:
        np.testing.assert_allclose(actual, expected, err_msg=name, **TOLERANCES["float32"])


# (changes to backprop_blur(tanh, mse), sign of η̃, hidden activation of the MLP)
NEGATIVE_CONTROLS = {
    "additive backward update": ({"backward_update": "additive"}, -1.0, "tanh"),
    "relu_tanh backward activation": ({"backward_activation": "relu_tanh"}, -1.0, "tanh"),
    "flipped sign of the synapse update": ({}, +1.0, "tanh"),
    "no state sync": ({"symmetric_states": False}, -1.0, "tanh"),
    "no in/out sync": ({"symmetric_in_out": False}, -1.0, "tanh"),
    # the authors' backprop_network_spec leaves φ = None: not backprop even for a linear net (spec §11.3)
    "identity forward activation on a linear net": ({"forward_activation": "identity"}, -1.0, "identity"),
}


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("control", list(NEGATIVE_CONTROLS))
def test_negative_controls_do_not_match_sgd(impl, control):
    changes, sign, activation = NEGATIVE_CONTROLS[control]
    blur = dataclasses.replace(backprop_blur(SIZES[1:-1], activation="tanh", feedback="mse"), **changes)
    rate = 0.01 if activation == "identity" else LEARNING_RATE  # as in the linear-net test: SGD stays finite
    comparisons = _sgd_comparisons(
        impl, blur, "mse", activation, jnp.float32, sign * rate, learning_rate=rate
    )
    assert all(np.all(np.isfinite(expected)) for _, _, expected in comparisons)
    assert _max_error(comparisons) > 1e-3, control


# ----- 2. the unit checks of the authors' blur_test.py (spec §8.1, §11.9) on the oracle's pieces ----------------


def _single_layer(n_out: int, n_in: int = 10):
    """inp, out, W ∈ R^{(n_in+1)×n_out} uniform; pre = [inp, 0], post = [0, out]; packed F = W, G = Wᵀ, k = 2."""
    rng = _rng(81, n_out)
    inp = _array(rng.uniform(size=n_in), jnp.float32)
    out = _array(rng.uniform(size=n_out), jnp.float32)
    w = _array(rng.uniform(size=(n_in + 1, n_out)), jnp.float32)
    pre = jnp.stack([inp, jnp.zeros_like(inp)], axis=-1)[None]  # [B=1, n_in, 2]
    post = jnp.stack([jnp.zeros_like(out), out], axis=-1)[None]
    w2 = jnp.stack([w, w], axis=-1)
    packed = ref.combine_blocks(w2, jnp.transpose(w2, (1, 0, 2)))
    return inp, out, w, pre, post, packed


def _with_one(v: jax.Array) -> jax.Array:
    return jnp.concatenate([v, jnp.ones((1,), v.dtype)])


@pytest.mark.parametrize("n_out", [5, 15])
def test_sync_in_out_synapses(n_out):
    n, k = 10, 2
    full = _array(_rng(82).uniform(size=(n + 1 + n_out, n + 1 + n_out, k)), jnp.float32)  # all blocks random
    synced = ref.sync_in_out(full, n)
    np.testing.assert_array_equal(ref.forward_block(synced, n), ref.forward_block(full, n))
    np.testing.assert_array_equal(jnp.transpose(synced[n + 1 :, : n + 1], (1, 0, 2)), full[: n + 1, n + 1 :])
    # §11.10: the sync also drops the blocks nothing reads.
    np.testing.assert_array_equal(synced[: n + 1, : n + 1], 0.0)
    np.testing.assert_array_equal(synced[n + 1 :, n + 1 :], 0.0)
    states = ref.sync_states(full)
    for c in range(k):
        np.testing.assert_array_equal(states[..., c], full[..., 0])


@pytest.mark.parametrize("n_out", [5, 15])
def test_verify_gradient_match(n_out):
    inp, out, w, pre, post, packed = _single_layer(n_out)
    n = inp.shape[0]
    genome = backprop_genome(2)
    z = _with_one(inp) @ w
    # forward update: both states = [inp, 1]·W = z (also test_get_synaptic_update_forward)
    u = ref.forward_signal(genome, pre, ref.forward_block(packed, n))[0]
    np.testing.assert_allclose(u[:, 0], z, rtol=1e-6)
    np.testing.assert_allclose(u[:, 1], z, rtol=1e-6)
    # backward update: state 0 = 0, state 1 = out·W[:n]ᵀ = ∂(out·z)/∂inp (also test_get_synaptic_update_backward)
    v = ref.backward_signal(genome, post, ref.backward_block(packed, n))[0]
    np.testing.assert_array_equal(v[:, 0], 0.0)
    np.testing.assert_allclose(v[:, 1], out @ w[:n].T, rtol=1e-6)
    np.testing.assert_allclose(v[:, 1], jax.grad(lambda i: out @ (_with_one(i) @ w))(inp), rtol=1e-6)
    # Hebbian forward block, channel 0 = [inp, 1]ᵀ·out = ∂(out·z)/∂W (also test_get_hebbian_update)
    h = ref.hebbian(genome, pre, post)
    np.testing.assert_allclose(h[: n + 1, n + 1 :, 0], jnp.outer(_with_one(inp), out), rtol=1e-6)
    np.testing.assert_allclose(
        h[: n + 1, n + 1 :, 0], jax.grad(lambda m: out @ (_with_one(inp) @ m))(w), rtol=1e-6
    )
    # the whole (unsynced) packed H: channel 0 is the transpose of channel 1
    np.testing.assert_allclose(h[..., 0], h[..., 1].T, rtol=1e-6)
    # pre–pre block 0 except the bias column, which is Σ_b [inp, 1] (spec §11.9); post–post block 0
    np.testing.assert_array_equal(h[: n + 1, :n, 0], 0.0)
    np.testing.assert_allclose(h[: n + 1, n, 0], _with_one(inp), rtol=1e-6)
    np.testing.assert_array_equal(h[n + 1 :, n + 1 :, 0], 0.0)


def test_neuron_update_fwd():
    inp, out, w, pre, post, packed = _single_layer(5)
    n = inp.shape[0]
    genome = backprop_genome(2)
    blur = BLUR(
        hidden_sizes=(), forward_activation="sigmoid_with_grad", last_layer_activation="sigmoid_with_grad"
    )
    z = _with_one(inp) @ w
    u = ref.forward_signal(genome, pre, ref.forward_block(packed, n))
    new_post = ref.neuron_forward_update(blur, genome, post, u, "sigmoid_with_grad")[0]
    np.testing.assert_allclose(new_post[:, 0], jax.nn.sigmoid(z), rtol=1e-6)
    # additive with f = η = 1 on the old post state (0, out): σ' is taken at out + z
    sigma = jax.nn.sigmoid(out + z)
    np.testing.assert_allclose(new_post[:, 1], sigma * (1 - sigma), rtol=1e-6)
    # pre is unchanged: layer 0 is never written, in either pass
    y = jnp.zeros((1, 5)).at[0, 1].set(1.0)
    _, _, after_forward, after_backward = ref.reference_step(blur, genome, [packed], inp[None], y)
    np.testing.assert_array_equal(after_forward[0], pre)
    np.testing.assert_array_equal(after_backward[0], pre)


def test_neuron_update_bwd():
    inp, out, w, _, post, packed = _single_layer(5)
    n = inp.shape[0]
    genome = backprop_genome(2)
    blur = BLUR(
        hidden_sizes=(), backward_update="multiplicative_second_state", backward_activation="identity"
    )
    # §11.9: the published test has pre[…,1] = 0, which tests nothing; use a non-zero σ'-state.
    sigma_prime = _array(_rng(84).uniform(0.1, 0.25, size=n), jnp.float32)
    pre = jnp.stack([inp, sigma_prime], axis=-1)[None]
    v = ref.backward_signal(genome, post, ref.backward_block(packed, n))
    new_pre = ref.neuron_backward_update(blur, genome, pre, v)[0]
    np.testing.assert_array_equal(new_pre[:, 0], inp)
    np.testing.assert_allclose(new_pre[:, 1], sigma_prime * (out @ w[:n].T), rtol=1e-6)


def test_synapse_derivative():
    inp, _, w, pre, _, packed = _single_layer(5)
    n = inp.shape[0]
    genome = backprop_genome(2)
    blur = BLUR(
        hidden_sizes=(), forward_activation="sigmoid_with_grad", last_layer_activation="sigmoid_with_grad"
    )
    u = ref.forward_signal(genome, pre, ref.forward_block(packed, n))
    post = ref.neuron_forward_update(blur, genome, jnp.zeros_like(u), u, "sigmoid_with_grad")
    h = ref.hebbian(genome, pre, post)
    expected = jax.grad(lambda m: jnp.sum(jax.nn.sigmoid(_with_one(inp) @ m)))(w)
    np.testing.assert_allclose(h[: n + 1, n + 1 :, 0], expected, rtol=1e-5, atol=1e-7)


# ----- shared random settings for the remaining tests -----------------------------------------------------------


def _random_one_genome(rng: np.random.Generator, num_states: int) -> BLURGenome:
    """N(0, 0.7²) matrices and every scalar gene away from its default, so a gene used in the wrong place shows."""

    def matrix() -> jax.Array:
        return _array(0.7 * rng.normal(size=(num_states, num_states)), jnp.float32)

    def scalar(low: float, high: float, sign: float = 1.0) -> jax.Array:
        return jnp.float32(sign * rng.uniform(low, high))

    return BLURGenome(
        neuron_forward=matrix(),
        neuron_backward=matrix(),
        synapse_pre=matrix(),
        synapse_post=matrix(),
        neuron_keep=scalar(0.6, 1.4),
        neuron_update=scalar(0.6, 1.4),
        synapse_keep=scalar(0.85, 1.05),
        synapse_update=scalar(0.05, 0.15, sign=1.0 if rng.uniform() < 0.5 else -1.0),
        oja_multiplier=scalar(-1.5, -0.5),  # used as |ρ|
        saturation=scalar(-1.3, -0.3),  # used as |s|
        rescale_to=scalar(0.5, 1.5),
        norm_multiplier=scalar(0.5, 1.5),
        norm_shift=scalar(-0.3, 0.3),
    )


def _random_test_genome(rng: np.random.Generator, blur: BLUR) -> BLURGenome:
    if not blur.per_layer_genome:
        return _random_one_genome(rng, blur.num_states)
    layers = [_random_one_genome(rng, blur.num_states) for _ in range(blur.num_connections)]
    return jax.tree.map(lambda *leaves: _array(np.stack([np.asarray(leaf) for leaf in leaves])), *layers)


def _random_state(rng: np.random.Generator, blur: BLUR) -> BLURState:
    """U(−s, s) synapses, with the symmetry options applied as at initialisation (G = F[0:n]ᵀ, channel copies);
    drawn states-last, then stored channel-first as BLURState keeps them."""
    sizes = (SIZES[0], *blur.hidden_sizes, SIZES[-1])
    k, s = blur.num_states, blur.init_scale
    forward, backward = [], []
    for n, m in zip(sizes[:-1], sizes[1:], strict=True):
        f, g = rng.uniform(-s, s, (n + 1, m, k)), rng.uniform(-s, s, (m, n, k))
        if blur.symmetric_in_out:
            g = np.transpose(f[:-1], (1, 0, 2))
        if blur.symmetric_states:
            f, g = np.repeat(f[..., :1], k, axis=-1), np.repeat(g[..., :1], k, axis=-1)
        forward.append(_array(np.moveaxis(f, -1, 0), jnp.float32))
        backward.append(_array(np.moveaxis(g, -1, 0), jnp.float32))
    return BLURState(tuple(forward), tuple(backward))


def _episode(rng: np.random.Generator, steps: int, single: bool = False) -> tuple[jax.Array, jax.Array]:
    batch = () if single else (BATCH,)
    return _inputs(rng, (steps, *batch, SIZES[0])), _one_hot(rng, (steps, *batch))


def _setup(seed: int, steps: int = 4, single: bool = False, **settings):
    blur = BLUR(**{"hidden_sizes": SIZES[1:-1], "init_scale": 0.5, **settings})
    rng = _rng(seed)
    genome = _random_test_genome(rng, blur)
    state = _random_state(rng, blur)
    xs, ys = _episode(rng, steps, single)
    return blur, genome, state, xs, ys


@pytest.mark.parametrize("use_forward", [False, True])
def test_network_step_mix_forward(use_forward):
    """The Hebbian 'pre' is the forward-pass or the backward-pass neuron according to the flag (§8.1)."""
    blur, genome, state, xs, ys = _setup(85, steps=1, use_forward_activations_for_synapse_update=use_forward)
    packed = ref.pack_state(blur, state)
    _, new_packed, after_forward, after_backward = ref.reference_step(blur, genome, packed, xs[0], ys[0])
    assert ref.layer_sizes(blur, packed) == list(SIZES)
    chosen, other = (after_forward, after_backward) if use_forward else (after_backward, after_forward)
    for layer in range(1, len(packed)):  # connection 0's pre is the input either way
        n = SIZES[layer]
        assert np.max(np.abs(chosen[layer] - other[layer])) > 1e-2
        expected = ref.synapse_update(
            blur, genome, packed[layer], chosen[layer], after_backward[layer + 1], n
        )
        np.testing.assert_allclose(new_packed[layer], expected, rtol=1e-6, atol=1e-7)
        wrong = ref.synapse_update(blur, genome, packed[layer], other[layer], after_backward[layer + 1], n)
        assert np.max(np.abs(new_packed[layer] - wrong)) > 1e-3


def test_pack_unpack_and_init_sync(key):
    """pack/unpack round-trip; the fast path's initial synapses are synced as the packed sync defines (§11.5)."""
    for symmetric_in_out in (False, True):
        for symmetric_states in (False, True):
            blur = BLUR(
                hidden_sizes=SIZES[1:-1], symmetric_in_out=symmetric_in_out, symmetric_states=symmetric_states
            )
            state = blur.init_state(None, key, TaskSpec((SIZES[0],), SIZES[-1]))  # no genome is read
            packed = ref.pack_state(blur, state)
            assert [w.shape for w in packed] == [(13, 13, 2), (15, 15, 2), (10, 10, 2)]
            jax.tree.map(np.testing.assert_array_equal, ref.unpack_state(blur, packed), state)
            synced = ref.unpack_state(blur, ref.init_sync(blur, packed))
            jax.tree.map(np.testing.assert_array_equal, synced, state)
            for f, g in zip(state.forward, state.backward, strict=True):
                transposed = np.array_equal(g, jnp.transpose(f[:, :-1], (0, 2, 1)))
                single_state = np.array_equal(f[1], f[0]) and np.array_equal(g[1], g[0])
                assert (transposed, single_state) == (symmetric_in_out, symmetric_states)


# ----- 3. fast path vs the packed oracle on random genomes ------------------------------------------------------

EPISODE_STEPS = 4

COMBOS = {
    "default": {},  # relu_tanh, additive, asymmetric, label feedback ±1; 4 → 8 → 6 → 3
    "symmetric_in_out": {"symmetric_in_out": True},
    "symmetric_states": {"symmetric_states": True},
    "symmetric_both": {"symmetric_in_out": True, "symmetric_states": True},
    "per_layer_genome": {"per_layer_genome": True},
    "normalize_synapses": {"normalize_synapses": True},
    "normalize_synapses_rescale": {"normalize_synapses": True, "rescale": True},
    "normalize_in_activations": {"normalize_in_activations": True},
    "normalize_in_activations_rescale": {"normalize_in_activations": True, "rescale": True},
    "oja": {"oja": True},
    "oja_code_form": {"oja": True, "oja_form": "code"},
    "oja_code_form_symmetric": {"oja": True, "oja_form": "code", "symmetric_in_out": True},
    "oja_symmetric_kappa": {
        "oja": True,
        "symmetric_in_out": True,
        "symmetric_states": True,
        "oja_extra_multiplier": 0.5,
    },
    "exp_update": {"saturation_type": "exp_update", "saturation_epsilon": 0.1},
    "actnorm_both_batch": {"activation_normalization": "both"},
    "actnorm_both_batch_neurons": {
        "activation_normalization": "both",
        "activation_norm_axes": "batch_neurons",
    },
    "actnorm_forward": {"activation_normalization": "forward"},
    "actnorm_backward_batch_neurons": {
        "activation_normalization": "backward",
        "activation_norm_axes": "batch_neurons",
    },
    "forward_activations_for_synapses": {"use_forward_activations_for_synapse_update": True},
    "multiplicative": {"backward_update": "multiplicative"},
    "multiplicative_second_state": {"backward_update": "multiplicative_second_state"},
    "one_hidden": {"hidden_sizes": (8,)},
    "k3": {"num_states": 3},
    "k4": {"num_states": 4},
    "feedback_mse": {"feedback": "mse"},
    "feedback_ce": {"feedback": "ce"},
    "label_encoding_01": {"label_encoding": "01"},
    "activations_tanh_identity_sigmoid": {
        "forward_activation": "tanh",
        "last_layer_activation": "identity",
        "backward_activation": "sigmoid",
    },
    "activations_relu_sigmoid_tanh": {
        "forward_activation": "relu",
        "last_layer_activation": "sigmoid",
        "backward_activation": "tanh",
    },
    "activations_with_grad": {
        "forward_activation": "tanh_with_grad",
        "last_layer_activation": "linear_with_grad",
        "backward_activation": "identity",
        "feedback": "mse",
    },
    "sigmoid_with_grad_ce": {"forward_activation": "sigmoid_with_grad", "feedback": "ce"},
    "single_example": {"_single": True},
    "kitchen_sink": {
        "per_layer_genome": True,
        "symmetric_in_out": True,
        "oja": True,
        "oja_form": "code",
        "normalize_in_activations": True,
        "rescale": True,
        "activation_normalization": "both",
        "feedback": "ce",
        "backward_update": "multiplicative",
        "saturation_type": "exp_update",
    },
}


# Everything at once is badly conditioned in float32: rounding errors grow about 8x per step (the two float32 runs
# each drift up to 3e-4 from a float64 run by step 4), while in float64 the fast path and the oracle agree to 3e-13.
LOOSER_TOLERANCE = {"kitchen_sink": {"rtol": 1e-3, "atol": 1e-3}}


def _fast_episode(
    blur: BLUR, genome: BLURGenome, state: BLURState, xs: jax.Array, ys: jax.Array
) -> tuple[jax.Array, BLURState]:
    all_logits = []
    for t in range(ys.shape[0]):
        logits, state = blur.step(genome, state, xs[t], ys[t])
        all_logits.append(logits)
    return jnp.stack(all_logits), state


# Combos whose shapes no other test uses run as jitted steps (one compilation per implementation, at XLA's cheapest
# level); the rest run op by op, reusing the ops that earlier tests compiled. Either way is a few seconds cheaper.
JITTED_COMBOS = ("one_hidden", "k3", "k4", "single_example")


def fast_vs_reference(name: str) -> tuple[float, float]:
    """Run one combo through both implementations; assert agreement; return (max |Δlogits|, max |ΔF, ΔG|)."""
    settings = dict(COMBOS[name])
    single = settings.pop("_single", False)
    blur, genome, state, xs, ys = _setup(86, steps=EPISODE_STEPS, single=single, **settings)
    packed = ref.pack_state(blur, state)
    if name in JITTED_COMBOS:
        fast_step = jax.jit(blur.step, compiler_options=FAST_COMPILE)
        ref_step = jax.jit(functools.partial(ref.reference_step, blur), compiler_options=FAST_COMPILE)
        fast_logits, ref_logits = [], []
        for x, y in zip(xs, ys, strict=True):
            logits, state = fast_step(genome, state, x, y)
            fast_logits.append(logits)
            logits, packed, _, _ = ref_step(genome, packed, x, y)
            ref_logits.append(logits)
        fast_logits, fast_state, ref_logits = np.stack(fast_logits), state, np.stack(ref_logits)
    else:
        fast_logits, fast_state = _fast_episode(blur, genome, state, xs, ys)
        ref_logits, packed = ref.reference_episode(blur, genome, packed, xs, ys)
    ref_state = ref.unpack_state(blur, packed)
    fast_logits, fast_state, ref_logits, ref_state = jax.tree.map(
        np.asarray, (fast_logits, fast_state, ref_logits, ref_state)
    )

    batch = () if single else (BATCH,)
    assert fast_logits.shape == ref_logits.shape == (EPISODE_STEPS, *batch, SIZES[-1])
    for tree in (fast_logits, fast_state, ref_state):
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(tree)), name
    # The synapses must have moved enough to change the predictions, or the update rule would go untested.
    assert np.max(np.abs(ref_logits[-1] - ref_logits[0])) > 1e-3, name
    tolerance = LOOSER_TOLERANCE.get(name, {"rtol": 1e-4, "atol": 1e-5})
    np.testing.assert_allclose(fast_logits, ref_logits, err_msg=f"{name}: logits", **tolerance)
    for part in ("forward", "backward"):
        for layer, (f, r) in enumerate(zip(getattr(fast_state, part), getattr(ref_state, part), strict=True)):
            np.testing.assert_allclose(f, r, err_msg=f"{name}: {part}[{layer}]", **tolerance)
    synapse_errors = [
        np.max(np.abs(f - r))
        for f, r in zip(jax.tree.leaves(fast_state), jax.tree.leaves(ref_state), strict=True)
    ]
    return float(np.max(np.abs(fast_logits - ref_logits))), float(max(synapse_errors))


@pytest.mark.parametrize("name", list(COMBOS))
def test_fast_path_matches_reference(name):
    fast_vs_reference(name)


# ----- 4. interface properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{}, {"normalize_synapses": True, "activation_normalization": "forward"}]
)
def test_predict_is_the_step_logits_and_changes_nothing(settings):
    blur, genome, state, xs, ys = _setup(87, steps=1, **settings)
    assert isinstance(blur, Learner)
    before = jax.tree.map(np.array, state)
    predicted = blur.predict(genome, state, xs[0])
    jax.tree.map(np.testing.assert_array_equal, state, before)
    logits, _ = blur.step(genome, state, xs[0], ys[0])
    np.testing.assert_allclose(predicted, logits, rtol=1e-6, atol=1e-7)
    if not settings:  # one example is a row of the batch (activation normalisation would mix the batch)
        np.testing.assert_allclose(blur.predict(genome, state, xs[0, 1]), logits[1], rtol=1e-5, atol=1e-6)
    # the oracle: its predict is its step's logits, and agrees with the fast path
    packed = ref.pack_state(blur, state)
    ref_predicted = ref.reference_predict(blur, genome, packed, xs[0])
    ref_logits, _, _, _ = ref.reference_step(blur, genome, packed, xs[0], ys[0])
    np.testing.assert_allclose(ref_predicted, ref_logits, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref_predicted, predicted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_keeps_state_structure_shapes_and_dtypes(dtype, key):
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        blur = backprop_blur(SIZES[1:-1], activation="tanh", feedback="mse")  # any settings would do
        genome = _exact_genome(-LEARNING_RATE, dtype)
        if dtype == jnp.float32:  # the learner's own initial state
            state = blur.init_state(genome, key, TaskSpec((SIZES[0],), SIZES[-1]))
        else:
            state = _blur_state_of(_mlp_init(_rng(88), dtype))
        rng = _rng(88)
        x, y = _inputs(rng, (BATCH, SIZES[0]), dtype), _one_hot(rng, (BATCH,), dtype)
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(state))
        logits, new_state = blur.step(genome, state, x, y)
        assert logits.shape == (BATCH, SIZES[-1]) and logits.dtype == dtype
        assert jax.tree.structure(new_state) == jax.tree.structure(state)
        for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(new_state), strict=True):
            assert (old.shape, old.dtype) == (new.shape, new.dtype)
        assert [f.shape for f in new_state.forward] == [(2, 5, 8), (2, 9, 6), (2, 7, 3)]  # channel-first
        assert [g.shape for g in new_state.backward] == [(2, 8, 4), (2, 6, 8), (2, 3, 6)]


def test_jitted_step_does_not_retrace():
    blur, genome, state, xs, ys = _setup(89, steps=3)
    traces = []

    @jax.jit
    def step(meta, state, x, y):
        traces.append(None)
        return blur.step(meta, state, x, y)

    for t in range(3):
        _, state = step(genome, state, xs[t], ys[t])
    jax.block_until_ready(state)
    assert len(traces) == 1


def test_unroll_gradient_matches_reference():
    """jax.grad of the mean CE over a 3-step unroll w.r.t. the genome: fast path vs oracle. Jitted with XLA's
    cheapest optimisation level (it only costs compile time here; eagerly, the backward ops compile one by one)."""
    blur, genome, state, xs, ys = _setup(90, steps=3, oja=True, normalize_in_activations=True, rescale=True)
    packed = ref.pack_state(blur, state)

    def mean_ce(logits: jax.Array) -> jax.Array:
        return -jnp.mean(jnp.sum(ys * jax.nn.log_softmax(logits, axis=-1), axis=-1))

    def fast_loss(g: BLURGenome) -> jax.Array:
        return mean_ce(_fast_episode(blur, g, state, xs, ys)[0])

    def ref_loss(g: BLURGenome) -> jax.Array:
        return mean_ce(ref.reference_episode(blur, g, packed, xs, ys)[0])

    fast_grad = jax.jit(jax.grad(fast_loss), compiler_options=FAST_COMPILE)(genome)
    ref_grad = jax.jit(jax.grad(ref_loss), compiler_options=FAST_COMPILE)(genome)
    fast_grad, ref_grad = jax.tree.map(np.asarray, (fast_grad, ref_grad))
    scale = max(np.max(np.abs(leaf)) for leaf in jax.tree.leaves(ref_grad))
    assert scale > 1e-3
    for field, f, r in zip(BLURGenome._fields, fast_grad, ref_grad, strict=True):
        np.testing.assert_allclose(f, r, rtol=1e-4, atol=1e-6 * scale, err_msg=field)


BAD_OPTIONS = [
    ("backward_update", "x"),
    ("forward_activation", "softplus"),
    ("last_layer_activation", "softmax"),
    ("backward_activation", "gelu"),
    ("feedback", "hinge"),
    ("label_encoding", "onehot"),
    ("activation_normalization", "layer"),
    ("activation_norm_axes", "neurons"),
    ("saturation_type", "tanh"),
    ("genome_init", "zeros"),
    ("num_states", 1),
    ("hidden_sizes", (4, 0)),
    ("init_scale", 0.0),
]


@pytest.mark.parametrize(("field", "value"), BAD_OPTIONS)
def test_bad_options_raise_clear_errors(field, value):
    with pytest.raises(ValueError, match=field):
        BLUR(**{field: value})


def test_backprop_blur_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        backprop_blur((4,), activation="relu")
