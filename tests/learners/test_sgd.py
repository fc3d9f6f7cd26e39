"""Tests for the online SGD / Adam baselines (spec §5)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml.learners.base import Learner, TaskSpec, run_episode, softmax_cross_entropy
from vsml.learners.sgd import DenseParams, OnlineSGD, online_adam, online_sgd

SPEC = TaskSpec(input_shape=(2, 4), num_classes=3)


def _example(key: jax.Array, spec: TaskSpec = SPEC) -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, spec.input_shape)
    y = jax.nn.one_hot(jax.random.randint(ky, (), 0, spec.num_classes), spec.num_classes)
    return x, y


def _bounded_ce(params: tuple[DenseParams, ...], x: jax.Array, y: jax.Array, bound: float) -> jax.Array:
    """The linear model's loss, written out independently of the learner."""
    (layer,) = params
    logits = bound * jnp.tanh((x.reshape(-1) @ layer.w + layer.b) / bound)
    return -jnp.sum(y * jax.nn.log_softmax(logits))


def test_is_a_learner_and_validates_settings():
    assert isinstance(OnlineSGD(), Learner)
    with pytest.raises(ValueError, match="optimizer"):
        OnlineSGD(optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning_rate"):
        OnlineSGD(learning_rate=0.0)
    with pytest.raises(ValueError, match="hidden_sizes"):
        OnlineSGD(hidden_sizes=(0,))
    # A list is normalised so the learner stays hashable (a jit static argument).
    assert hash(OnlineSGD(hidden_sizes=[4])) == hash(OnlineSGD(hidden_sizes=(4,)))


def test_constructors_follow_spec_defaults():
    assert online_sgd() == OnlineSGD(optimizer="sgd", learning_rate=0.01)
    assert online_adam() == OnlineSGD(optimizer="adam", learning_rate=0.001)
    assert online_adam(hidden_sizes=(160,), fixed_init=False).fixed_init is False
    meta = online_adam(0.003).init_meta(jax.random.key(0))
    assert meta.log_learning_rate.shape == ()
    np.testing.assert_allclose(float(jnp.exp(meta.log_learning_rate)), 0.003, rtol=1e-6)


@pytest.mark.parametrize(("hidden_sizes", "num_params"), [((), 7_850), ((160,), 127_210)])
def test_parameter_counts_match_spec(hidden_sizes, num_params):
    # 28×28 inputs, 10 classes (spec §5); shapes only, so nothing is computed.
    learner = OnlineSGD(hidden_sizes=hidden_sizes)
    meta = learner.init_meta(jax.random.key(0))
    state = jax.eval_shape(lambda k: learner.init_state(meta, k, TaskSpec((28, 28), 10)), jax.random.key(1))
    assert sum(math.prod(p.shape) for p in jax.tree.leaves(state.params)) == num_params


def test_init_is_haiku_default_like():
    learner = OnlineSGD(hidden_sizes=(256,))
    state = learner.init_state(learner.init_meta(jax.random.key(0)), jax.random.key(1), TaskSpec((400,), 10))
    hidden, out = state.params
    assert hidden.w.shape == (400, 256) and out.w.shape == (256, 10)
    assert not jnp.any(hidden.b) and not jnp.any(out.b)
    # Truncated at ±2σ with σ = 1/√fan_in; the truncated normal's std is ≈ 0.88σ.
    sigma = 1 / math.sqrt(400)
    assert float(jnp.max(jnp.abs(hidden.w))) <= 2 * sigma + 1e-6
    np.testing.assert_allclose(float(jnp.std(hidden.w)), 0.8796 * sigma, rtol=0.02)


def test_fixed_init_ignores_the_episode_key():
    learner = OnlineSGD(hidden_sizes=(5,))
    meta = learner.init_meta(jax.random.key(0))
    a = learner.init_state(meta, jax.random.key(1), SPEC)
    b = learner.init_state(meta, jax.random.key(2), SPEC)
    jax.tree.map(np.testing.assert_array_equal, a, b)

    free = OnlineSGD(hidden_sizes=(5,), fixed_init=False)
    c = free.init_state(meta, jax.random.key(1), SPEC)
    d = free.init_state(meta, jax.random.key(2), SPEC)
    assert not np.array_equal(c.params[0].w, d.params[0].w)


@pytest.mark.parametrize("tanh_bound", [100.0, 0.5])  # 0.5 makes the bound's chain rule matter
def test_sgd_step_is_one_gradient_step(tanh_bound):
    learner = OnlineSGD(optimizer="sgd", learning_rate=0.1, tanh_bound=tanh_bound, fixed_init=False)
    meta = learner.init_meta(jax.random.key(0))
    state = learner.init_state(meta, jax.random.key(1), SPEC)
    x, y = _example(jax.random.key(2))

    logits, new_state = jax.jit(learner.step)(meta, state, x, y)

    grads = jax.jit(jax.grad(_bounded_ce), static_argnums=3)(state.params, x, y, tanh_bound)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), new_state.params, expected)
    # The prediction is made with the weights from before the update.
    (layer,) = state.params
    expected_logits = tanh_bound * jnp.tanh((x.reshape(-1) @ layer.w + layer.b) / tanh_bound)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-6)


def test_adam_first_steps_match_optax():
    learner = online_adam(0.01, hidden_sizes=(6,))
    meta = learner.init_meta(jax.random.key(0))
    state = learner.init_state(meta, jax.random.key(1), SPEC)
    reference = optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8)
    params, opt_state = state.params, reference.init(state.params)

    def loss(p, x, y):
        return softmax_cross_entropy(learner.logits(p, x.reshape(-1)), y)

    @jax.jit
    def reference_step(params, opt_state, x, y):
        updates, opt_state = reference.update(jax.grad(loss)(params, x, y), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = jax.jit(learner.step)
    for key in jax.random.split(jax.random.key(2), 3):
        x, y = _example(key)
        _, state = step(meta, state, x, y)
        params, opt_state = reference_step(params, opt_state, x, y)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state.params, params)


