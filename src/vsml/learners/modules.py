"""Small network pieces shared by the meta-learned baselines (VSML spec §5): Haiku-equivalent layers as pure
functions over NamedTuples of arrays, so the baselines' parameter counts and initialisations match the authors'
Haiku code without depending on Haiku.

- `DenseParams` / `init_dense`: `hk.Linear` (w ~ N(0, 1/fan_in) truncated at ±2σ, b = 0).
- `init_lstm` / `lstm_cell`: `hk.LSTM` (one Linear on [x, h] to the i, g, f, o gates; +1 on the forget gate).
- `init_conv_trunk` / `conv_trunk`: 3 × `hk.Conv2D(channels, 3, stride 2, SAME)` (Haiku's default init, as Linear).
- `bound_logits` (every baseline's 100·tanh(·/100)), `cross_entropy_feedback` (g = ∂CE/∂ŷ),
  `layer_norm` (`hk.LayerNorm`, with or without scale and offset).
- `fast_tanh`: float32 tanh as one rational function (VSML's fast path spends most of its time in tanh).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vsml.learners.base import Array, TaskSpec

# Haiku's VarianceScaling divides by the std of a unit normal truncated at ±2, so the weights get std 1/√fan_in.
TRUNCATED_NORMAL_STD = 0.87962566103423978
# The Meta-RNN, Hebbian and FWMemory trunks (spec §5): ReLU, ReLU, tanh.
TRUNK_ACTIVATIONS = (jax.nn.relu, jax.nn.relu, jnp.tanh)
LAYER_NORM_EPS = 1e-5  # hk.LayerNorm's default

# Eigen's float32 tanh: odd degree-13 numerator over even degree-6 denominator. Eigen clamps x to ±7.9053,
# where the rational stops 2 ulp short of 1; we clamp at ±9.5, where it has just passed 1 (1 + 2 ulp), and clip
# the result to [-1, 1], so a saturated gate is exactly 0 or 1 as with jnp.tanh (an LSTM holding its cell with
# f = 1 must hold it exactly, e.g. the cloned backprop V_M's weight copies over 10^5 ticks). Two clips instead
# of a select: a `where` here made the whole VSML step ~1.8× slower on XLA:CPU. Max error against jnp.tanh
# ≈ 3e-7 (tests/learners/test_modules.py).
_TANH_CLAMP = 9.5
_TANH_NUMERATOR = (  # α13, α11, …, α1 (Horner order, in x²)
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
_TANH_DENOMINATOR = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


class DenseParams(NamedTuple):
    """One affine layer, y = x·w + b."""

    w: Array  # [fan_in, fan_out]
    b: Array  # [fan_out]


class ConvParams(NamedTuple):
    """One 3×3 convolution, HWIO kernel."""

    w: Array  # [3, 3, in_channels, out_channels]
    b: Array  # [out_channels]


class LSTMState(NamedTuple):
    h: Array  # [H] hidden
    c: Array  # [H] cell


def haiku_truncated_normal(
    key: Array, shape: tuple[int, ...], fan_in: int, dtype: jnp.dtype = jnp.float32
) -> Array:
    """Haiku's default weights, `TruncatedNormal(1/√fan_in)`: N(0, 1) cut at ±2, scaled by 1/√fan_in, with no
    variance correction (so the std is ≈0.88/√fan_in). `hk.Linear`, `hk.Conv2D` and VSML's sub-RNN use it."""
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / math.sqrt(fan_in)


def init_dense(key: Array, fan_in: int, fan_out: int) -> DenseParams:
    """`hk.Linear`'s default init: w ~ N(0, 1/fan_in) truncated at ±2σ, zero bias."""
    return DenseParams(
        w=haiku_truncated_normal(key, (fan_in, fan_out), fan_in), b=jnp.zeros((fan_out,), jnp.float32)
    )


def dense(params: DenseParams, x: Array) -> Array:
    return x @ params.w + params.b


def init_lstm(key: Array, input_size: int, hidden_size: int) -> DenseParams:
    """`hk.LSTM(hidden_size)`: a single Linear from [x, h] to the four gates (i, g, f, o order)."""
    return init_dense(key, input_size + hidden_size, 4 * hidden_size)


