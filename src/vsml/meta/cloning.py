"""Learning-algorithm cloning: a VSML V_M that runs online backpropagation in forward mode (spec vsml.md §4).

The paper (Sec. 3.2 / 4.1) optimises V_M by supervised regression so that the VSML RNN reproduces backprop; the
protocol is not public (spec §4.2 lists the unknowns). Our design, each choice a config option:

**Network cloned (the teacher).** VSML aggregates with a *mean* over synapses (spec §1.4), so the network it can
implement is the mean-aggregated one, with the nonlinearity on the input side (spec §4.1):

    z_b = mean_a tanh(x_a) w_ab + mean_a b_ab                      (forward, every layer)
    δ_b = softmax(z) − y at the top;  δ_a = mean_b (1 − tanh²(x_a)) w_ab δ_b   (reverse, layer below)
    w_ab ← w_ab − α tanh(x_a) δ_b;   b_ab ← b_ab − α δ_b             (update; the bias is shared per b)

This is exactly online backprop of that network up to a constant per-layer factor on δ (the mean over b where
the chain rule has a sum): online SGD with layer-wise learning rates. `learners`' plain SGD is not the same
parameterisation, so the SGD we compare with is this teacher, run from the same initial weights.

**VSML form.** `backward_pass` and `separate_backward_rnn` (spec §1.6 step 5): the forward tick (parameter set
0) only reads the weights and sends tanh(x)·w + b on forward channels 0 and 1 (channel 1 is the logit read at
the top, channel 0 what the next layer reads as its input); the reverse tick (set 1) sends the backward message
on channel 0 and applies the update. Feedback channel 1 (the label) is unused (`feed_label` off).

**Objective.** Regression on per-synapse histories of random tuples (x, δ, stale backward input, w, b),
`length` steps each, unrolled through both ticks with all micro ticks: the forward message, the backward
message, the state read-out (w, b) and its change per tick are regressed onto the teacher's, each error
divided by the scale of its target (weights up to |w| ≈ 300 occur: the mean over 784 inputs needs them).
The read-out and the encoder that writes given weights into a state (`CloneCodec`) are learned with V_M.

**Initialisation.** `random` (Haiku default V_M) or `constructed`: a V_M derived by hand that implements the
teacher up to O(ε²) (`constructed_backprop`). Both are then trained by gradients on the objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vsml.learners.base import Array
from vsml.learners.vsml.learner import FORGET_OFFSET, INPUT_OFFSET, VSML, SubRNNParams, VSMLMeta

CLONE_INITS = ("random", "constructed")
GATE_SATURATION = 20.0  # a pre-activation whose sigmoid is 1 (or 0) in float32


class CloneCodec(NamedTuple):
    """How the teacher's (w, b) of one synapse sit in its LSTM cell state c (h starts at 0)."""

    encoder: Array  # [2, H]: c = [w, b] @ encoder
    readout: Array  # [H, 2]: [w, b] = c @ readout


class CloneParams(NamedTuple):
    """What cloning trains: V_M (forward set, reverse set) and the codec."""

    meta: VSMLMeta
    codec: CloneCodec


@dataclass(frozen=True)
class CloneTeacher:
    """The backprop teacher (module docstring) and the scales of the constructed V_M."""

    learning_rate: float = 0.3  # α; 0.3 reached 91% (MNIST, 784-100-10) in one online pass
    # κ: a weight w sits in the cells as ±w / (2κ), read back through tanh(c) ≈ c. Mean-aggregated nets need
    # weights of several hundred; at κ = 2000 (and bias_scale 80) tanh's cubic term shrank them enough that
    # a deep clone fell behind its teacher after ~15,000 steps (Fashion-MNIST 784-32-10: 0.746 against 0.825);
    # at 6000 / 400 it stays with it (0.819). Larger is limited by float32: the per-step change of a cell.
    weight_scale: float = 6000.0
    bias_scale: float = 400.0  # a bias share b sits in one cell as b / bias_scale
    probe: float = 0.02  # ε of the constructed backward message (its error is O(ε²·δ²))

    def __post_init__(self) -> None:
        for name in ("learning_rate", "weight_scale", "bias_scale", "probe"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key teacher.{name} must be positive, got {getattr(self, name)}")


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
            f"(use cloning.clone_learner); this learner has {', '.join(bad)}"
        )


