"""BLUR's "not gradient descent" check (BLUR §3.5, App. A; spec blur.md §9): the update Jacobian of plain SGD is
the loss Hessian (symmetric), a random genome's is not."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vsml.evaluation.asymmetry import gradient_asymmetry_by_layer, update_jacobian
from vsml.learners.blur.learner import BLUR, BLURState, backprop_blur, backprop_genome, random_genome

TINY_NET = (3, 4, 2)  # inputs, hidden, classes


def _tiny_episode(steps: int, dtype: np.dtype) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(steps, TINY_NET[0])).astype(dtype))
    ys = jnp.asarray(np.eye(TINY_NET[-1])[rng.integers(0, TINY_NET[-1], steps)].astype(dtype))
    return xs, ys


def test_backprop_genome_update_jacobian_is_the_loss_hessian(key):
    """J = ∂Δw/∂w of SGD is −λ·∂²L/∂w² (here L = CE of one example; w = [W_0; b_0] of the tanh layer)."""
    blur = backprop_blur(TINY_NET[1:-1], "tanh", "ce")
    rate = -float(backprop_genome(2, -0.1).synapse_update)  # λ as stored (float32), not 0.1 exactly
    with jax.enable_x64(True):
        xs, ys = _tiny_episode(1, np.float64)
        # Synapses made on the host (eager jax.random would compile op by op), tied as backprop_blur ties them.
        rng = np.random.default_rng(7)
        weights = [
            rng.uniform(-1, 1, size=(n + 1, m)) for n, m in zip(TINY_NET[:-1], TINY_NET[1:], strict=True)
        ]
        state = BLURState(  # channel-first: [k, n+1, m] and [k, m, n]
            tuple(jnp.asarray(np.stack([w, w])) for w in weights),
            tuple(jnp.asarray(np.stack([w[:-1].T, w[:-1].T])) for w in weights),
        )
        genome = jax.tree.map(lambda g: jnp.asarray(g, jnp.float64), backprop_genome(2, -rate))
        # A block of J in a shuffled order of synapses: `indices` must pick rows and columns alike.
        chosen = np.random.default_rng(6).permutation(16)[:12]
        jacobian = update_jacobian(blur, genome, state, xs[0], ys[0], 0, jnp.asarray(chosen))
        last = state.forward[1][0]

        def loss(w: jax.Array) -> jax.Array:
            hidden = jnp.tanh(jnp.append(xs[0], 1.0) @ w.reshape(TINY_NET[0] + 1, TINY_NET[1]))
            logits = jnp.append(hidden, 1.0) @ last
            return -jnp.sum(ys[0] * jax.nn.log_softmax(logits))

        hessian = jax.jit(jax.hessian(loss))(state.forward[0][0].reshape(-1))
    expected = -rate * np.asarray(hessian)[np.ix_(chosen, chosen)]
    assert jacobian.shape == (12, 12) and np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(np.asarray(jacobian), expected, rtol=1e-10, atol=1e-14)


def test_update_jacobian_rows_are_updates_and_columns_are_synapses():
    """J[a, b] = ∂Δw_a/∂w_b, checked against jax.jacfwd on an untied network (no syncs), where J is asymmetric."""
    learner = BLUR(hidden_sizes=TINY_NET[1:-1])
    genome = random_genome(jax.random.PRNGKey(3), 2)
    xs, ys = _tiny_episode(1, np.float32)
    rng = np.random.default_rng(8)
    shapes = [((2, n + 1, m), (2, m, n)) for n, m in zip(TINY_NET[:-1], TINY_NET[1:], strict=True)]
    state = BLURState(
        tuple(jnp.asarray(rng.uniform(-1, 1, f).astype(np.float32)) for f, _ in shapes),
        tuple(jnp.asarray(rng.uniform(-1, 1, g).astype(np.float32)) for _, g in shapes),
    )
    chosen = np.random.default_rng(9).permutation(16)  # all synapses, shuffled

    def update(w: jax.Array) -> jax.Array:
        forward = state.forward[0].at[0].set(w.reshape(4, 4))
        _, new = learner.step(genome, state._replace(forward=(forward, state.forward[1])), xs[0], ys[0])
        return new.forward[0][0].reshape(-1) - w

    expected = jax.jit(jax.jacfwd(update))(state.forward[0][0].reshape(-1))
    jacobian = update_jacobian(learner, genome, state, xs[0], ys[0], 0, jnp.asarray(chosen))
    expected = np.asarray(expected)[np.ix_(chosen, chosen)]
    assert np.abs(expected - expected.T).max() > 1e-2 * np.abs(expected).max()  # not symmetric
    np.testing.assert_allclose(np.asarray(jacobian), expected, rtol=1e-5, atol=1e-7)


def test_backprop_genome_is_symmetric_and_a_random_genome_is_not(key):
    with jax.enable_x64(True):
        xs, ys = _tiny_episode(4, np.float64)
        # A random genome on the authors' default network, after 3 warm-up steps; plain SGD as the reference.
        learner = BLUR(hidden_sizes=TINY_NET[1:-1])
        layers = gradient_asymmetry_by_layer(learner, random_genome(jax.random.PRNGKey(3), 2), key, xs, ys)
    assert [result["layer"] for result in layers] == [0, 1]
    assert [result["synapses"] for result in layers] == [16, 10]
    for result in layers:
        assert result["measured_synapses"] == result["synapses"] and result["warmup_steps"] == 3
        assert result["relative_max_asymmetry"] > 1e-3 and result["antisymmetric_fraction"] > 1e-3
        reference = result["sgd_reference"]
        assert reference["max_abs_jacobian"] > 1e-3 and reference["relative_max_asymmetry"] < 1e-6
