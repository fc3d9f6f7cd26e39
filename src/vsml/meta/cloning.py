"""Learning-algorithm cloning: a learned LA regressed onto online backpropagation (Kirsch & Schmidhuber, NeurIPS
2021, arXiv 2012.14905, Sec. 3.2 / 4.1; spec vsml.md §4).

The paper optimises V_M by supervised regression so that the VSML RNN reproduces backprop; the protocol is not
public (spec §4.2 lists the unknowns). Our design, each choice a config option. This module knows no particular
learner: the student (VSML: `vsml.learners.vsml.codec.VSMLCloneStudent`) comes as an argument, a `CloneStudent`
that initialises its parameters and runs the per-synapse histories.

**Network cloned (the teacher).** VSML aggregates with a *mean* over synapses (spec §1.4), so the network it can
implement is the mean-aggregated one, with the nonlinearity on the input side (spec §4.1):

    z_b = mean_a tanh(x_a) w_ab + mean_a b_ab                      (forward, every layer)
    δ_b = softmax(z) − y at the top;  δ_a = mean_b (1 − tanh²(x_a)) w_ab δ_b   (reverse, layer below)
    w_ab ← w_ab − α tanh(x_a) δ_b;   b_ab ← b_ab − α δ_b             (update; the bias is shared per b)

This is exactly online backprop of that network up to a constant per-layer factor on δ (the mean over b where
the chain rule has a sum): online SGD with layer-wise learning rates. `learners`' plain SGD is not the same
parameterisation, so the SGD we compare with is this teacher, run from the same initial weights.

**Student.** VSML with a backward pass and its own reverse parameter set; how it holds the teacher's weights
(the codec) and the hand-constructed V_M are in `vsml.learners.vsml.codec`. The teacher's messages are laid
out as the student sends them: the forward share on channels 0 and 1, the backward share on channel 0.

**Objective.** Regression on per-synapse histories of random tuples (x, δ, stale backward input, w, b),
`length` steps each, unrolled through both ticks with all micro ticks: the forward message, the backward
message, the state read-out (w, b) and its change per tick are regressed onto the teacher's, each error
divided by the scale of its target (weights up to |w| ≈ 300 occur: the mean over 784 inputs needs them).
The student's read-out and the encoder that writes given weights into a state are learned with V_M.

**Initialisation.** `random` (the student's default) or `constructed` (derived by hand to implement the teacher,
VSML's up to O(ε²)). Both are then trained by gradients on the objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vsml.learners.base import Array, PyTree

CLONE_INITS = ("random", "constructed")
# How a random V_M's codec holds (w, b) in the cells: "one_cell" (w in cell 0, b in cell 1) or "distributed"
# (a random direction over all cells, read back by its pseudo-inverse).
RANDOM_CODECS = ("one_cell", "distributed")


@dataclass(frozen=True)
class CloneTeacher:
    """The backprop teacher (module docstring) and the scales of the student's codec (VSML's: κ, the bias scale
    and ε of `vsml.learners.vsml.codec`)."""

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


# ----- the teacher ----------------------------------------------------------------------------------------------


def teacher_synapse_step(
    w: Array, b: Array, x: Array, delta: Array, learning_rate: float
) -> tuple[Array, Array, Array, Array]:
    """One synapse of the teacher: (forward share, backward share, new w, new b) (module docstring)."""
    t = jnp.tanh(x)
    return t * w + b, (1.0 - t * t) * w * delta, w - learning_rate * t * delta, b - learning_rate * delta


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


class CloneStudent(Protocol):
    """The learner cloned into, with its codec: VSML's is `vsml.learners.vsml.codec.VSMLCloneStudent`."""

    @property
    def msg_size(self) -> int: ...  # M: the teacher's messages are laid out in M channels

    def constructed_params(self, teacher: CloneTeacher) -> PyTree:
        """Parameters (V_M and codec) that implement the teacher by construction (`init: constructed`)."""
        ...

    def random_params(self, key: Array, teacher: CloneTeacher, codec: str = "one_cell") -> PyTree:
        """The learner's default initialisation and a codec at the teacher's scales (`init: random`), of the
        kind `codec` (`RANDOM_CODECS`)."""
        ...

    def codec_mask(self, params: PyTree) -> PyTree:
        """`params`' structure with True on the codec's leaves (how weights sit in the state), False on V_M's."""
        ...

    def trace(
        self, params: PyTree, w0: Array, b0: Array, x: Array, stale: Array, delta: Array, upper: Array
    ) -> tuple[Array, ...]:
        """The student's `SynapseTrace` fields, in order, for the arrays of `SynapseHistories`."""
        ...


