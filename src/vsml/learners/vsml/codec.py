"""How backprop sits in a VSML network: the codec and the constructed V_M of learning-algorithm cloning
(Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905, Sec. 3.2 / 4.1; spec vsml.md §4).

`vsml.meta.cloning` regresses a student's per-synapse messages and read-out onto online backprop of the
mean-aggregated tanh-input network (its docstring has the teacher's equations); this module is VSML as that
student, all that cloning knows of VSML (`VSMLCloneStudent`).

**VSML form.** `backward_pass` and `separate_backward_rnn` (spec §1.6 step 5): the forward tick (parameter set
0) only reads the weights and sends tanh(x)·w + b on forward channels 0 and 1 (channel 1 is the logit read at
the top, channel 0 what the next layer reads as its input); the reverse tick (set 1) sends the backward message
on channel 0 and applies the update. Feedback channel 1 (the label) is unused (`feed_label` off).

**Codec.** A synapse's teacher weight and bias share (w, b) sit in its LSTM cell state, c = [w, b] @ encoder
(h = 0), and are read back as [w, b] = c @ readout (`CloneCodec`); both are learned with V_M.

**Initialisation.** `random` (Haiku default V_M, one weight cell and one bias cell at the teacher's scales) or
`constructed`: a V_M derived by hand that implements the teacher up to O(ε²) (`constructed_backprop`), at the
scales κ (`weight_scale`), `bias_scale` and ε (`probe`) of the config's `teacher` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from vsml.learners.base import Array
from vsml.learners.vsml.cell import FORGET_OFFSET, INPUT_OFFSET, SubRNNParams, VSMLMeta
from vsml.learners.vsml.learner import VSML

GATE_SATURATION = 20.0  # a pre-activation whose sigmoid is 1 (or 0) in float32


class CodecScales(Protocol):
    """The teacher's learning rate and the codec's scales (`vsml.meta.cloning.CloneTeacher` is one)."""

    @property
    def learning_rate(self) -> float: ...  # α

    @property
    def weight_scale(self) -> float: ...  # κ: a weight sits in the cells as ±w / (2κ)

    @property
    def bias_scale(self) -> float: ...  # a bias share b sits in one cell as b / bias_scale

    @property
    def probe(self) -> float: ...  # ε of the constructed backward message


class CloneCodec(NamedTuple):
    """How the teacher's (w, b) of one synapse sit in its LSTM cell state c (h starts at 0)."""

    encoder: Array  # [2, H]: c = [w, b] @ encoder
    readout: Array  # [H, 2]: [w, b] = c @ readout


class CloneParams(NamedTuple):
    """What cloning trains: V_M (forward set, reverse set) and the codec."""

    meta: VSMLMeta
    codec: CloneCodec


def clone_learner(num_micro_ticks: int = 2, hidden_sizes: tuple[int, ...] = ()) -> VSML:
    """The VSML form a cloned V_M runs in (module docstring)."""
    return VSML(
        hidden_sizes=tuple(hidden_sizes),
        num_micro_ticks=num_micro_ticks,
        backward_pass=True,
        separate_backward_rnn=True,
        feed_label=False,
    )


def check_clone_learner(vsml: VSML) -> None:
    """A clear error for a VSML whose form cannot run a cloned V_M."""
    wrong = {
        "backward_pass": (vsml.backward_pass, True),
        "separate_backward_rnn": (vsml.separate_backward_rnn, True),
        "layerwise_rnns": (vsml.layerwise_rnns, False),
        "layer_norm": (vsml.layer_norm, False),
        "conv_layers": (vsml.conv_layers, ()),
        "inner_batch": (vsml.inner_batch, 1),
    }
    bad = [f"{k}={have!r} (needs {want!r})" for k, (have, want) in wrong.items() if have != want]
    if bad:
        raise ValueError(
            "a cloned V_M runs in VSML with a backward pass and its own reverse parameter set "
            f"(use codec.clone_learner); this learner has {', '.join(bad)}"
        )


# ----- the constructed V_M --------------------------------------------------------------------------------------

