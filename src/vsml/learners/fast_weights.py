"""Fast-weight baselines of the VSML code (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905; spec §5):
a delta-rule fast-weight programmer (FWP; Schmidhuber 1992, Schlag et al. 2021) and the fast-weight memory of
Schlag, Munkhdalai & Schmidhuber (ICLR 2021, "Learning associative inference using fast weight memory").

FWP, per step t (slow net: one Linear on u_t = [flatten(x_t), ŷ_{t−1}, g_{t−1}, y_{t−1}]):

    k, v, q, β = Linear(u_t);  β ← σ(β)            # k, q ∈ R^64, v ∈ R^C
    F ← F + kᵀ(β·(v − k·F))                        # delta rule on the fast matrix F [64, C]
    ŷ_t = 100·tanh(q·F / 100),  g_t = softmax(ŷ_t) − y_t

F starts each episode from Haiku's VarianceScaling (truncated normal, std 1/√64) drawn from the episode key.
Documented choice: `normalize_keys=True` (default) divides k and q by their L2 norms first. The delta rule is
stable only while β‖k‖² < 2; the authors' code leaves k raw, and on 28×28 inputs it overflowed to NaN within 20
steps here, so their form is kept as `normalize_keys=False` (their FWP is used by no config or result).

FWMemory, per step t (LSTM(32) on u_t = [flatten(trunk(x_t)), g_{t−1}, y_{t−1}], output o):

    write: β = σ(·), k1, k2, v = tanh(·) ∈ R^16;  key = vec(k1 k2ᵀ);  M ← M + β(v − M·key)keyᵀ;
           M ← M / max(1, ‖M‖_F)                   # memory M [16, 256], zero at episode start
    read:  n, e = tanh(·) ∈ R^16;  r = LayerNorm(M·vec(n eᵀ));  o ← o + Linear_32(r)
    ŷ_t = 100·tanh(Linear_C(o)/100)

Faithful to the authors' Haiku code (their FWMemory is correct only for inner batch 1, as here); FWMemory has
125,711 meta-parameters for 28×28 inputs padded to 62 outputs (tested). FWP is used by no config of theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vsml.learners.base import Array, TaskSpec
from vsml.learners.modules import (
    TRUNCATED_NORMAL_STD,
    ConvParams,
    DenseParams,
    LSTMState,
    bound_logits,
    check_fixed_shape,
    check_single_example,
    cross_entropy_feedback,
    dense,
    features_of,
    fixed_shape_settings,
    image_shape,
    init_conv_trunk,
    init_dense,
    init_lstm,
    layer_norm,
    lstm_cell,
    trunk_output_size,
    zero_lstm_state,
)


class FWPMeta(NamedTuple):
    slow: DenseParams  # w [D + 3C, 2K + C + 1] to k, v, q, β


class FWPState(NamedTuple):
    fast_weights: Array  # [K, C] F
    previous_logits: Array  # [C] ŷ_{t−1}
    error: Array  # [C] g_{t−1}
    previous_label: Array  # [C] y_{t−1}


@dataclass(frozen=True)
class FWP:
    """Delta-rule fast-weight programmer (spec §5 FWP) as a `Learner`; sizes fixed, pad other tasks to them."""

    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 62
    fast_size: int = 64  # K
    tanh_bound: float = 100.0
    normalize_keys: bool = True  # k, q ← k/‖k‖, q/‖q‖ (module docstring); False: the authors' raw keys

    def __post_init__(self) -> None:
        fixed_shape_settings(self)
        if self.fast_size < 1:
            raise ValueError(f"FWP.fast_size must be >= 1, got {self.fast_size}")

    def init_meta(self, key: Array) -> FWPMeta:
        inputs = math.prod(self.input_shape) + 3 * self.num_classes
        return FWPMeta(slow=init_dense(key, inputs, 2 * self.fast_size + self.num_classes + 1))

    def init_state(self, meta: FWPMeta, key: Array, spec: TaskSpec) -> FWPState:
        """F from VarianceScaling(1, fan_in, truncated normal) with the episode's key, as Haiku draws it."""
        del meta
        check_fixed_shape(self, spec, self.input_shape, self.num_classes)
        std = math.sqrt(1.0 / self.fast_size) / TRUNCATED_NORMAL_STD
        shape = (self.fast_size, self.num_classes)
        fast = std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
        zeros = jnp.zeros((self.num_classes,), jnp.float32)
        return FWPState(fast_weights=fast, previous_logits=zeros, error=zeros, previous_label=zeros)

    def step(self, meta: FWPMeta, state: FWPState, x: Array, y: Array) -> tuple[Array, FWPState]:
        check_single_example(self, x, math.prod(self.input_shape))
        inputs = jnp.concatenate(
            [
                jnp.reshape(x, (-1,)).astype(jnp.float32),
                state.previous_logits,
                state.error,
                state.previous_label,
            ]
        )
        K, C = self.fast_size, self.num_classes
        k, v, q, beta = jnp.split(dense(meta.slow, inputs), [K, K + C, 2 * K + C])
        beta = jax.nn.sigmoid(beta)
        if self.normalize_keys:
            k, q = unit_norm(k), unit_norm(q)
        fast = state.fast_weights + jnp.outer(k, beta * (v - k @ state.fast_weights))  # delta rule
        logits = bound_logits(q @ fast, self.tanh_bound)
        y = y.astype(logits.dtype)
        return logits, FWPState(fast, logits, cross_entropy_feedback(logits, y), y)


