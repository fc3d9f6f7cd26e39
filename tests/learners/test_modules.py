"""Shared learner pieces: the rational float32 tanh of VSML's fast path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vsml.learners.modules import fast_tanh


def test_fast_tanh_matches_tanh_over_the_whole_float32_range():
    x = jnp.concatenate(
        [
            jnp.linspace(-12.0, 12.0, 200_001, dtype=jnp.float32),
            jnp.array([0.0, 1e-30, -1e-8, 3e-4, 7.9, 8.0, 1e4, -1e30, jnp.inf, -jnp.inf], jnp.float32),
        ]
    )
    error = np.abs(np.asarray(fast_tanh(x), np.float64) - np.tanh(np.asarray(x, np.float64)))
    assert error.max() < 5e-7, error.max()
    assert bool(jnp.all(jnp.abs(fast_tanh(x)) <= 1.0))
    assert float(fast_tanh(jnp.float32(0.0))) == 0.0
    saturated = jnp.array([9.5, 50.0, 1e4, jnp.inf], jnp.float32)  # saturated gates: exactly 1, as with tanh
    np.testing.assert_array_equal(np.asarray(fast_tanh(saturated)), np.ones(4))
    np.testing.assert_array_equal(np.asarray(fast_tanh(-saturated)), -np.ones(4))
    # odd, like tanh
    np.testing.assert_array_equal(np.asarray(fast_tanh(-x[:200_001])), -np.asarray(fast_tanh(x[:200_001])))


def test_fast_tanh_gradient_is_that_of_tanh():
    x = jnp.linspace(-9.0, 9.0, 1001, dtype=jnp.float32)
    fast = jax.vmap(jax.grad(fast_tanh))(x)
    exact = jax.vmap(jax.grad(jnp.tanh))(x)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(exact), atol=1e-6)


def test_fast_tanh_leaves_other_dtypes_to_jnp_tanh():
    x64 = np.linspace(-3, 3, 101)
    with jax.enable_x64(True):
        out = fast_tanh(jnp.asarray(x64, jnp.float64))
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), np.tanh(x64), rtol=1e-15)
    bf16 = fast_tanh(jnp.asarray(x64, jnp.bfloat16))
    assert bf16.dtype == jnp.bfloat16
