"""Meta-RNN baseline (Hochreiter et al. 2001 style), as compared against in Kirsch & Schmidhuber, NeurIPS 2021
(arXiv 2012.14905), VSML spec §5.

A single LSTM whose weights are the meta-parameters; learning is its forward dynamics on the input stream
[x_t, g_{t−1}, y_{t−1}]. Per step t:

    u_t = [flatten(trunk(x_t)), g_{t−1}, y_{t−1}]        # the previous label is always fed
    (h, c) ← LSTM(u_t, (h, c)), applied num_micro_ticks (2) times to the same input
    ŷ_t = 100·tanh(Linear(h)/100)                        # predict before the label is seen
    g_t = softmax(ŷ_t) − y_t                             # ∂CE/∂ŷ, fed back at t+1

Faithful: Haiku's `LSTM(128)` (one Linear on [u, h], gates i, g, f, o, +1 on the forget gate), zero initial
state, 2 micro ticks, the output bound, the optional conv trunk 3 × (Conv 3×3, stride 2, SAME, 64 ch) with ReLU,
ReLU, tanh. For 28×28 inputs padded to 62 outputs the meta-parameters number 538,942 (tested).
Documented choice: sizes are fixed settings (`input_shape`, `num_classes`), because the LSTM's weights depend on
them; tasks of other sizes are padded to them (`transform.pad_input_to`, `transform.pad_classes_to`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vsml.learners.base import Array, TaskSpec
from vsml.learners.modules import (
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
    lstm_cell,
    trunk_output_size,
    zero_lstm_state,
)


class MetaRNNMeta(NamedTuple):
    trunk: tuple[ConvParams, ...]  # () without the conv trunk
    lstm: DenseParams  # w [features + 2C + H, 4H]
    readout: DenseParams  # w [H, C]


class MetaRNNState(NamedTuple):
    lstm: LSTMState  # h, c [H]
    error: Array  # [C] g_{t−1}
    previous_label: Array  # [C] y_{t−1}


@dataclass(frozen=True)
class MetaRNN:
    """The Meta-RNN baseline of spec §5 as a `Learner` (sizes fixed; see the module docstring)."""

    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 62
    slow_size: int = 128  # LSTM units
    num_micro_ticks: int = 2
    tanh_bound: float = 100.0
    use_conv: bool = False
    conv_channels: int = 64

    def __post_init__(self) -> None:
        fixed_shape_settings(self)
        if self.slow_size < 1 or self.num_micro_ticks < 1 or self.conv_channels < 1:
            raise ValueError(
                f"MetaRNN.slow_size, num_micro_ticks and conv_channels must be >= 1, got {self.slow_size}, "
                f"{self.num_micro_ticks}, {self.conv_channels}"
            )

    @property
    def feature_size(self) -> int:
        if self.use_conv:
            return trunk_output_size(self.input_shape, self.conv_channels)
        return math.prod(self.input_shape)

    def init_meta(self, key: Array) -> MetaRNNMeta:
        k_trunk, k_lstm, k_out = jax.random.split(key, 3)
        trunk = ()
        if self.use_conv:
            trunk = init_conv_trunk(k_trunk, image_shape(self.input_shape)[-1], self.conv_channels)
        inputs = self.feature_size + 2 * self.num_classes
        return MetaRNNMeta(
            trunk=trunk,
            lstm=init_lstm(k_lstm, inputs, self.slow_size),
            readout=init_dense(k_out, self.slow_size, self.num_classes),
        )

    def init_state(self, meta: MetaRNNMeta, key: Array, spec: TaskSpec) -> MetaRNNState:
        """Zero LSTM state, no error and no label before the first step; `key` is unused (deterministic)."""
        del meta, key
        check_fixed_shape(self, spec, self.input_shape, self.num_classes)
        zeros = jnp.zeros((self.num_classes,), jnp.float32)
        return MetaRNNState(lstm=zero_lstm_state(self.slow_size), error=zeros, previous_label=zeros)

    def step(self, meta: MetaRNNMeta, state: MetaRNNState, x: Array, y: Array) -> tuple[Array, MetaRNNState]:
        check_single_example(self, x, math.prod(self.input_shape))
        features = features_of(meta.trunk, x, self.input_shape)
        inputs = jnp.concatenate([features, state.error, state.previous_label])
        lstm = state.lstm
        for _ in range(self.num_micro_ticks):  # the same input, twice (spec §5 num_micro_ticks)
            lstm = lstm_cell(meta.lstm, inputs, lstm)
        logits = bound_logits(dense(meta.readout, lstm.h), self.tanh_bound)
        y = y.astype(logits.dtype)
        return logits, MetaRNNState(lstm=lstm, error=cross_entropy_feedback(logits, y), previous_label=y)
