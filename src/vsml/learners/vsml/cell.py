"""The VSML sub-RNN cell (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905; spec vsml.md §1.3, §7): the
parameter types and the cell math that the dense fast path (`learner.py`), the conv layer (`conv.py`), the fused
Pallas kernel (`pallas.py`) and the learning-algorithm cloning codec (`codec.py`) all share.

Sub-RNN (spec §1.3), gate order (i, g, f, o), rows of W in the order (u, v, h):

    z = [u; v; h] W + β,   f = σ(z_f + 5),  i = σ(z_i − 5)
    c' = f ⊙ c + i ⊙ tanh(z_g),   h' = σ(z_o) ⊙ tanh(c')
    m_fwd = h' F + φ,   m_bwd = h' G + γ           (then LayerNorm over the 8 channels if `layer_norm`)

In the fast form σ(z) = ½ + ½·tanh(z/2), with the ½ and the ±5 offsets folded into the weights
(`gate_weights_for_tanh`), so all four gates are one tanh over 4H channels; a dense layer's micro ticks
(`dense_micro_ticks`) run on gate inputs split into a per-input-unit part (u W_u), a per-output-unit part
(v W_v + β) and the recurrent product h W_h (`recurrent_product`, at the precision `VSML.recurrent_matmul`
names). Messengers are affine, so the mean over synapses of a message is taken before the projection, and with
LayerNorm folded into one rsqrt per synapse (`mean_layer_norm_message`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vsml.learners.base import Array
from vsml.learners.modules import LAYER_NORM_EPS

FORGET_OFFSET = 5.0  # spec §1.3: hard-coded, not a parameter
INPUT_OFFSET = -5.0
RECURRENT_MATMULS = ("float32", "tf32x3", "tf32", "bfloat16")


class SubRNNParams(NamedTuple):
    """One shared sub-RNN parameter set (spec §1.3). H = state size, M = message size."""

    lstm_W: Array  # [2M+H, 4H] rows (u, v, h), columns gates (i, g, f, o)
    lstm_b: Array  # [4H]
    fwd_W: Array  # [H, M] forward messenger F
    fwd_b: Array  # [M]
    bwd_W: Array  # [H, M] backward messenger G
    bwd_b: Array  # [M]
    fwd_ln_scale: Array | None = None  # [M] only with layer_norm
    fwd_ln_offset: Array | None = None
    bwd_ln_scale: Array | None = None
    bwd_ln_offset: Array | None = None


class LayerPlan(NamedTuple):
    """Static shapes of one VSML layer for a task (conv layers first, then dense ones)."""

    kind: str  # "conv" or "dense"
    in_shape: tuple[int, ...]  # units receiving forward messages: (A,) dense, (H, W, C) conv
    out_shape: tuple[int, ...]  # units sending them: (B,) dense, (H_out, W_out, C_out) conv
    state_shape: tuple[int, ...]  # without H: (A, B) dense, (k, k, C_in, C_out) conv
    stride: int = 1


class VSMLMeta(NamedTuple):
    """V_M: one or several sub-RNN parameter sets (several with `layerwise_rnns` / `separate_backward_rnn`)."""

    sets: tuple[SubRNNParams, ...]


def recurrent_product(recurrent_matmul: str, h: Array, W_h: Array, gpu: bool | None = None) -> Array:
    """h·W_h at the precision `recurrent_matmul` names (`VSML.recurrent_matmul`), results in h's dtype; states
    other than float32 (the float64 parity checks) always get the exact product. `gpu`: whether the product runs
    on a GPU (default: the default backend is one), which only tf32x3 asks, as XLA:CPU rejects that algorithm.
    Inside the Pallas kernel Triton maps HIGHEST to its IEEE float32 product, DEFAULT to TF32."""
    exact = jax.lax.Precision.HIGHEST
    if h.dtype != jnp.float32 or recurrent_matmul == "float32":
        return jnp.matmul(h, W_h, precision=exact)
    if recurrent_matmul == "bfloat16":
        return jnp.matmul(h.astype(jnp.bfloat16), W_h.astype(jnp.bfloat16), preferred_element_type=h.dtype)
    if recurrent_matmul == "tf32":
        return jnp.matmul(h, W_h, precision=jax.lax.Precision.DEFAULT)
    if not (jax.default_backend() == "gpu" if gpu is None else gpu):
        return jnp.matmul(h, W_h, precision=exact)
    three_tf32 = jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3
    return jnp.matmul(h, W_h, precision=three_tf32, preferred_element_type=h.dtype)


def dense_micro_ticks(
    gate_u: Array,
    gate_v: Array,
    W_h: Array,
    h: Array,
    c: Array,
    *,
    num_micro_ticks: int,
    tanh: Callable[[Array], Array],
    recurrent: Callable[[Array, Array], Array],
) -> tuple[Array, Array]:
    """Every micro tick of a dense layer in XLA ops: gate_u [A, 4H], gate_v [B, 4H] (bias in), W_h [H, 4H],
    all with σ folded into tanh (`gate_weights_for_tanh`); h, c [A, B, H]. The gate input is shared by all
    micro ticks; gates (i, g, f, o) are one tanh over the 4H channels.

    Differentiated, it uses the hand-written VJP below (`_micro_ticks_backward`), equal to autodiff's to float32
    rounding (tests/learners/vsml/test_vsml.py) and 2.2× faster on XLA:CPU for 784 × 10, two ticks (autodiff
    transposes the four gate slices into four padded [A, B, 4H] arrays and relays the sum out for h^T dz). A
    custom VJP has no forward mode: `jax.jvp` through it is an error."""
    return _micro_ticks(num_micro_ticks, tanh, recurrent, gate_u, gate_v, W_h, h, c)


def _ticks_with_residuals(
    num_micro_ticks: int,
    tanh: Callable[[Array], Array],
    recurrent: Callable[[Array, Array], Array],
    gate_u: Array,
    gate_v: Array,
    W_h: Array,
    h: Array,
    c: Array,
) -> tuple[tuple[Array, Array], list[tuple[Array, Array, Array, Array]]]:
    """(h, c) after the micro ticks, and per tick (h, c) before it, its gates' tanh t and the new tanh(c)."""
    gate_in = gate_u[:, None, :] + gate_v[None, :, :]  # [A, B, 4H]
    saved = []
    for _ in range(num_micro_ticks):
        t = tanh(recurrent(h, W_h) + gate_in)
        i_gate, g_cand, f_gate, o_gate = _gates(t)
        c_new = f_gate * c + i_gate * g_cand
        tanh_c = tanh(c_new)
        saved.append((h, c, t, tanh_c))
        h, c = o_gate * tanh_c, c_new
    return (h, c), saved


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _micro_ticks(num_micro_ticks, tanh, recurrent, gate_u, gate_v, W_h, h, c):  # noqa: ANN001, ANN202
    return _ticks_with_residuals(num_micro_ticks, tanh, recurrent, gate_u, gate_v, W_h, h, c)[0]