def lstm_cell(params: DenseParams, x: Array, state: LSTMState) -> LSTMState:
    """One `hk.LSTM` step: c' = σ(f + 1)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c') (Haiku adds +1 to the forget gate)."""
    gates = dense(params, jnp.concatenate([x, state.h]))
    i, g, f, o = jnp.split(gates, 4)
    c = jax.nn.sigmoid(f + 1.0) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return LSTMState(h=jax.nn.sigmoid(o) * jnp.tanh(c), c=c)


def zero_lstm_state(hidden_size: int) -> LSTMState:
    return LSTMState(h=jnp.zeros((hidden_size,), jnp.float32), c=jnp.zeros((hidden_size,), jnp.float32))


def init_conv_trunk(
    key: Array, in_channels: int, channels: int, num_layers: int = 3
) -> tuple[ConvParams, ...]:
    """`hk.Conv2D`'s default init: w ~ N(0, 1/fan_in) truncated at ±2σ (no variance correction, as `hk.Linear`),
    fan_in = 3·3·in_channels; zero bias."""
    layers = []
    for k in jax.random.split(key, num_layers):
        w = haiku_truncated_normal(k, (3, 3, in_channels, channels), fan_in=9 * in_channels)
        layers.append(ConvParams(w=w, b=jnp.zeros((channels,), jnp.float32)))
        in_channels = channels
    return tuple(layers)


