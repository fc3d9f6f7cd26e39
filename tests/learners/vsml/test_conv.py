"""Convolutional VSML layer (spec §1.5): fast path against the literal reference, values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners.vsml import SubRNNParams
from vsml.learners.vsml.conv import conv_layer, conv_output_size
from vsml.learners.vsml.reference import conv_layer_op, dense_layer_op

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


def random_params(seed: int, layer_norm: bool, dtype=jnp.float32) -> SubRNNParams:
    """Default-scale weights with every bias and LN leaf random too, so zeros cannot hide ordering bugs.

    numpy draws (not jax.random) keep the suite fast: no eager XLA op compiled per shape.
    """
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0, mean=0.0):
        return jnp.asarray(mean + scale * rng.standard_normal(shape), dtype)

    ln = {}
    if layer_norm:
        ln = dict(
            fwd_ln_scale=normal(M, scale=0.3, mean=1.0),
            fwd_ln_offset=normal(M, scale=0.3),
            bwd_ln_scale=normal(M, scale=0.3, mean=1.0),
            bwd_ln_offset=normal(M, scale=0.3),
        )
    return SubRNNParams(
        lstm_W=normal(2 * M + H, 4 * H, scale=(2 * M + H) ** -0.5),
        lstm_b=normal(4 * H, scale=0.3),
        fwd_W=normal(H, M, scale=H**-0.5),
        fwd_b=normal(M, scale=0.3),
        bwd_W=normal(H, M, scale=H**-0.5),
        bwd_b=normal(M, scale=0.3),
        **ln,
    )


def random_inputs(seed: int, H_in, W_in, C_in, C_out, stride, kernel, dtype=jnp.float32):
    """Random U [H_in, W_in, C_in, M], V [H_out, W_out, C_out, M] and state [k, k, C_in, C_out, H]."""
    rng = np.random.default_rng(seed)
    P, Q = conv_output_size(H_in, stride), conv_output_size(W_in, stride)
    shapes = [(H_in, W_in, C_in, M), (P, Q, C_out, M), (kernel, kernel, C_in, C_out, H)]
    U, V, h, c = (rng.standard_normal(shape) for shape in (*shapes, shapes[2]))
    return tuple(jnp.asarray(x, dtype) for x in (U, V, 0.5 * h, c))


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
    """Max abs difference ≤ rel · max(1, max |ref|), per output (numpy: no eager XLA compiles)."""
    for name, a, b in zip(("fwd", "bwd", "h", "c"), fast, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= rel * max(1.0, np.max(np.abs(b))), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_matches_reference(name):
    H_in, W_in, C_in, C_out, stride, kernel, ln, ticks = CASES[name]
    p = random_params(0, ln)
    U, V, h, c = random_inputs(1, H_in, W_in, C_in, C_out, stride, kernel)
    fast = fast_fn(stride, ticks, ln)(p, U, V, h, c)
    ref = reference_fn(stride, ticks, ln)(p, U, V, h, c)
    assert_close(fast, ref, 1e-5)
    P, Q = -(-H_in // stride), -(-W_in // stride)
    assert fast[0].shape == (P, Q, C_out, M)
    assert fast[1].shape == (H_in, W_in, C_in, M)
    assert fast[2].shape == fast[3].shape == (kernel, kernel, C_in, C_out, H)
    assert (
        np.max(np.abs(np.asarray(fast[3]) - np.asarray(c))) > 1e-3
    )  # the state moved: not a comparison of constants


@pytest.mark.parametrize("name", ["7x5_s2_ln", "5x7_s1_ln_1tick"])
def test_fast_matches_reference_float64(name):
    H_in, W_in, C_in, C_out, stride, kernel, ln, ticks = CASES[name]
    with jax.enable_x64(True):
        p = random_params(0, ln, jnp.float64)
        U, V, h, c = random_inputs(1, H_in, W_in, C_in, C_out, stride, kernel, jnp.float64)
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
def test_authors_stride_mask_bug(size):
    """The option only silences output rows/cols with p·s ≥ in // s in the backward scatter (spec §1.5)."""
    H_in, W_in = size
    p = random_params(0, False)
    U, V, h, c = random_inputs(1, H_in, W_in, 2, 3, 2, 3)
    right = fast_fn(2, 2, False)(p, U, V, h, c)
    buggy = fast_fn(2, 2, False, bug=True)(p, U, V, h, c)
    assert_close(buggy, reference_fn(2, 2, False, bug=True)(p, U, V, h, c), 1e-5)
    for a, b in zip((right[0], right[2], right[3]), (buggy[0], buggy[2], buggy[3]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # fwd and state untouched

    def senders(n_in: int) -> set[int]:
        return {q for q in range(conv_output_size(n_in, 2)) if q * 2 < n_in // 2}

    if H_in % 4 != 1:  # the spec's paraphrase "p < W_out / 2"; it is off by one for in ≡ 1 (mod 4)
        assert senders(H_in) == {
            q for q in range(conv_output_size(H_in, 2)) if q < conv_output_size(H_in, 2) / 2
        }
    rows, cols = covering_outputs(H_in, 2, 3), covering_outputs(W_in, 2, 3)
    diff = np.max(np.abs(np.asarray(right[1]) - np.asarray(buggy[1])), axis=(2, 3))
    silent = np.max(np.abs(np.asarray(buggy[1])), axis=(2, 3)) == 0.0
    for y in range(H_in):
        for x in range(W_in):
            all_send = rows[y] <= senders(H_in) and cols[x] <= senders(W_in)
            none_send = not (rows[y] & senders(H_in)) or not (cols[x] & senders(W_in))
            assert (diff[y, x] == 0.0) == all_send, (y, x)
            assert silent[y, x] == none_send, (y, x)


def test_bug_option_is_inert_at_stride_1():
    p = random_params(0, True)
    U, V, h, c = random_inputs(1, 6, 5, 2, 3, 1, 3)
    right = fast_fn(1, 2, True)(p, U, V, h, c)
    buggy = fast_fn(1, 2, True, bug=True)(p, U, V, h, c)
    for a, b in zip(right, buggy, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("layer_norm", [False, True])
def test_gradients_match_reference(layer_norm):
    """d/dθ of a random linear read-out of all four outputs: fast path and literal op agree."""
    p = random_params(0, layer_norm)
    U, V, h, c = random_inputs(1, 7, 6, 2, 3, 2, 3)
    rng = np.random.default_rng(2)
    weights = [jnp.asarray(rng.standard_normal(x.shape), x.dtype) for x in (V, U, h, c)]

    def objective(fn):
        return lambda params: sum(
            jnp.sum(w * o) for w, o in zip(weights, fn(params, U, V, h, c), strict=True)
        )

    g_fast = jax.jit(jax.grad(objective(fast_fn(2, 2, layer_norm))))(p)
    g_ref = jax.jit(jax.grad(objective(reference_fn(2, 2, layer_norm))))(p)
    for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= 1e-4 * max(1.0, np.max(np.abs(b)))


def test_one_pixel_1x1_kernel_is_a_dense_layer():
    """k = 1 on a 1×1 image: one position, one offset, so the op is the dense layer op of §1.4."""
    p = random_params(0, False)
    U, V, h, c = random_inputs(1, 1, 1, 5, 4, 1, 1)
    fast = fast_fn(1, 1, False)(p, U, V, h, c)
    dense = jax.jit(dense_layer_op, static_argnums=5)(p, U[0, 0], V[0, 0], h[0, 0], c[0, 0], False)
    for a, b in zip(fast, [x[None, None] for x in dense], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)


def test_partial_channels_and_skipped_messages():
    """U with only channel 0 (an image) equals the zero-padded message; want_* = False skip only messages."""
    p = random_params(0, False)
    U, V, h, c = random_inputs(1, 6, 6, 1, 3, 2, 3)
    image = U[..., :1]
    zero_padded = np.concatenate([np.asarray(image), np.zeros((6, 6, 1, M - 1), np.float32)], axis=-1)
    full = fast_fn(2, 2, False)(p, jnp.asarray(zero_padded), V, h, c)
    part = fast_fn(2, 2, False)(p, image, V, h, c)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
    skipped = jax.jit(
        lambda p, U, V, h, c: conv_layer(
            p, U, V, h, c, stride=2, num_micro_ticks=2, layer_norm=False, want_fwd=False, want_bwd=False
        )
    )(p, image, V, h, c)
    assert skipped[0] is None and skipped[1] is None
    np.testing.assert_array_equal(np.asarray(skipped[3]), np.asarray(part[3]))


def test_shape_errors():
    p = random_params(0, False)
    U, V, h, c = random_inputs(1, 6, 6, 2, 3, 2, 3)
    with pytest.raises(ValueError, match="k odd"):
        conv_layer(p, U, V, h[:2, :2], c[:2, :2], stride=2, num_micro_ticks=1, layer_norm=False)
    with pytest.raises(ValueError, match="V must be"):
        conv_layer(p, U, V[:2], h, c, stride=2, num_micro_ticks=1, layer_norm=False)