def _micro_ticks_forward(num_micro_ticks, tanh, recurrent, gate_u, gate_v, W_h, h, c):  # noqa: ANN001, ANN202
    out, saved = _ticks_with_residuals(num_micro_ticks, tanh, recurrent, gate_u, gate_v, W_h, h, c)
    return out, (W_h, saved)


def _micro_ticks_backward(num_micro_ticks, tanh, recurrent, residuals, cotangents):  # noqa: ANN001, ANN202
    """Back through the ticks: tanh' = 1 − t² (as `fast_tanh`'s JVP), the four gates' gradients written as one
    concatenation, dh = dz·W_hᵀ at the forward's precision, dW_h = Σ h ⊗ dz and the gate input's gradient summed
    once over the ticks, then over b (gate_u) and a (gate_v)."""
    W_h, saved = residuals
    dh, dc = cotangents
    dW = jnp.zeros_like(W_h)
    d_gate_in = None
    for h, c, t, tanh_c in reversed(saved):
        i_gate, g_cand, f_gate, o_gate = _gates(t)
        dc_total = dc + dh * o_gate * (1.0 - tanh_c * tanh_c)
        dt = jnp.concatenate(
            [0.5 * dc_total * g_cand, dc_total * i_gate, 0.5 * dc_total * c, 0.5 * dh * tanh_c], axis=-1
        )
        dz = dt * (1.0 - t * t)
        dc = dc_total * f_gate
        dh = recurrent(dz, W_h.T)
        dW = dW + jnp.einsum("abh,abg->hg", h, dz, precision=jax.lax.Precision.HIGHEST)
        d_gate_in = dz if d_gate_in is None else d_gate_in + dz
    return jnp.sum(d_gate_in, axis=1), jnp.sum(d_gate_in, axis=0), dW, dh, dc