def init_clone_params(
    student: CloneStudent, init: str, key: Array, teacher: CloneTeacher, codec: str = "one_cell"
) -> PyTree:
    if init == "constructed":
        return student.constructed_params(teacher)
    if init == "random":
        return student.random_params(key, teacher, codec)
    raise ValueError(f"config key init must be one of {', '.join(CLONE_INITS)}, got {init!r}")


def student_trace(student: CloneStudent, params: PyTree, histories: SynapseHistories) -> SynapseTrace:
    """The histories run through the student (every micro tick of its forward and reverse tick)."""
    return SynapseTrace(*student.trace(params, *histories))


def cloning_losses(
    student: CloneStudent, params: PyTree, histories: SynapseHistories, learning_rate: float
) -> dict[str, Array]:
    """Mean squared errors of the student against the teacher, each divided by the scale of its target:
    forward message by 1 + |w| + |b|, backward message by (1 + |w|)(|δ| + 0.1), read-out by 1 + |w| (1 + |b|),
    read-out changes (per tick) by α(|δ| + 0.1). The sum is the cloning loss."""
    teacher = teacher_trace(histories, learning_rate, student.msg_size)
    return _trace_errors(student_trace(student, params, histories), teacher, histories, learning_rate)


def zero_predictor_losses(
    student: CloneStudent, histories: SynapseHistories, learning_rate: float
) -> dict[str, Array]:
    """`cloning_losses` of a student whose every message, read-out and change is 0: per part, the level that a
    student who learned nothing of that part scores (0 for "hold", whose target is no change)."""
    return _zero_predictor_errors(teacher_trace(histories, learning_rate, student.msg_size), histories, learning_rate)


def _zero_predictor_errors(teacher: SynapseTrace, histories: SynapseHistories, learning_rate: float) -> dict:
    return _trace_errors(jax.tree.map(jnp.zeros_like, teacher), teacher, histories, learning_rate)


def _trace_errors(
    learned: SynapseTrace, teacher: SynapseTrace, histories: SynapseHistories, learning_rate: float
) -> dict[str, Array]:
    weight_scale = 1.0 + jnp.abs(teacher.w)
    bias_scale = 1.0 + jnp.abs(teacher.b)
    step_scale = learning_rate * (jnp.abs(histories.delta) + 0.1)

    def mse(error: Array, scale: Array) -> Array:
        return jnp.mean(jnp.square(error / scale))

    return {
        "forward": mse(learned.fwd - teacher.fwd, (weight_scale + jnp.abs(teacher.b))[..., None]),
        "backward": mse(
            learned.bwd - teacher.bwd, (weight_scale * (jnp.abs(histories.delta) + 0.1))[..., None]
        ),
        "state": mse(learned.w - teacher.w, weight_scale) + mse(learned.b - teacher.b, bias_scale),
        "hold": mse(learned.w_mid - learned.w, step_scale) + mse(learned.b_mid - learned.b, step_scale),
        "update": mse((learned.w_next - learned.w_mid) - (teacher.w_next - teacher.w), step_scale)
        + mse((learned.b_next - learned.b_mid) - (teacher.b_next - teacher.b), step_scale),
    }


# The parts `relative_parts` divides by their zero-predictor level; "hold" has none (its target is no change).
RELATIVE_PARTS = ("forward", "backward", "state", "update")
_SMALLEST_LEVEL = 1e-12  # the divisor of a part whose batch has no target to predict