# ----- the teacher ----------------------------------------------------------------------------------------------


def teacher_synapse_step(
    w: Array, b: Array, x: Array, delta: Array, learning_rate: float
) -> tuple[Array, Array, Array, Array]:
    """One synapse of the teacher: (forward share, backward share, new w, new b) (module docstring)."""
    t = jnp.tanh(x)
    return t * w + b, (1.0 - t * t) * w * delta, w - learning_rate * t * delta, b - learning_rate * delta


# ----- the constructed V_M ----------------------------------------------------------------------------------------

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


def constructed_backprop(vsml: VSML, teacher: CloneTeacher = CloneTeacher()) -> CloneParams:
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


def random_clone_params(vsml: VSML, key: Array, teacher: CloneTeacher = CloneTeacher()) -> CloneParams:
    """Haiku-default V_M (spec §1.3) and a codec of one weight cell and one bias cell at the teacher's scales."""
    check_clone_learner(vsml)
    H = vsml.state_size
    encoder = jnp.zeros((2, H)).at[0, 0].set(1 / teacher.weight_scale).at[1, 1].set(1 / teacher.bias_scale)
    readout = jnp.zeros((H, 2)).at[0, 0].set(teacher.weight_scale).at[1, 1].set(teacher.bias_scale)
    return CloneParams(vsml.init_meta(key), CloneCodec(encoder, readout))


def init_clone_params(vsml: VSML, init: str, key: Array, teacher: CloneTeacher) -> CloneParams:
    if init == "constructed":
        return constructed_backprop(vsml, teacher)
    if init == "random":
        return random_clone_params(vsml, key, teacher)
    raise ValueError(f"config key init must be one of {', '.join(CLONE_INITS)}, got {init!r}")


