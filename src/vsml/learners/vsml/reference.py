"""The literal VSML reference (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905): slow formulations kept
only as test oracles for the fast paths (`learner.py`, `conv.py`, `cell.py`).

Written straight from spec vsml.md §1.3–1.10, one sub-RNN application per synapse (vmapped over a and b),
messages computed per synapse and then averaged, every write performed (including the dead ones), the input
re-injected on the reverse tick, sigmoid as `jax.nn.sigmoid`. No factoring, no folding, no skipped work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from vsml.learners.base import Array, TaskSpec
from vsml.learners.vsml.cell import LayerPlan, SubRNNParams, VSMLMeta

if TYPE_CHECKING:  # only the settings are read; at run time this module depends on the cell types alone
    from vsml.learners.vsml.learner import VSML


def sub_rnn_apply(
    p: SubRNNParams, u: Array, v: Array, h: Array, c: Array, layer_norm: bool
) -> tuple[Array, Array, Array, Array]:
    """One application (u [M], v [M], h [H], c [H]) -> (m_fwd [M], m_bwd [M], h' [H], c' [H]) (spec §1.3)."""
    H = h.shape[-1]
    z = jnp.concatenate([u, v, h]) @ p.lstm_W + p.lstm_b
    z_i, z_g, z_f, z_o = z[0:H], z[H : 2 * H], z[2 * H : 3 * H], z[3 * H : 4 * H]
    f = jax.nn.sigmoid(z_f + 5.0)
    i = jax.nn.sigmoid(z_i - 5.0)
    c_new = f * c + i * jnp.tanh(z_g)
    h_new = jax.nn.sigmoid(z_o) * jnp.tanh(c_new)
    m_fwd = h_new @ p.fwd_W + p.fwd_b
    m_bwd = h_new @ p.bwd_W + p.bwd_b
    if layer_norm:
        m_fwd = _layer_norm(m_fwd, p.fwd_ln_scale, p.fwd_ln_offset)
        m_bwd = _layer_norm(m_bwd, p.bwd_ln_scale, p.bwd_ln_offset)
    return m_fwd, m_bwd, h_new, c_new


def _layer_norm(m: Array, scale: Array, offset: Array) -> Array:
    mean = jnp.mean(m)
    var = jnp.mean((m - mean) ** 2)
    return scale * (m - mean) / jnp.sqrt(var + 1e-5) + offset


def dense_layer_op(
    p: SubRNNParams, U: Array, V: Array, h: Array, c: Array, layer_norm: bool
) -> tuple[Array, Array, Array, Array]:
    """Every synapse (a, b) applies the sub-RNN to (U[a], V[b], h[a,b], c[a,b]); messages averaged (§1.4)."""
    per_b = jax.vmap(lambda u, v, hh, cc: sub_rnn_apply(p, u, v, hh, cc, layer_norm), in_axes=(None, 0, 0, 0))
    per_ab = jax.vmap(per_b, in_axes=(0, None, 0, 0))
    m_fwd, m_bwd, h_new, c_new = per_ab(U, V, h, c)  # m_*: [A, B, M]
    return jnp.mean(m_fwd, axis=0), jnp.mean(m_bwd, axis=1), h_new, c_new


def vsml_reference_episode(
    model: VSML,
    meta: VSMLMeta,
    xs: Array,
    ys: Array,
    initial_cells: list[Array] | None = None,
) -> Array:
    """Literal episode loop of spec §1.10 in Python (no scan). xs [T, ...], ys one-hot [T, C] -> logits [T, C].

    With `model.inner_batch` B > 1: xs [T, B, ...], ys [T, B, C] -> logits [T, B, C]; every example keeps its
    own copy of everything, and before each step the first H/2 units of h and c are set to their batch mean
    (spec §1.8). `initial_cells` gives each layer's initial cell state [A_k, B_k, H] (zeros when None), the
    same for every example; h starts at zero.
    """
    batch = model.inner_batch
    if batch == 1:
        xs, ys = xs[:, None], ys[:, None]
    M, H = model.msg_size, model.state_size
    C = ys.shape[-1]
    plans = model.layer_plans(TaskSpec(tuple(xs.shape[2:]), C))
    L = len(plans)
    zero_cells = [jnp.zeros((*plan.state_shape, H)) for plan in plans]
    # Per example n: h[n][k], c[n][k], U[n][k], V[n][k] (incoming fwd/bwd message of every layer), e[n].
    h = [[jnp.zeros((*plan.state_shape, H)) for plan in plans] for _ in range(batch)]
    c = [list(zero_cells if initial_cells is None else initial_cells) for _ in range(batch)]
    U = [[jnp.zeros((*plan.in_shape, M)) for plan in plans] for _ in range(batch)]
    V = [[jnp.zeros((*plan.out_shape, M)) for plan in plans] for _ in range(batch)]
    e = [jnp.zeros((C, 2)) for _ in range(batch)]

    def inject_x(x: Array) -> Array:
        return jnp.zeros((*plans[0].in_shape, M)).at[..., 0].set(jnp.reshape(x, plans[0].in_shape))

    def layer_op(plan: LayerPlan, p: SubRNNParams, u: Array, v: Array, hh: Array, cc: Array):
        if plan.kind == "dense":
            return dense_layer_op(p, u, v, hh, cc, model.layer_norm)
        return conv_layer_op(p, u, v, hh, cc, plan.stride, model.layer_norm, model.authors_stride_mask_bug)

    def inject_e(e: Array) -> Array:
        return jnp.zeros((C, M)).at[:, 0:2].set(e)

    def tick(n: int, x: Array, e: Array, reverse: bool) -> Array | None:
        U[n][0] = inject_x(x)
        V[n][L - 1] = inject_e(e)
        logits = None
        for k in reversed(range(L)) if reverse else range(L):
            p = meta.sets[model.param_set_index(k, reverse)]
            for _ in range(model.num_micro_ticks):  # the same U, V; only the state evolves
                fwd_out, bwd_out, h[n][k], c[n][k] = layer_op(plans[k], p, U[n][k], V[n][k], h[n][k], c[n][k])
            if k > 0:
                V[n][k - 1] = jnp.reshape(
                    bwd_out, V[n][k - 1].shape
                )  # conv <-> dense: units flattened in C order
            if k < L - 1:
                U[n][k + 1] = jnp.reshape(fwd_out, U[n][k + 1].shape)
            else:
                raw = fwd_out[:, model.output_idx]
                logits = model.tanh_bound * jnp.tanh(raw / model.tanh_bound)
        return logits

    def merge_first_half(states: list[list[Array]]) -> None:  # spec §1.8
        for k in range(L):
            shared = sum(states[n][k][..., : H // 2] for n in range(batch)) / batch
            for n in range(batch):
                states[n][k] = states[n][k].at[..., : H // 2].set(shared)

    outputs = []
    for t in range(xs.shape[0]):
        if batch > 1:
            merge_first_half(h)
            merge_first_half(c)
        step_logits = []
        for n in range(batch):
            logits = tick(n, xs[t, n], e[n], reverse=False)
            step_logits.append(logits)
            g = (jax.nn.softmax(logits) - ys[t, n]) / batch  # gradient of the batch-mean cross-entropy
            e[n] = jnp.stack([g, ys[t, n] if model.feed_label else jnp.zeros_like(ys[t, n])], axis=-1)
            if model.backward_pass:
                tick(n, xs[t, n], e[n], reverse=True)
                e[n] = jnp.zeros_like(e[n])
        outputs.append(jnp.stack(step_logits))
    logits = jnp.stack(outputs)
    return logits[:, 0] if model.inner_batch == 1 else logits


def conv_layer_op(
    p: SubRNNParams,
    U: Array,
    V: Array,
    h: Array,
    c: Array,
    stride: int,
    layer_norm: bool,
    authors_stride_mask_bug: bool = False,
) -> tuple[Array, Array, Array, Array]:
    """One micro tick of the conv VSML layer (spec §1.5), literally: one sub-RNN application per
    (output position, kernel offset, channel pair), then the means.

    U [H_in, W_in, C_in, M], V [H_out, W_out, C_out, M], h, c [k, k, C_in, C_out, H] ->
    (fwd [H_out, W_out, C_out, M], bwd [H_in, W_in, C_in, M], h', c').
    """
    k = h.shape[0]
    pad = k // 2
    H_in, W_in = U.shape[0], U.shape[1]
    P, Q = V.shape[0], V.shape[1]
    U_pad = jnp.pad(U, ((pad, pad), (pad, pad), (0, 0), (0, 0)))  # SAME, zeros
    # Output p reads padded row p·s + j through kernel row j.
    rows = jnp.asarray([[pp * stride + j for j in range(k)] for pp in range(P)])  # [P, k]
    cols = jnp.asarray([[qq * stride + jj for jj in range(k)] for qq in range(Q)])  # [Q, k]
    u_read = U_pad[rows[:, None, :, None], cols[None, :, None, :]]  # [P, Q, k, k, C_in, M]

    apply = lambda u, v, hh, cc: sub_rnn_apply(p, u, v, hh, cc, layer_norm)
    per_co = jax.vmap(apply, in_axes=(None, 0, 0, 0))  # v = V[p, q, co], state[.., co]
    per_ci = jax.vmap(per_co, in_axes=(0, None, 0, 0))  # u = U_pad[.., ci], state[.., ci, :]
    per_l = jax.vmap(per_ci, in_axes=(0, None, 0, 0))
    per_j = jax.vmap(per_l, in_axes=(0, None, 0, 0))
    per_q = jax.vmap(per_j, in_axes=(0, 0, None, None))  # every position starts from the shared state
    per_pq = jax.vmap(per_q, in_axes=(0, 0, None, None))
    m_fwd, m_bwd, h_pos, c_pos = per_pq(u_read, V, h, c)  # [P, Q, k, k, C_in, C_out, ·]

    fwd = jnp.mean(jnp.mean(m_fwd, axis=4), axis=(2, 3))  # over ci (dense step), then over the offsets
    h_new, c_new = jnp.mean(h_pos, axis=(0, 1)), jnp.mean(c_pos, axis=(0, 1))  # over output positions
    bwd_dense = jnp.mean(m_bwd, axis=5)  # over co (dense step): [P, Q, k, k, C_in, M]

    def covering(n_in: int, n_out: int) -> tuple[Array, Array]:
        """For input index y and kernel offset j: the output index p with p·s + j = y + pad, and whether it exists."""
        src, ok = [], []
        for y in range(n_in):
            src_y, ok_y = [], []
            for j in range(k):
                ps = y + pad - j  # candidate output index × s
                exists = ps >= 0 and ps % stride == 0 and ps // stride < n_out
                if authors_stride_mask_bug:  # authors' test: ps < n_in // s instead of ps < n_in
                    exists = ps >= 0 and ps % stride == 0 and ps < n_in // stride
                src_y.append(min(max(ps, 0) // stride, n_out - 1))
                ok_y.append(exists)
            src.append(src_y)
            ok.append(ok_y)
        return jnp.asarray(src), jnp.asarray(ok)

    row_src, row_ok = covering(H_in, P)  # [H_in, k]
    col_src, col_ok = covering(W_in, Q)  # [W_in, k]
    offsets = jnp.arange(k)
    gathered = bwd_dense[
        row_src[:, None, :, None],
        col_src[None, :, None, :],
        offsets[None, None, :, None],
        offsets[None, None, None, :],
    ]  # [H_in, W_in, k, k, C_in, M]
    mask = jnp.logical_and(row_ok[:, None, :, None], col_ok[None, :, None, :])[:, :, :, :, None, None]
    bwd = jnp.mean(jnp.where(mask, gathered, 0.0), axis=(2, 3))  # masked offsets count in the mean
    return fwd, bwd, h_new, c_new