def cloning_loss(
    student: CloneStudent,
    params: PyTree,
    histories: SynapseHistories,
    learning_rate: float,
    relative_parts: bool = False,
) -> tuple[Array, dict[str, Array]]:
    """The loss trained on and its parts (`cloning_losses`, always the plain ones). Their sum; with
    `relative_parts`, each part of `RELATIVE_PARTS` first divided by its zero-predictor level on the same batch
    (which does not depend on the parameters), so that a part whose targets are small (the backward message:
    w δ with small δ) weighs as much as the others while the student has learned none of it."""
    teacher = teacher_trace(histories, learning_rate, student.msg_size)
    parts = _trace_errors(student_trace(student, params, histories), teacher, histories, learning_rate)
    if not relative_parts:
        return sum(parts.values()), parts
    levels = _zero_predictor_errors(teacher, histories, learning_rate)
    # A level is 0 only where the batch's targets of that part all are (e.g. one history with δ = 0).
    total = sum(
        part / jnp.maximum(levels[name], _SMALLEST_LEVEL) if name in RELATIVE_PARTS else part
        for name, part in parts.items()
    )
    return total, parts


def scale_by_magnitude(floor: float, per_leaf: bool = False) -> optax.GradientTransformation:
    """Multiply each update by |θ| + floor: steps relative to a parameter's size. The constructed V_M mixes
    entries of 1e-5 and 1e5, so an absolute step size would wreck the small ones or never move the big ones.
    `per_leaf`: the floor is `floor` times the leaf's largest |θ|, so a leaf of small entries (a codec's 1/κ)
    moves relative to its own size and one of large entries (its κ) relative to its own."""

    def init(params: optax.Params) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: optax.Updates, state: optax.EmptyState, params: optax.Params | None = None) -> tuple:
        if params is None:
            raise ValueError("scale_by_magnitude needs the parameters")

        def scaled(u: Array, p: Array) -> Array:
            leaf_floor = floor * jnp.max(jnp.abs(p)) if per_leaf else floor
            return u * (jnp.abs(p) + leaf_floor)

        return jax.tree.map(scaled, updates, params), state

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
    # The floor relative to each leaf's largest |θ| (`scale_by_magnitude`): a random V_M's codec holds entries
    # of 1/κ and κ, which one absolute floor either freezes or overwrites in a few steps.
    floor_per_leaf: bool = False
    # False: the codec stays as initialised and only V_M learns. From a random V_M, whose cells change a lot
    # every tick, the cheapest way to lower the update and hold losses is to shrink the read-out until the
    # changes vanish, which wrecks the read-out of the weight itself (measured: state loss 1e-15 -> 2.5).
    learn_codec: bool = True
    heldout: int = 4096  # held-out histories (their own key) for the before/after report
    log_every: int = 25
    # A curriculum over the histories' length: the steps split evenly over these lengths, in order. Length 1 is
    # teacher forcing (every step starts from the teacher's state, so errors cannot compound); longer ones run
    # the student free. () = `tuples.length` throughout.
    history_lengths: tuple[int, ...] = ()
    # True: each loss part but "hold" divided by what a zero predictor scores on the same batch (`cloning_loss`).
    # From a random V_M the backward part stayed at that level for 60,000 steps of the plain sum (issue 25 §2).
    # The logged training loss is then this weighted sum; the logged parts and held-out losses stay plain.
    relative_parts: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "learning_rate", "magnitude_floor", "heldout", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key train.{name} must be positive, got {getattr(self, name)}")
        object.__setattr__(self, "history_lengths", tuple(int(n) for n in self.history_lengths))
        if any(n < 1 for n in self.history_lengths) or len(self.history_lengths) > self.steps:
            raise ValueError(
                "config key train.history_lengths must be lengths >= 1, at most one per step, got "
                f"{list(self.history_lengths)} for {self.steps} steps"
            )

    def history_length(self, step: int, default: int) -> int:
        """The histories' length at `step` (0-based) of the curriculum; `default` without one."""
        if not self.history_lengths:
            return default
        return self.history_lengths[step * len(self.history_lengths) // self.steps]


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
    codec: str = "one_cell"  # a random V_M's codec (`RANDOM_CODECS`); the constructed one has its own
    num_micro_ticks: int = 2
    teacher: CloneTeacher = CloneTeacher()
    tuples: TupleDistribution = TupleDistribution()
    train: CloneTrainConfig = CloneTrainConfig()
    eval: CloneEvalConfig = CloneEvalConfig()

    def __post_init__(self) -> None:
        if self.init not in CLONE_INITS:
            raise ValueError(f"config key init must be one of {', '.join(CLONE_INITS)}, got {self.init!r}")
        if self.codec not in RANDOM_CODECS:
            raise ValueError(f"config key codec must be one of {', '.join(RANDOM_CODECS)}, got {self.codec!r}")
        if self.num_micro_ticks < 1:
            raise ValueError(f"config key num_micro_ticks must be >= 1, got {self.num_micro_ticks}")


def make_clone_optimizer(
    cfg: CloneTrainConfig, codec_mask: PyTree | None = None
) -> optax.GradientTransformation:
    """Adam on a cosine-decayed rate, relative steps (`scale_by_magnitude`); with `learn_codec` off, no step on
    the leaves `codec_mask` marks."""
    steps = [
        optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.05)),
        scale_by_magnitude(cfg.magnitude_floor, cfg.floor_per_leaf),
    ]
    if not cfg.learn_codec:
        if codec_mask is None:
            raise ValueError("train.learn_codec: false needs the student's codec_mask")
        steps.append(optax.masked(optax.set_to_zero(), codec_mask))
    return optax.chain(*steps)