# ----- per-synapse histories ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TupleDistribution:
    """Where the random per-synapse tuples come from (ranges seen when training MNIST-sized nets online)."""

    length: int = 8  # steps per history
    max_weight: float = 300.0  # |w|: half N(0, 2²), half log-uniform in [1, max_weight]
    bias_std: float = 3.0
    input_std: float = 2.0  # x: N(0, input_std²), a fifth uniform in ±max_input (hidden pre-activations)
    max_input: float = 12.0
    max_delta: float = 4.0  # |δ| log-uniform in [1e-4, max_delta], a tenth exactly 0
    upper_share: float = 0.5  # synapses above another VSML layer also see x on input channel 1

    def __post_init__(self) -> None:
        for name in ("length", "max_weight", "bias_std", "input_std", "max_input", "max_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key tuples.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.upper_share <= 1.0:
            raise ValueError(f"config key tuples.upper_share must be in [0, 1], got {self.upper_share}")


class SynapseHistories(NamedTuple):
    """N histories of T steps of one synapse each."""

    w0: Array  # [N] initial weight
    b0: Array  # [N] initial bias share
    x: Array  # [N, T] forward input (pre-activation of the unit below, or a pixel)
    stale: (
        Array  # [N, T] backward input during the forward tick (the previous reverse tick's, or 0 at the top)
    )
    delta: Array  # [N, T] error δ_b arriving in the reverse tick
    upper: Array  # [N] bool: x also arrives on input channel 1 (the layer below is VSML)


def sample_histories(key: Array, dist: TupleDistribution, num: int) -> SynapseHistories:
    """Random per-synapse histories (see `TupleDistribution`)."""
    keys = jax.random.split(key, 12)
    shape = (num, dist.length)
    big = jax.random.bernoulli(keys[0], 0.5, (num,))
    log_mag = jax.random.uniform(keys[1], (num,), minval=0.0, maxval=np.log(dist.max_weight))
    magnitude = jnp.where(big, jnp.exp(log_mag), 2.0 * jnp.abs(jax.random.normal(keys[2], (num,))))
    w0 = magnitude * jnp.where(jax.random.bernoulli(keys[3], 0.5, (num,)), 1.0, -1.0)
    b0 = dist.bias_std * jax.random.normal(keys[4], (num,))
    x = jnp.where(
        jax.random.bernoulli(keys[5], 0.2, shape),
        jax.random.uniform(keys[6], shape, minval=-dist.max_input, maxval=dist.max_input),
        dist.input_std * jax.random.normal(keys[7], shape),
    )

    def errors(key: Array) -> Array:
        k_mag, k_sign, k_zero = jax.random.split(key, 3)
        log_mag = jax.random.uniform(k_mag, shape, minval=np.log(1e-4), maxval=np.log(dist.max_delta))
        signed = jnp.exp(log_mag) * jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
        return jnp.where(jax.random.bernoulli(k_zero, 0.1, shape), 0.0, signed)

    top = jax.random.bernoulli(keys[8], 0.5, (num, 1))  # the top layer's forward tick sees zeroed feedback
    stale = jnp.where(top, 0.0, errors(keys[9]))
    upper = jax.random.bernoulli(keys[10], dist.upper_share, (num,))
    return SynapseHistories(w0, b0, x, stale, errors(keys[11]), upper)


class SynapseTrace(NamedTuple):
    """Per-step quantities of N synapse histories, [N, T] each (messages [N, T, M])."""

    fwd: Array  # forward message of the forward tick
    bwd: Array  # backward message of the reverse tick
    w: Array  # weight before the step (read out, for the student)
    b: Array
    w_mid: Array  # after the forward tick (must equal w)
    b_mid: Array
    w_next: Array  # after the reverse tick
    b_next: Array


def teacher_trace(histories: SynapseHistories, learning_rate: float, msg_size: int) -> SynapseTrace:
    """The teacher's trace of every history, messages laid out as the student must send them."""

    def step(carry: tuple[Array, Array], inputs: tuple[Array, Array]) -> tuple[tuple[Array, Array], tuple]:
        w, b = carry
        fwd, bwd, w_next, b_next = teacher_synapse_step(w, b, *inputs, learning_rate)
        return (w_next, b_next), (fwd, bwd, w, b, w_next, b_next)

    _, out = jax.lax.scan(step, (histories.w0, histories.b0), (histories.x.T, histories.delta.T))
    fwd, bwd, w, b, w_next, b_next = (o.T for o in out)
    zeros = jnp.zeros((*fwd.shape, msg_size - 2), fwd.dtype)
    fwd_msg = jnp.concatenate([fwd[..., None], fwd[..., None], zeros], axis=-1)
    bwd_msg = jnp.concatenate([bwd[..., None], jnp.zeros((*bwd.shape, msg_size - 1), bwd.dtype)], axis=-1)
    return SynapseTrace(fwd_msg, bwd_msg, w, b, w, b, w_next, b_next)


def student_trace(vsml: VSML, params: CloneParams, histories: SynapseHistories) -> SynapseTrace:
    """The same histories run through the VSML layer op itself (`VSML._layer`, all micro ticks), one synapse
    per layer (A = B = 1, so the means over synapses are the synapse's own messages)."""
    M = vsml.msg_size
    forward_set, reverse_set = params.meta.sets
    num = histories.w0.shape[0]
    c0 = jnp.stack([histories.w0, histories.b0], axis=-1) @ params.codec.encoder  # [N, H]

    def tick(p: SubRNNParams, u: Array, v: Array, h: Array, c: Array, forward: bool) -> tuple[Array, ...]:
        fwd, bwd, h, c = vsml._layer(
            p, u[None], v[None], h[None, None], c[None, None],
            want_fwd=forward, want_bwd=not forward, fwd_channels=None,
        )  # fmt: skip
        return (fwd if forward else bwd)[0], h[0, 0], c[0, 0]

    def channel0(values: Array) -> Array:
        return jnp.concatenate([values[:, None], jnp.zeros((num, M - 1), values.dtype)], axis=-1)

    def step(carry: tuple[Array, Array], inputs: tuple[Array, Array, Array]) -> tuple[tuple, tuple]:
        h, c = carry
        x, stale, delta = inputs
        u = channel0(x).at[:, 1].set(jnp.where(histories.upper, x, 0.0))
        before = c @ params.codec.readout
        fwd, h, c = jax.vmap(lambda *a: tick(forward_set, *a, True))(u, channel0(stale), h, c)
        mid = c @ params.codec.readout
        bwd, h, c = jax.vmap(lambda *a: tick(reverse_set, *a, False))(u, channel0(delta), h, c)
        after = c @ params.codec.readout
        return (h, c), (fwd, bwd, before, mid, after)

    inputs = (histories.x.T, histories.stale.T, histories.delta.T)
    _, (fwd, bwd, before, mid, after) = jax.lax.scan(step, (jnp.zeros_like(c0), c0), inputs)
    fwd, bwd = jnp.swapaxes(fwd, 0, 1), jnp.swapaxes(bwd, 0, 1)
    before, mid, after = (jnp.swapaxes(r, 0, 1) for r in (before, mid, after))  # [N, T, 2]
    return SynapseTrace(fwd, bwd, *(r[..., i] for r in (before, mid, after) for i in (0, 1)))


def cloning_losses(
    vsml: VSML, params: CloneParams, histories: SynapseHistories, learning_rate: float
) -> dict[str, Array]:
    """Mean squared errors of the student against the teacher, each divided by the scale of its target:
    forward message by 1 + |w| + |b|, backward message by (1 + |w|)(|δ| + 0.1), read-out by 1 + |w| (1 + |b|),
    read-out changes (per tick) by α(|δ| + 0.1). The sum is the cloning loss."""
    teacher = teacher_trace(histories, learning_rate, vsml.msg_size)
    student = student_trace(vsml, params, histories)
    weight_scale = 1.0 + jnp.abs(teacher.w)
    bias_scale = 1.0 + jnp.abs(teacher.b)
    step_scale = learning_rate * (jnp.abs(histories.delta) + 0.1)

    def mse(error: Array, scale: Array) -> Array:
        return jnp.mean(jnp.square(error / scale))

    return {
        "forward": mse(student.fwd - teacher.fwd, (weight_scale + jnp.abs(teacher.b))[..., None]),
        "backward": mse(
            student.bwd - teacher.bwd, (weight_scale * (jnp.abs(histories.delta) + 0.1))[..., None]
        ),
        "state": mse(student.w - teacher.w, weight_scale) + mse(student.b - teacher.b, bias_scale),
        "hold": mse(student.w_mid - student.w, step_scale) + mse(student.b_mid - student.b, step_scale),
        "update": mse((student.w_next - student.w_mid) - (teacher.w_next - teacher.w), step_scale)
        + mse((student.b_next - student.b_mid) - (teacher.b_next - teacher.b), step_scale),
    }


def cloning_loss(
    vsml: VSML, params: CloneParams, histories: SynapseHistories, learning_rate: float
) -> tuple[Array, dict[str, Array]]:
    parts = cloning_losses(vsml, params, histories, learning_rate)
    return sum(parts.values()), parts


def scale_by_magnitude(floor: float) -> optax.GradientTransformation:
    """Multiply each update by |θ| + floor: steps relative to a parameter's size. The constructed V_M mixes
    entries of 1e-5 and 1e5, so an absolute step size would wreck the small ones or never move the big ones."""

    def init(params: optax.Params) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: optax.Updates, state: optax.EmptyState, params: optax.Params | None = None) -> tuple:
        if params is None:
            raise ValueError("scale_by_magnitude needs the parameters")
        return jax.tree.map(lambda u, p: u * (jnp.abs(p) + floor), updates, params), state

    return optax.GradientTransformation(init, update)


