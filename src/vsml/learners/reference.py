"""Slow, literal reference formulations, kept only as test oracles for the fast paths.

VSML: written straight from spec vsml.md §1.3–1.10, one sub-RNN application per synapse (vmapped over a and b),
messages computed per synapse and then averaged, every write performed (including the dead ones), the input
re-injected on the reverse tick, sigmoid as `jax.nn.sigmoid`. No factoring, no folding, no skipped work.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vsml.learners.base import Array
from vsml.learners.vsml import VSML, SubRNNParams, VSMLMeta


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

    `initial_cells` gives each layer's initial cell state [A_k, B_k, H] (zeros when None); h starts at zero.
    """
    M, H = model.msg_size, model.state_size
    C = ys.shape[-1]
    sizes = [int(jnp.size(xs[0])), *model.hidden_sizes, C]
    L = len(sizes) - 1
    h = [jnp.zeros((sizes[k], sizes[k + 1], H)) for k in range(L)]
    c = (
        [jnp.zeros((sizes[k], sizes[k + 1], H)) for k in range(L)]
        if initial_cells is None
        else list(initial_cells)
    )
    U = [jnp.zeros((sizes[k], M)) for k in range(L)]  # incoming forward message of every layer
    V = [jnp.zeros((sizes[k + 1], M)) for k in range(L)]  # incoming backward message of every layer
    e = jnp.zeros((C, 2))

    def inject_x(x: Array) -> Array:
        return jnp.zeros((sizes[0], M)).at[:, 0].set(jnp.reshape(x, (-1,)))

    def inject_e(e: Array) -> Array:
        return jnp.zeros((C, M)).at[:, 0:2].set(e)

    def tick(x: Array, e: Array, reverse: bool) -> Array | None:
        U[0] = inject_x(x)
        V[L - 1] = inject_e(e)
        logits = None
        for k in reversed(range(L)) if reverse else range(L):
            p = meta.sets[model.param_set_index(k, reverse)]
            for _ in range(model.num_micro_ticks):  # the same U[k], V[k]; only the state evolves
                fwd_out, bwd_out, h[k], c[k] = dense_layer_op(p, U[k], V[k], h[k], c[k], model.layer_norm)
            if k > 0:
                V[k - 1] = bwd_out
            if k < L - 1:
                U[k + 1] = fwd_out
            else:
                raw = fwd_out[:, model.output_idx]
                logits = model.tanh_bound * jnp.tanh(raw / model.tanh_bound)
        return logits

    outputs = []
    for t in range(xs.shape[0]):
        logits = tick(xs[t], e, reverse=False)
        outputs.append(logits)
        g = jax.nn.softmax(logits) - ys[t]
        e = jnp.stack([g, ys[t] if model.feed_label else jnp.zeros_like(ys[t])], axis=-1)
        if model.backward_pass:
            tick(xs[t], e, reverse=True)
            e = jnp.zeros_like(e)
    return jnp.stack(outputs)