def test_a_batch_is_one_step_on_the_batch_mean_loss():
    # A batch [B, *input_shape] with y [B, C] (BLUR's episodes): one Adam step on the mean CE, predicted first.
    learner = online_adam(0.01, hidden_sizes=(6,))
    meta = learner.init_meta(jax.random.key(0))
    state = learner.init_state(meta, jax.random.key(1), SPEC)
    xs, ys = jax.vmap(_example)(jax.random.split(jax.random.key(2), 5))
    reference = optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8)

    def mean_loss(p):
        return jnp.mean(jax.vmap(lambda x, y: softmax_cross_entropy(learner.logits(p, x.reshape(-1)), y))(xs, ys))

    updates, _ = reference.update(jax.grad(mean_loss)(state.params), reference.init(state.params), state.params)
    logits, new_state = jax.jit(learner.step)(meta, state, xs, ys)

    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
        new_state.params,
        optax.apply_updates(state.params, updates),
    )
    before = jax.vmap(lambda x: learner.logits(state.params, x.reshape(-1)))(xs)
    np.testing.assert_allclose(logits, before, atol=1e-6)
    # predict: forward only, a batch or one example, from the learned weights.
    one = learner.predict(meta, new_state, xs[1])
    np.testing.assert_allclose(learner.predict(meta, new_state, xs)[1], one, atol=1e-6)
    np.testing.assert_allclose(one, learner.logits(new_state.params, xs[1].reshape(-1)), atol=1e-6)
    assert learner.predict(meta, new_state, xs).shape == (5, SPEC.num_classes)


@pytest.mark.parametrize("learner", [online_sgd(), online_adam(hidden_sizes=(7,))], ids=["sgd", "adam-mlp"])
def test_step_keeps_structure_shapes_and_dtypes(learner):
    meta = learner.init_meta(jax.random.key(0))
    state = learner.init_state(meta, jax.random.key(1), SPEC)
    x, y = _example(jax.random.key(2))
    logits, new_state = jax.jit(learner.step)(meta, state, x, y)
    assert logits.shape == (SPEC.num_classes,) and logits.dtype == jnp.float32
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(new_state), strict=True):
        assert (old.shape, old.dtype) == (new.shape, new.dtype)
    assert any(not np.array_equal(a, b) for a, b in zip(state.params[0], new_state.params[0], strict=True))


def test_jitted_step_does_not_recompile():
    learner = online_adam(hidden_sizes=(4,))
    meta = learner.init_meta(jax.random.key(0))
    state = learner.init_state(meta, jax.random.key(1), SPEC)
    traces = []

    def step(meta, state, x, y):
        traces.append(None)
        return learner.step(meta, state, x, y)

    jitted = jax.jit(step)
    for key in jax.random.split(jax.random.key(2), 3):
        _, state = jitted(meta, state, *_example(key))
    # A new meta value (not a new Python float) must not recompile either: α is traced.
    jitted(meta._replace(log_learning_rate=meta.log_learning_rate + 1.0), state, *_example(jax.random.key(3)))
    assert len(traces) == 1 and jitted._cache_size() == 1


def _blobs(
    key: jax.Array, num_steps: int = 200, dim: int = 8, num_classes: int = 2
) -> tuple[jax.Array, jax.Array]:
    k_labels, k_noise, k_means = jax.random.split(key, 3)
    labels = jax.random.randint(k_labels, (num_steps,), 0, num_classes)
    means = 3.0 * jax.random.normal(k_means, (num_classes, dim)) / math.sqrt(dim)
    xs = means[labels] + 0.5 * jax.random.normal(k_noise, (num_steps, dim))
    return xs, jax.nn.one_hot(labels, num_classes)


@pytest.mark.parametrize(
    "learner",
    [
        online_sgd(0.1),
        online_adam(0.01),
        online_sgd(0.1, hidden_sizes=(16,)),
        online_adam(0.01, hidden_sizes=(160,)),  # spec §5: 1 hidden layer of 160 tanh units
    ],
    ids=["sgd", "adam", "sgd-mlp", "adam-mlp160"],
)
def test_learns_separable_blobs_online(learner):
    # 5 classes, so that learning them takes a visible part of the episode (2 are learnt within a few steps).
    xs, ys = _blobs(jax.random.key(3), num_classes=5)
    meta = learner.init_meta(jax.random.key(0))
    logits = jax.jit(run_episode, static_argnums=0)(learner, meta, jax.random.key(4), xs, ys)
    correct = jnp.argmax(logits, -1) == jnp.argmax(ys, -1)
    first_half, second_half = float(jnp.mean(correct[:100])), float(jnp.mean(correct[100:]))
    assert second_half > 0.9
    # It learns: online accuracy over the second half of the episode beats the first half.
    assert second_half > first_half, (first_half, second_half)


def test_learning_rate_is_differentiable_through_an_episode():
    learner = online_sgd(0.05)
    xs, ys = _blobs(jax.random.key(5), num_steps=30)

    def mean_online_ce(meta):
        return jnp.mean(softmax_cross_entropy(run_episode(learner, meta, jax.random.key(0), xs, ys), ys))

    grad = jax.jit(jax.grad(mean_online_ce))(learner.init_meta(jax.random.key(0)))
    assert grad.log_learning_rate.shape == () and jnp.isfinite(grad.log_learning_rate)
    # Learning faster lowers the online loss on an easy task.
    assert float(grad.log_learning_rate) < 0