_micro_ticks.defvjp(_micro_ticks_forward, _micro_ticks_backward)


def _gates(t: Array) -> tuple[Array, Array, Array, Array]:
    """(i, g, f, o) from the tanh t [..., 4H] of the gate pre-activations: σ gates as ½ + ½·tanh. Slices: with
    jnp.split the forward step measured ~4% slower on XLA:CPU (interleaved, 784 → 10 and 784 → 32 → 10), though
    autodiff of split (a concatenation, not four pads) was 1.5–1.6× faster than of slices; the VJP above is
    1.7–1.9× faster than autodiff of slices (784 → 10 meta-gradient, same run)."""
    H = t.shape[-1] // 4
    return (
        0.5 + 0.5 * t[..., 0:H],
        t[..., H : 2 * H],
        0.5 + 0.5 * t[..., 2 * H : 3 * H],
        0.5 + 0.5 * t[..., 3 * H :],
    )


def mean_layer_norm_message(
    h: Array, W: Array, b: Array, scale: Array, offset: Array, axis: int | tuple[int, ...]
) -> Array:
    """mean over `axis` of LayerNorm(h W + b)·scale + offset, per synapse h [..., H] -> [..., M] (the axes
    removed), without forming the normalised messages.

    LayerNorm's centring is linear, so it folds into the messenger: z = h W_c + b_c with W_c, b_c the column-
    and entry-centred W, b. Only the per-synapse 1/σ = rsqrt(mean(z²) + ε) is nonlinear, and the mean of
    z·(1/σ) over synapses is (Σ h/σ) W_c + (Σ 1/σ) b_c divided by their count. Measured on XLA:CPU: the
    literal form spent ~1.1 of ~4.4 ms of the conv network's step in its three small reductions per synapse.
    """
    W_c = W - jnp.mean(W, axis=1, keepdims=True)
    b_c = b - jnp.mean(b)
    z = exact_matmul(h, W_c) + lead_axes(b_c, h.ndim)
    inv_std = jax.lax.rsqrt(jnp.mean(z * z, axis=-1) + LAYER_NORM_EPS)  # [...]
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    count = math.prod(h.shape[a] for a in axes)
    weighted = exact_matmul(jnp.sum(inv_std[..., None] * h, axis=axes), W_c)  # [..., M]
    total = weighted + jnp.sum(inv_std, axis=axes)[..., None] * lead_axes(b_c, weighted.ndim)
    return lead_axes(scale, total.ndim) * (total / count) + lead_axes(offset, total.ndim)


def exact_matmul(a: Array, b: Array) -> Array:
    """a @ b in full float32 on every backend. JAX's default precision lets GPUs use TF32 (~1e-3 relative).
    The products outside the recurrent one are per unit, or per synapse once per tick (LayerNorm's messages:
    H·M = 128 multiply-adds against the micro ticks' 2 × 1,024), so exactness costs little there."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def lead_axes(v: Array, ndim: int) -> Array:
    """A vector reshaped to broadcast over `ndim - 1` leading axes (explicit: rank promotion is an error)."""
    return jnp.reshape(v, (1,) * (ndim - 1) + v.shape)


def gate_weights_for_tanh(W: Array, b: Array) -> tuple[Array, Array]:
    """Rewrite the LSTM weights so one tanh gives all gates: σ(z) = ½ + ½ tanh(z/2).

    The sigmoid gates' columns (i, f, o) are halved and the ±5 offsets folded into the bias; the candidate g
    keeps its columns. Cheap: it touches 2.1k numbers once per layer call.
    """
    H = W.shape[-1] // 4
    offsets = jnp.concatenate(
        [jnp.full((H,), INPUT_OFFSET), jnp.zeros((H,)), jnp.full((H,), FORGET_OFFSET), jnp.zeros((H,))]
    ).astype(W.dtype)
    col_scale = jnp.concatenate([jnp.full((H,), 0.5), jnp.ones((H,)), jnp.full((2 * H,), 0.5)]).astype(
        W.dtype
    )
    return W * col_scale[None, :], (b + offsets) * col_scale


def count_parameters(meta: VSMLMeta) -> int:
    """Number of meta-parameters (2,384 per default set, 2,416 with LayerNorm)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(meta))