# ----- training -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloneTrainConfig:
    steps: int = 150
    batch_size: int = 1024  # synapse histories per step
    # Adam, then each step scaled by |θ| + magnitude_floor (relative steps). From the construction, larger
    # steps first throw the loss up 1000-fold (1e-5 at κ = 6000 wrecked the backward message).
    learning_rate: float = 1e-7
    magnitude_floor: float = 1e-3
    heldout: int = 4096  # held-out histories (their own key) for the before/after report
    log_every: int = 25

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "learning_rate", "magnitude_floor", "heldout", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key train.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class CloneEvalConfig:
    """The free-running evaluation (`vsml.evaluation.clone`)."""

    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    architectures: tuple[tuple[int, ...], ...] = ((), (32,))  # hidden sizes: shallow 784-10, deep 784-32-10
    steps: int = 60_000  # one online pass over the training split
    test_examples: int = 10_000
    weight_std: float = 1.0
    tail: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "test_examples", "weight_std", "tail"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key eval.{name} must be positive, got {getattr(self, name)}")
        object.__setattr__(self, "architectures", tuple(tuple(int(h) for h in a) for a in self.architectures))


@dataclass(frozen=True)
class CloneConfig:
    """A cloning run (`vsml clone CONFIG`): what is cloned, from where, and how it is checked."""

    name: str = "clone"
    seed: int = 0
    init: str = "constructed"  # "random" (Haiku default V_M) or "constructed" (`constructed_backprop`)
    num_micro_ticks: int = 2
    teacher: CloneTeacher = CloneTeacher()
    tuples: TupleDistribution = TupleDistribution()
    train: CloneTrainConfig = CloneTrainConfig()
    eval: CloneEvalConfig = CloneEvalConfig()

    def __post_init__(self) -> None:
        if self.init not in CLONE_INITS:
            raise ValueError(f"config key init must be one of {', '.join(CLONE_INITS)}, got {self.init!r}")
        if self.num_micro_ticks < 1:
            raise ValueError(f"config key num_micro_ticks must be >= 1, got {self.num_micro_ticks}")

    @property
    def learner(self) -> VSML:
        return clone_learner(self.num_micro_ticks)