# Cells of the construction: the weight is stored twice, as a positive copy p = w/(2κ) and a negative copy
# n = −w/(2κ), w = κ(p − n); each copy exists once per output it feeds (so each cell has its own output gate).
_P_FWD_PLUS, _P_FWD_MINUS, _N_FWD_PLUS, _N_FWD_MINUS = 0, 1, 2, 3  # forward: o = σ(±2x)
_P_BWD_PLUS, _P_BWD_MINUS, _N_BWD_PLUS, _N_BWD_MINUS = 4, 5, 6, 7  # backward: o = σ(2x ± εδ)
_BIAS = 8
# The backward copies must send δ through the weight *before* this step's update (the teacher's chain rule):
# the reverse tick writes their share of the update into two pending cells instead, which the next forward
# tick adds to them (through h) and clears. Reading the updated weight instead costs an error
# −α(1 − tanh²x) tanh(x) δ² per synapse, as large as the message itself early in training, and a deep clone
# then falls far behind its teacher (measured: README, "Learning-algorithm cloning").
_PENDING_P, _PENDING_N = 9, 10
_POSITIVE = (_P_FWD_PLUS, _P_FWD_MINUS, _P_BWD_PLUS, _P_BWD_MINUS)
_NEGATIVE = (_N_FWD_PLUS, _N_FWD_MINUS, _N_BWD_PLUS, _N_BWD_MINUS)
_UPDATED_NOW = {1: (_P_FWD_PLUS, _P_FWD_MINUS, _PENDING_P), -1: (_N_FWD_PLUS, _N_FWD_MINUS, _PENDING_N)}
_ABSORBS = ((_P_BWD_PLUS, _PENDING_P), (_P_BWD_MINUS, _PENDING_P), (_N_BWD_PLUS, _PENDING_N),
            (_N_BWD_MINUS, _PENDING_N))  # fmt: skip