def conv_trunk(layers: tuple[ConvParams, ...], x: Array) -> Array:
    """3×3 stride-2 SAME convolutions with ReLU, ReLU, tanh (spec §5); x [H, W, C] → flat features."""
    h = x[None]
    for layer, activation in zip(layers, TRUNK_ACTIVATIONS, strict=False):
        h = jax.lax.conv_general_dilated(
            h, layer.w, window_strides=(2, 2), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = activation(h + layer.b.reshape(1, 1, 1, -1))  # explicit broadcast (no implicit rank promotion)
    return h.reshape(-1)


def trunk_output_size(input_shape: tuple[int, ...], channels: int, num_layers: int = 3) -> int:
    """Flat feature size after `num_layers` stride-2 SAME convolutions: each halves H and W, rounding up."""
    height, width = input_shape[0], input_shape[1]
    for _ in range(num_layers):
        height, width = -(-height // 2), -(-width // 2)
    return height * width * channels


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """[H, W] or [H, W, C] inputs as [H, W, C] for the conv trunk; anything else cannot be convolved."""
    if len(input_shape) == 2:
        return (*input_shape, 1)
    if len(input_shape) == 3:
        return tuple(input_shape)  # type: ignore[return-value]
    raise ValueError(f"use_conv needs image inputs [H, W] or [H, W, C], got input_shape {list(input_shape)}")


def features_of(trunk: tuple[ConvParams, ...], x: Array, input_shape: tuple[int, ...]) -> Array:
    """The conv trunk's flat features, or the flat input when there is no trunk."""
    if trunk:
        return conv_trunk(trunk, jnp.reshape(x, image_shape(input_shape)).astype(jnp.float32))
    return jnp.reshape(x, (-1,)).astype(jnp.float32)


def bound_logits(out: Array, bound: float) -> Array:
    """Every baseline's output bound, bound·tanh(out/bound) (spec §5)."""
    return bound * jnp.tanh(out / bound)


def cross_entropy_feedback(logits: Array, y: Array) -> Array:
    """g = ∂CE(softmax(ŷ), y)/∂ŷ = softmax(ŷ) − y, the error every baseline feeds back (spec §5)."""
    return jax.nn.softmax(logits) - y


def layer_norm(m: Array, scale: Array | None = None, offset: Array | None = None) -> Array:
    """`hk.LayerNorm` over the last axis: biased variance, eps inside the square root; without scale and offset
    it is `hk.LayerNorm(-1, create_scale=False, create_offset=False)` (FWMemory's read-out)."""
    mean = jnp.mean(m, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(m - mean), axis=-1, keepdims=True)
    lead = (1,) * (m.ndim - 1)  # explicit broadcast: rank promotion is an error in the tests
    centred = m - mean if scale is None else jnp.reshape(scale, lead + scale.shape) * (m - mean)
    normalised = centred * jax.lax.rsqrt(var + LAYER_NORM_EPS)
    return normalised if offset is None else normalised + jnp.reshape(offset, lead + offset.shape)


def fixed_shape_settings(learner: object) -> None:
    """Validate and normalise the shared settings of a fixed-size baseline (a frozen dataclass) in place."""
    name = type(learner).__name__
    shape = tuple(int(d) for d in learner.input_shape)  # lists from YAML would break jit caching
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(
            f"{name}.input_shape must be positive sizes, e.g. [28, 28, 1]; got {learner.input_shape}"
        )
    object.__setattr__(learner, "input_shape", shape)
    if int(learner.num_classes) < 2:
        raise ValueError(f"{name}.num_classes must be >= 2, got {learner.num_classes}")
    if not learner.tanh_bound > 0:
        raise ValueError(f"{name}.tanh_bound must be > 0, got {learner.tanh_bound}")
    if getattr(learner, "use_conv", False):
        image_shape(shape)


def check_fixed_shape(
    learner: object, spec: TaskSpec, input_shape: tuple[int, ...], num_classes: int
) -> None:
    """Baselines with a fixed input and output size: a clear error naming the padding that fixes a mismatch."""
    name = type(learner).__name__
    if spec.input_size != math.prod(input_shape) or spec.num_classes != num_classes:
        raise ValueError(
            f"{name} was built for inputs {list(input_shape)} and {num_classes} classes but the task has inputs "
            f"{list(spec.input_shape)} and {spec.num_classes} classes. Its meta-parameters have a fixed size: pad "
            f"the task (transform.pad_input_to={list(input_shape)}, transform.pad_classes_to={num_classes}) or "
            f"set learner.input_shape / learner.num_classes to the task's sizes."
        )


def check_single_example(learner: object, x: Array, input_size: int) -> None:
    """The baselines implement no state merging (spec §5), so they take one example per step."""
    if x.size != input_size:
        raise ValueError(
            f"{type(learner).__name__} takes one example per step (input size {input_size}), got x of shape "
            f"{list(x.shape)}; the baselines do not merge states over an inner batch: set task.batch_size=1"
        )


def _horner(coefficients: tuple[float, ...], x2: Array) -> Array:
    result = jnp.full_like(x2, coefficients[0])
    for a in coefficients[1:]:
        result = result * x2 + a
    return result


@jax.custom_jvp
def fast_tanh(x: Array) -> Array:
    """tanh, for float32 as a single rational function that XLA fuses into its neighbours.

    With it VSML's dense step measured 1.7× (784 → 10) and 1.4× (784 → 32 → 10) faster on XLA:CPU than with
    jnp.tanh (reports/speed_cpu; benchmarks/inner_loop.py measures the effect on the whole VSML step) at XLA's
    default code generation (LLVM -O3); with `--xla_backend_optimization_level=1` jnp.tanh's loops are
    compiled better and the lead is 4–7%. Other dtypes (float64 parity checks, bfloat16) use `jnp.tanh`. The
    derivative is tanh's own, 1 − tanh², so gradients through the inner loop are those of the exact formulation.
    """
    if x.dtype != jnp.float32:
        return jnp.tanh(x)
    x = jnp.clip(x, -_TANH_CLAMP, _TANH_CLAMP)
    x2 = x * x
    return jnp.clip(x * _horner(_TANH_NUMERATOR, x2) / _horner(_TANH_DENOMINATOR, x2), -1.0, 1.0)


@fast_tanh.defjvp
def _fast_tanh_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (dx,) = primals, tangents
    y = fast_tanh(x)
    return y, (1.0 - y * y) * dx


def sub_rnn_tanh(rational: bool) -> Callable[[Array], Array]:
    """The tanh of VSML's sub-RNNs: `fast_tanh` with `rational_tanh`, else `jnp.tanh`."""
    return fast_tanh if rational else jnp.tanh