class FWMemoryMeta(NamedTuple):
    trunk: tuple[ConvParams, ...]  # () without the conv trunk
    lstm: DenseParams  # w [features + 2C + H, 4H]
    write: DenseParams  # w [H, 3M + 1] to k1, k2, v, β
    read: DenseParams  # w [H, 2M] to n, e
    read_projection: DenseParams  # w [M, H]
    readout: DenseParams  # w [H, C]


class FWMemoryState(NamedTuple):
    lstm: LSTMState  # h, c [H]
    memory: Array  # [M, M²]
    error: Array  # [C] g_{t−1}
    previous_label: Array  # [C] y_{t−1}


@dataclass(frozen=True)
class FWMemory:
    """Fast-weight memory (Schlag et al. 2021; spec §5 FWMemory) as a `Learner`; sizes fixed."""

    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 62
    slow_size: int = 32  # H, LSTM units
    memory_size: int = 16  # M
    tanh_bound: float = 100.0
    use_conv: bool = False
    conv_channels: int = 8

    def __post_init__(self) -> None:
        fixed_shape_settings(self)
        if min(self.slow_size, self.memory_size, self.conv_channels) < 1:
            raise ValueError(
                f"FWMemory.slow_size, memory_size and conv_channels must be >= 1, got {self.slow_size}, "
                f"{self.memory_size}, {self.conv_channels}"
            )

    def init_meta(self, key: Array) -> FWMemoryMeta:
        k_trunk, k_lstm, k_write, k_read, k_proj, k_out = jax.random.split(key, 6)
        features = math.prod(self.input_shape)
        trunk = ()
        if self.use_conv:
            trunk = init_conv_trunk(k_trunk, image_shape(self.input_shape)[-1], self.conv_channels)
            features = trunk_output_size(self.input_shape, self.conv_channels)
        hidden, memory = self.slow_size, self.memory_size
        return FWMemoryMeta(
            trunk=trunk,
            lstm=init_lstm(k_lstm, features + 2 * self.num_classes, hidden),
            write=init_dense(k_write, hidden, 3 * memory + 1),
            read=init_dense(k_read, hidden, 2 * memory),
            read_projection=init_dense(k_proj, memory, hidden),
            readout=init_dense(k_out, hidden, self.num_classes),
        )

    def init_state(self, meta: FWMemoryMeta, key: Array, spec: TaskSpec) -> FWMemoryState:
        del meta, key
        check_fixed_shape(self, spec, self.input_shape, self.num_classes)
        zeros = jnp.zeros((self.num_classes,), jnp.float32)
        memory = jnp.zeros((self.memory_size, self.memory_size**2), jnp.float32)
        return FWMemoryState(zero_lstm_state(self.slow_size), memory, zeros, zeros)

    def step(
        self, meta: FWMemoryMeta, state: FWMemoryState, x: Array, y: Array
    ) -> tuple[Array, FWMemoryState]:
        check_single_example(self, x, math.prod(self.input_shape))
        features = features_of(meta.trunk, x, self.input_shape)
        lstm = lstm_cell(
            meta.lstm, jnp.concatenate([features, state.error, state.previous_label]), state.lstm
        )

        write = dense(meta.write, lstm.h)
        beta = jax.nn.sigmoid(write[-1])
        k1, k2, v = jnp.split(jnp.tanh(write[:-1]), 3)
        key = jnp.outer(k1, k2).reshape(-1)
        memory = state.memory + beta * jnp.outer(v - state.memory @ key, key)
        memory = memory / jnp.maximum(1.0, jnp.linalg.norm(memory))  # Frobenius norm at most 1

        n, e = jnp.split(jnp.tanh(dense(meta.read, lstm.h)), 2)
        read = layer_norm(memory @ jnp.outer(n, e).reshape(-1))
        out = lstm.h + dense(meta.read_projection, read)
        logits = bound_logits(dense(meta.readout, out), self.tanh_bound)
        y = y.astype(logits.dtype)
        return logits, FWMemoryState(lstm, memory, cross_entropy_feedback(logits, y), y)


def unit_norm(v: Array, eps: float = 1e-6) -> Array:
    """v / ‖v‖₂, safe at v = 0."""
    return v * jax.lax.rsqrt(jnp.sum(v * v) + eps)