def constructed_backprop(vsml: VSML, teacher: CodecScales) -> CloneParams:
    """A V_M that implements the teacher by construction, using three identities of the sigmoid:

    σ(2x) − σ(−2x) = tanh(x);   σ(2x + εδ) − σ(2x − εδ) = ½εδ(1 − tanh²x) + O(ε³δ³);   tanh(c) = c + O(c³).

    Forward set: output gates σ(±2x) on copies of the weight give tanh(x)·w, the bias cell (o = 1) adds b; the
    forward copies are frozen (f = 1, g = 0), the backward copies add the pending cells' h (their share of the
    last update) in the first micro tick, which clears the pending cells (f = 0). Reverse set: input gates
    σ(2x) on positive and σ(−2x) on negative forward copies and pending cells with candidate
    g = −α δ / (κ·ticks) move p − n by −α tanh(x) δ / κ; output gates σ(2x ± εδ) on the backward copies,
    which still hold the weight before the update, give (1 − tanh²x)·w·δ. Rows of the LSTM matrix are
    (u, v, h); h is read only from the pending cells (o = 1), so later micro ticks add nothing more.
    """
    check_clone_learner(vsml)
    M, H, ticks = vsml.msg_size, vsml.state_size, vsml.num_micro_ticks
    if H < _PENDING_N + 1:
        raise ValueError(f"the constructed V_M needs state_size >= {_PENDING_N + 1}, got {H}")
    kappa, kappa_b, alpha, eps = (
        teacher.weight_scale,
        teacher.bias_scale,
        teacher.learning_rate,
        teacher.probe,
    )
    u0, v0, h0 = 0, M, 2 * M  # rows of the input channel 0, the backward channel 0 and h
    gate = {"i": 0, "g": H, "f": 2 * H, "o": 3 * H}

    def empty() -> tuple[np.ndarray, np.ndarray]:
        W, b = np.zeros((2 * M + H, 4 * H)), np.zeros(4 * H)
        b[gate["f"] : gate["f"] + H] = GATE_SATURATION - FORGET_OFFSET  # f = 1: the state is a memory
        return W, b

    # forward set: freeze the state (g = 0), read it through output gates
    Wf, bf = empty()
    for cell, sign in ((_P_FWD_PLUS, 2), (_P_FWD_MINUS, -2), (_N_FWD_PLUS, 2), (_N_FWD_MINUS, -2)):
        Wf[u0, gate["o"] + cell] = sign
    bf[gate["o"] + _BIAS] = GATE_SATURATION
    for cell, pending in _ABSORBS:  # i = 1, g = tanh(h_pending) ≈ the pending share (|h| ≤ 1e-3)
        bf[gate["i"] + cell] = GATE_SATURATION - INPUT_OFFSET
        Wf[h0 + pending, gate["g"] + cell] = 1.0
    for pending in (_PENDING_P, _PENDING_N):
        bf[gate["f"] + pending] = -GATE_SATURATION - FORGET_OFFSET  # f = 0: cleared once absorbed
    fwd_W = np.zeros((H, M))
    for channel in (0, 1):  # channel 0 feeds the next layer, channel 1 is the logit read at the top
        fwd_W[[_P_FWD_PLUS, _P_FWD_MINUS, _N_FWD_PLUS, _N_FWD_MINUS], channel] = [
            kappa,
            -kappa,
            -kappa,
            kappa,
        ]
        fwd_W[_BIAS, channel] = kappa_b

    # reverse set: update through input gates, send the backward message through output gates
    Wr, br = empty()
    for sign, cells in _UPDATED_NOW.items():
        for cell in cells:
            Wr[u0, gate["i"] + cell] = 2 * sign
            br[gate["i"] + cell] = -INPUT_OFFSET  # i = σ(±2x) exactly
            Wr[v0, gate["g"] + cell] = -alpha / (kappa * ticks)  # tanh(g) ≈ g: |g| ≤ 1e-3
    for pending in (_PENDING_P, _PENDING_N):
        br[gate["o"] + pending] = GATE_SATURATION  # h = tanh(c): what the next forward tick adds
    br[gate["i"] + _BIAS] = GATE_SATURATION - INPUT_OFFSET  # i = 1
    Wr[v0, gate["g"] + _BIAS] = -alpha / (kappa_b * ticks)
    for cell, sign in ((_P_BWD_PLUS, 1), (_P_BWD_MINUS, -1), (_N_BWD_PLUS, 1), (_N_BWD_MINUS, -1)):
        Wr[u0, gate["o"] + cell] = 2
        Wr[v0, gate["o"] + cell] = sign * eps
    bwd_W = np.zeros((H, M))
    bwd_W[[_P_BWD_PLUS, _P_BWD_MINUS, _N_BWD_PLUS, _N_BWD_MINUS], 0] = (
        np.array([1, -1, -1, 1]) * 2 * kappa / eps
    )

    zeros_M = np.zeros(M)
    forward = SubRNNParams(Wf, bf, fwd_W, zeros_M, np.zeros((H, M)), zeros_M)
    reverse = SubRNNParams(Wr, br, np.zeros((H, M)), zeros_M, bwd_W, zeros_M)
    encoder = np.zeros((2, H))
    encoder[0, list(_POSITIVE)] = 1 / (2 * kappa)
    encoder[0, list(_NEGATIVE)] = -1 / (2 * kappa)
    encoder[1, _BIAS] = 1 / kappa_b
    readout = np.zeros((H, 2))  # from the forward copies: the backward ones lag by one tick
    readout[[_P_FWD_PLUS, _P_FWD_MINUS], 0] = kappa / 2
    readout[[_N_FWD_PLUS, _N_FWD_MINUS], 0] = -kappa / 2
    readout[_BIAS, 1] = kappa_b
    as32 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)  # noqa: E731
    return as32(CloneParams(VSMLMeta((forward, reverse)), CloneCodec(encoder, readout)))


def random_clone_params(vsml: VSML, key: Array, teacher: CodecScales, codec: str = "one_cell") -> CloneParams:
    """Haiku-default V_M (spec §1.3) and a codec at the teacher's scales: `one_cell`, one weight cell and one
    bias cell; `distributed`, w/κ and b/bias_scale along random directions over all H cells (N(0, 1/H)
    entries), read back by the pseudo-inverse, so every cell holds a share of both (any cell's output gate can
    then gate the weight)."""
    check_clone_learner(vsml)
    H = vsml.state_size
    scales = jnp.array([teacher.weight_scale, teacher.bias_scale])
    if codec == "one_cell":
        directions = jnp.eye(2, H)
    elif codec == "distributed":
        directions = jax.random.normal(jax.random.fold_in(key, 1), (2, H)) / np.sqrt(H)
    else:
        raise ValueError(f"codec must be one_cell or distributed, got {codec!r}")
    encoder = directions / scales[:, None]
    readout = jnp.linalg.pinv(directions) * scales[None, :]
    return CloneParams(vsml.init_meta(key), CloneCodec(encoder, readout))


