"""Convolutional VSML layer (spec §1.5): fast path against the literal reference, values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners.reference import conv_layer_op, dense_layer_op
from vsml.learners.vsml import VSML
from vsml.learners.vsml_conv import conv_layer, conv_output_size

M, H = 8, 16

# name: (H_in, W_in, C_in, C_out, stride, kernel, layer_norm, num_micro_ticks)
CASES = {
    "6x6_s1": (6, 6, 2, 3, 1, 3, False, 2),
    "6x6_s2": (6, 6, 2, 3, 2, 3, False, 2),
    "7x5_s2_ln": (7, 5, 2, 3, 2, 3, True, 2),
    "5x7_s1_ln_1tick": (5, 7, 2, 3, 1, 3, True, 1),
    "7x7_s2_1tick_cin1": (7, 7, 1, 3, 2, 3, False, 1),
    "9x6_s3_k5": (9, 6, 2, 2, 3, 5, False, 2),
}


def random_params(key, layer_norm: bool, dtype=jnp.float32):
    """Default init with every leaf perturbed (biases and LN included), so zeros cannot hide ordering bugs."""
    k_init, k_noise = jax.random.split(key)
    params = VSML(layer_norm=layer_norm).init_meta(k_init).sets[0]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(k_noise, len(leaves))
    leaves = [(x + 0.3 * jax.random.normal(k, x.shape)).astype(dtype) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def random_inputs(key, H_in, W_in, C_in, C_out, stride, kernel, dtype=jnp.float32):
    """Random U [H_in, W_in, C_in, M], V [H_out, W_out, C_out, M] and state [k, k, C_in, C_out, H]."""
    P, Q = conv_output_size(H_in, stride), conv_output_size(W_in, stride)
    k_u, k_v, k_h, k_c = jax.random.split(key, 4)
    U = jax.random.normal(k_u, (H_in, W_in, C_in, M), dtype)
    V = jax.random.normal(k_v, (P, Q, C_out, M), dtype)
    h = 0.5 * jax.random.normal(k_h, (kernel, kernel, C_in, C_out, H), dtype)
    c = jax.random.normal(k_c, (kernel, kernel, C_in, C_out, H), dtype)
    return U, V, h, c


def fast_fn(stride, ticks, layer_norm, bug=False):
    return jax.jit(
        lambda p, U, V, h, c: conv_layer(
            p,
            U,
            V,
            h,
            c,
            stride=stride,
            num_micro_ticks=ticks,
            layer_norm=layer_norm,
            authors_stride_mask_bug=bug,
        )
    )


def reference_fn(stride, ticks, layer_norm, bug=False):
    def run(p, U, V, h, c):
        for _ in range(ticks):  # §1.6: the same (U, V) each micro tick, messages of the last one
            fwd, bwd, h, c = conv_layer_op(p, U, V, h, c, stride, layer_norm, bug)
        return fwd, bwd, h, c

    return jax.jit(run)


def assert_close(fast, ref, rel):
    for name, a, b in zip(("fwd", "bwd", "h", "c"), fast, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = max(1.0, float(jnp.max(jnp.abs(b))))
        assert float(jnp.max(jnp.abs(a - b))) <= rel * scale, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_matches_reference(name, key):
    H_in, W_in, C_in, C_out, stride, kernel, ln, ticks = CASES[name]
    k_p, k_x = jax.random.split(key)
    p = random_params(k_p, ln)
    U, V, h, c = random_inputs(k_x, H_in, W_in, C_in, C_out, stride, kernel)
    fast = fast_fn(stride, ticks, ln)(p, U, V, h, c)
    ref = reference_fn(stride, ticks, ln)(p, U, V, h, c)
    assert_close(fast, ref, 1e-5)
    P, Q = -(-H_in // stride), -(-W_in // stride)
    assert fast[0].shape == (P, Q, C_out, M)
    assert fast[1].shape == (H_in, W_in, C_in, M)
    assert fast[2].shape == fast[3].shape == (kernel, kernel, C_in, C_out, H)
    assert float(jnp.max(jnp.abs(fast[3] - c))) > 1e-3  # the state moved: not a comparison of constants


@pytest.mark.parametrize("name", ["6x6_s2", "7x5_s2_ln", "5x7_s1_ln_1tick"])
def test_fast_matches_reference_float64(name, key):
    H_in, W_in, C_in, C_out, stride, kernel, ln, ticks = CASES[name]
    with jax.enable_x64(True):
        k_p, k_x = jax.random.split(key)
        p = random_params(k_p, ln, jnp.float64)
        U, V, h, c = random_inputs(k_x, H_in, W_in, C_in, C_out, stride, kernel, jnp.float64)
        fast = fast_fn(stride, ticks, ln)(p, U, V, h, c)
        ref = reference_fn(stride, ticks, ln)(p, U, V, h, c)
        assert fast[0].dtype == jnp.float64
        assert_close(fast, ref, 1e-10)


def covering_outputs(n_in: int, stride: int, kernel: int) -> list[set[int]]:
    """For each input index: the output indices p whose window covers it (p·s + j = y + k//2, 0 ≤ j < k)."""
    n_out = conv_output_size(n_in, stride)
    return [
        {(y + kernel // 2 - j) // stride for j in range(kernel) if (y + kernel // 2 - j) % stride == 0}
        & set(range(n_out))
        for y in range(n_in)
    ]


@pytest.mark.parametrize("size", [(8, 7), (5, 9)])
def test_authors_stride_mask_bug(size, key):
    """The option only silences output rows/cols with p·s ≥ in // s in the backward scatter (spec §1.5)."""
    H_in, W_in = size
    k_p, k_x = jax.random.split(key)
    p = random_params(k_p, False)
    U, V, h, c = random_inputs(k_x, H_in, W_in, 2, 3, 2, 3)
    right = fast_fn(2, 2, False)(p, U, V, h, c)
    buggy = fast_fn(2, 2, False, bug=True)(p, U, V, h, c)
    assert_close(buggy, reference_fn(2, 2, False, bug=True)(p, U, V, h, c), 1e-5)
    for a, b in zip((right[0], right[2], right[3]), (buggy[0], buggy[2], buggy[3]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # fwd and state untouched

    def senders(n_in: int) -> set[int]:
        return {q for q in range(conv_output_size(n_in, 2)) if q * 2 < n_in // 2}

    if H_in % 4 != 1:  # the spec's paraphrase "p < W_out / 2"; it is off by one for in ≡ 1 (mod 4)
        assert senders(H_in) == {q for q in range(conv_output_size(H_in, 2)) if q < conv_output_size(H_in, 2) / 2}
    rows, cols = covering_outputs(H_in, 2, 3), covering_outputs(W_in, 2, 3)
    diff = np.asarray(jnp.max(jnp.abs(right[1] - buggy[1]), axis=(2, 3)))
    silent = np.asarray(jnp.max(jnp.abs(buggy[1]), axis=(2, 3))) == 0.0
    for y in range(H_in):
        for x in range(W_in):
            all_send = rows[y] <= senders(H_in) and cols[x] <= senders(W_in)
            none_send = not (rows[y] & senders(H_in)) or not (cols[x] & senders(W_in))
            assert (diff[y, x] == 0.0) == all_send, (y, x)
            assert silent[y, x] == none_send, (y, x)


def test_bug_option_is_inert_at_stride_1(key):
    k_p, k_x = jax.random.split(key)
    p = random_params(k_p, True)
    U, V, h, c = random_inputs(k_x, 6, 5, 2, 3, 1, 3)
    right = fast_fn(1, 2, True)(p, U, V, h, c)
    buggy = fast_fn(1, 2, True, bug=True)(p, U, V, h, c)
    for a, b in zip(right, buggy, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("layer_norm", [False, True])
def test_gradients_match_reference(layer_norm, key):
    """d/dθ of a random linear read-out of all four outputs: fast path and literal op agree."""
    k_p, k_x, k_w = jax.random.split(key, 3)
    p = random_params(k_p, layer_norm)
    U, V, h, c = random_inputs(k_x, 7, 6, 2, 3, 2, 3)
    weights = [jax.random.normal(k, x.shape) for k, x in zip(jax.random.split(k_w, 4), (V, U, h, c), strict=True)]

    def objective(fn):
        return lambda params: sum(jnp.sum(w * o) for w, o in zip(weights, fn(params, U, V, h, c), strict=True))

    g_fast = jax.jit(jax.grad(objective(fast_fn(2, 2, layer_norm))))(p)
    g_ref = jax.jit(jax.grad(objective(reference_fn(2, 2, layer_norm))))(p)
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref), strict=True):
        scale = max(1.0, float(jnp.max(jnp.abs(b))))
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-4 * scale


def test_one_pixel_1x1_kernel_is_a_dense_layer(key):
    """k = 1 on a 1×1 image: one position, one offset, so the op is the dense layer op of §1.4."""
    k_p, k_x = jax.random.split(key)
    p = random_params(k_p, False)
    U, V, h, c = random_inputs(k_x, 1, 1, 5, 4, 1, 1)
    fast = fast_fn(1, 1, False)(p, U, V, h, c)
    dense = dense_layer_op(p, U[0, 0], V[0, 0], h[0, 0], c[0, 0], False)
    for a, b in zip(fast, (dense[0][None, None], dense[1][None, None], dense[2][None, None], dense[3][None, None])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)


def test_partial_channels_and_skipped_messages(key):
    """U with only channel 0 (an image) equals the zero-padded message; want_* = False skip only messages."""
    k_p, k_x = jax.random.split(key)
    p = random_params(k_p, False)
    U, V, h, c = random_inputs(k_x, 6, 6, 1, 3, 2, 3)
    image = U[..., :1]
    full = conv_layer(p, U.at[..., 1:].set(0.0), V, h, c, stride=2, num_micro_ticks=2, layer_norm=False)
    part = conv_layer(p, image, V, h, c, stride=2, num_micro_ticks=2, layer_norm=False)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
    skipped = conv_layer(
        p, image, V, h, c, stride=2, num_micro_ticks=2, layer_norm=False, want_fwd=False, want_bwd=False
    )
    assert skipped[0] is None and skipped[1] is None
    np.testing.assert_array_equal(np.asarray(skipped[3]), np.asarray(part[3]))


def test_shape_errors(key):
    p = random_params(key, False)
    U, V, h, c = random_inputs(key, 6, 6, 2, 3, 2, 3)
    with pytest.raises(ValueError, match="k odd"):
        conv_layer(p, U, V, h[:2, :2], c[:2, :2], stride=2, num_micro_ticks=1, layer_norm=False)
    with pytest.raises(ValueError, match="V must be"):
        conv_layer(p, U, V[:2], h, c, stride=2, num_micro_ticks=1, layer_norm=False)