def make_clone_optimizer(cfg: CloneTrainConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.05)),
        scale_by_magnitude(cfg.magnitude_floor),
    )


def clone_step(
    vsml: VSML,
    config: CloneConfig,
    optimizer: optax.GradientTransformation,
    params: CloneParams,
    opt_state: optax.OptState,
    key: Array,
) -> tuple[CloneParams, optax.OptState, Array, dict[str, Array]]:
    """One Adam step on a fresh batch of histories; a non-finite loss skips the update."""
    histories = sample_histories(key, config.tuples, config.train.batch_size)

    def loss_fn(p: CloneParams) -> tuple[Array, dict[str, Array]]:
        return cloning_loss(vsml, p, histories, config.teacher.learning_rate)

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, new_state = optimizer.update(grads, opt_state, params)
    finite = jnp.isfinite(loss)
    new_params = jax.tree.map(
        lambda n, o: jnp.where(finite, n, o), optax.apply_updates(params, updates), params
    )
    new_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state, opt_state)
    return new_params, new_state, loss, parts


def heldout_histories(config: CloneConfig) -> SynapseHistories:
    """Histories never trained on: their own key, derived from the seed."""
    return sample_histories(
        jax.random.fold_in(jax.random.PRNGKey(config.seed), 7), config.tuples, config.train.heldout
    )


def train_clone(config: CloneConfig, progress: bool = True) -> tuple[CloneParams, dict[str, object]]:
    """Clone by gradients (module docstring). Returns the parameters and a history: the held-out loss parts
    before and after, and the training loss every `log_every` steps."""
    from functools import partial

    from tqdm.auto import tqdm

    vsml = config.learner
    key = jax.random.PRNGKey(config.seed)
    params = init_clone_params(vsml, config.init, jax.random.fold_in(key, 1), config.teacher)
    optimizer = make_clone_optimizer(config.train)
    opt_state = optimizer.init(params)
    step = jax.jit(partial(clone_step, vsml, config, optimizer))
    heldout = heldout_histories(config)
    evaluate = jax.jit(lambda p: cloning_losses(vsml, p, heldout, config.teacher.learning_rate))

    def as_floats(parts: dict[str, Array]) -> dict[str, float]:
        return {name: float(value) for name, value in parts.items()}

    history: dict[str, object] = {"heldout_before": as_floats(evaluate(params)), "train": []}
    bar = tqdm(range(config.train.steps), desc=f"clone ({config.init})", unit="step", disable=not progress)
    for i in bar:
        params, opt_state, loss, parts = step(params, opt_state, jax.random.fold_in(key, 100 + i))
        if i % config.train.log_every == 0 or i == config.train.steps - 1:
            history["train"].append({"step": i, "loss": float(loss), **as_floats(parts)})  # type: ignore[union-attr]
            bar.set_postfix(loss=f"{float(loss):.3g}")
    history["heldout_after"] = as_floats(evaluate(params))
    return params, history