# ----- the student's trace --------------------------------------------------------------------------------------


def synapse_trace(
    vsml: VSML, params: CloneParams, w0: Array, b0: Array, x: Array, stale: Array, delta: Array, upper: Array
) -> tuple[Array, ...]:
    """N per-synapse histories (`vsml.meta.cloning.SynapseHistories`: w0, b0 [N]; x, stale, delta [N, T];
    upper [N]) run through the VSML layer op itself (`VSML.dense_layer`, all micro ticks), one synapse per layer
    (A = B = 1, so the means over synapses are the synapse's own messages). Returns the fields of
    `vsml.meta.cloning.SynapseTrace` in order: fwd, bwd [N, T, M]; w, b, w_mid, b_mid, w_next, b_next [N, T]."""
    M = vsml.msg_size
    forward_set, reverse_set = params.meta.sets
    num = w0.shape[0]
    c0 = jnp.stack([w0, b0], axis=-1) @ params.codec.encoder  # [N, H]

    def tick(p: SubRNNParams, u: Array, v: Array, h: Array, c: Array, forward: bool) -> tuple[Array, ...]:
        fwd, bwd, h, c = vsml.dense_layer(
            p, u[None], v[None], h[None, None], c[None, None],
            want_fwd=forward, want_bwd=not forward, fwd_channels=None,
        )  # fmt: skip
        return (fwd if forward else bwd)[0], h[0, 0], c[0, 0]

    def channel0(values: Array) -> Array:
        return jnp.concatenate([values[:, None], jnp.zeros((num, M - 1), values.dtype)], axis=-1)

    def step(carry: tuple[Array, Array], inputs: tuple[Array, Array, Array]) -> tuple[tuple, tuple]:
        h, c = carry
        x_t, stale_t, delta_t = inputs
        u = channel0(x_t).at[:, 1].set(jnp.where(upper, x_t, 0.0))
        before = c @ params.codec.readout
        fwd, h, c = jax.vmap(lambda *a: tick(forward_set, *a, True))(u, channel0(stale_t), h, c)
        mid = c @ params.codec.readout
        bwd, h, c = jax.vmap(lambda *a: tick(reverse_set, *a, False))(u, channel0(delta_t), h, c)
        after = c @ params.codec.readout
        return (h, c), (fwd, bwd, before, mid, after)

    inputs = (x.T, stale.T, delta.T)
    _, (fwd, bwd, before, mid, after) = jax.lax.scan(step, (jnp.zeros_like(c0), c0), inputs)
    fwd, bwd = jnp.swapaxes(fwd, 0, 1), jnp.swapaxes(bwd, 0, 1)
    before, mid, after = (jnp.swapaxes(r, 0, 1) for r in (before, mid, after))  # [N, T, 2]
    return (fwd, bwd, *(r[..., i] for r in (before, mid, after) for i in (0, 1)))


@dataclass(frozen=True)
class VSMLCloneStudent:
    """VSML as the student of `vsml.meta.cloning` (its `CloneStudent` protocol): a VSML of the cloned form
    (`clone_learner`) and this module's codec."""

    learner: VSML

    def __post_init__(self) -> None:
        check_clone_learner(self.learner)

    @property
    def msg_size(self) -> int:
        return self.learner.msg_size

    def constructed_params(self, teacher: CodecScales) -> CloneParams:
        return constructed_backprop(self.learner, teacher)

    def random_params(self, key: Array, teacher: CodecScales, codec: str = "one_cell") -> CloneParams:
        return random_clone_params(self.learner, key, teacher, codec)

    def codec_mask(self, params: CloneParams) -> CloneParams:
        """True on the codec's leaves, False on V_M's."""
        return CloneParams(
            jax.tree.map(lambda _: False, params.meta), jax.tree.map(lambda _: True, params.codec)
        )

    def trace(self, params: CloneParams, *histories: Array) -> tuple[Array, ...]:
        """`synapse_trace` of the histories' arrays (w0, b0, x, stale, delta, upper)."""
        return synapse_trace(self.learner, params, *histories)