def clone_step(
    student: CloneStudent,
    config: CloneConfig,
    optimizer: optax.GradientTransformation,
    params: PyTree,
    opt_state: optax.OptState,
    key: Array,
) -> tuple[PyTree, optax.OptState, Array, dict[str, Array]]:
    """One Adam step on a fresh batch of histories; a non-finite loss skips the update."""
    histories = sample_histories(key, config.tuples, config.train.batch_size)

    def loss_fn(p: PyTree) -> tuple[Array, dict[str, Array]]:
        return cloning_loss(student, p, histories, config.teacher.learning_rate, config.train.relative_parts)

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


def train_clone(
    config: CloneConfig, student: CloneStudent, progress: bool = True
) -> tuple[PyTree, dict[str, object]]:
    """Clone by gradients into `student` (module docstring; VSML's runs with `config.num_micro_ticks` micro
    ticks). Returns the parameters and a history: the held-out loss parts before and after, and the training
    loss every `log_every` steps."""
    from functools import partial

    from tqdm.auto import tqdm

    key = jax.random.PRNGKey(config.seed)
    params = init_clone_params(student, config.init, jax.random.fold_in(key, 1), config.teacher, config.codec)
    optimizer = make_clone_optimizer(config.train, student.codec_mask(params))
    opt_state = optimizer.init(params)
    compiled: dict[int, Callable] = {}  # one compiled step per history length of the curriculum

    def step_at(length: int) -> Callable:
        if length not in compiled:
            at_length = replace(config, tuples=replace(config.tuples, length=length))
            compiled[length] = jax.jit(partial(clone_step, student, at_length, optimizer))
        return compiled[length]

    heldout = heldout_histories(config)
    evaluate = jax.jit(lambda p: cloning_losses(student, p, heldout, config.teacher.learning_rate))

    def as_floats(parts: dict[str, Array]) -> dict[str, float]:
        return {name: float(value) for name, value in parts.items()}

    history: dict[str, object] = {"heldout_before": as_floats(evaluate(params)), "train": []}
    bar = tqdm(range(config.train.steps), desc=f"clone ({config.init})", unit="step", disable=not progress)
    for i in bar:
        length = config.train.history_length(i, config.tuples.length)
        params, opt_state, loss, parts = step_at(length)(params, opt_state, jax.random.fold_in(key, 100 + i))
        if i % config.train.log_every == 0 or i == config.train.steps - 1:
            record = {"step": i, "length": length, "loss": float(loss), **as_floats(parts)}
            history["train"].append(record)  # type: ignore[union-attr]
            bar.set_postfix(loss=f"{float(loss):.3g}")
    history["heldout_after"] = as_floats(evaluate(params))
    return params, history
