"""Hebbian fast-weight baseline (HebbianFW; Miconi et al. 2018 style differentiable plasticity), as compared
against in Kirsch & Schmidhuber, NeurIPS 2021 (arXiv 2012.14905), VSML spec §5.

One plastic layer whose slow weights W, plasticity coefficients C, bias b and plasticity rate ρ are meta-learned;
the fast weights F start at zero each episode. With x̃ = [flatten(trunk(x_t)), aux1, aux2]:

    pass 1 (predict), aux = 0:        ŷ_t = 100·tanh((x̃·(W + C⊙F) + b)/100),  g_t = softmax(ŷ_t) − y_t
    pass 2 (learn), aux = [g_t, y_t]: p = softmax(x̃·(W + C⊙F) + b)             # not bounded, as in the code
    Oja (default):   F_ij ← F_ij + η·p_j·(x̃_i − p_j·F_ij)
    plain Hebb:      F ← (1 − η)·F + η·x̃ pᵀ,          η = σ(ρ), ρ initialised to −4.5 (η ≈ 0.011)

Faithful: the two passes, W ~ trunc-normal(1/√fan_in), C = 0.01, b = 0, ρ = −4.5, Oja on (the authors'
`hebbian.yaml`), the optional conv trunk 3 × (Conv 3×3, stride 2, SAME, 8 ch) with ReLU, ReLU, tanh. For 28×28
inputs padded to 62 outputs the meta-parameters number 112,655 (tested).
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
    bound_logits,
    check_fixed_shape,
    check_single_example,
    cross_entropy_feedback,
    features_of,
    fixed_shape_settings,
    image_shape,
    init_conv_trunk,
    init_dense,
    trunk_output_size,
)

PLASTICITY_INIT = 0.01  # C
RATE_LOGIT_INIT = -4.5  # ρ, η = σ(ρ)


class HebbianMeta(NamedTuple):
    trunk: tuple[ConvParams, ...]  # () without the conv trunk
    w: Array  # [D̃, C] slow weights, D̃ = features + 2C
    plasticity: Array  # [D̃, C] per-synapse coefficient C
    b: Array  # [C]
    rate_logit: Array  # [] ρ


class HebbianState(NamedTuple):
    fast_weights: Array  # [D̃, C] F, zero at episode start


@dataclass(frozen=True)
class HebbianFW:
    """The HebbianFW baseline of spec §5 as a `Learner` (sizes fixed; pad other tasks to them)."""

    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 62
    use_oja: bool = True  # False: plain Hebb with decay
    tanh_bound: float = 100.0
    use_conv: bool = False
    conv_channels: int = 8

    def __post_init__(self) -> None:
        fixed_shape_settings(self)
        if self.conv_channels < 1:
            raise ValueError(f"HebbianFW.conv_channels must be >= 1, got {self.conv_channels}")

    @property
    def plastic_inputs(self) -> int:
        """D̃: the features plus the two auxiliary inputs (error and label) of pass 2."""
        features = math.prod(self.input_shape)
        if self.use_conv:
            features = trunk_output_size(self.input_shape, self.conv_channels)
        return features + 2 * self.num_classes

    def init_meta(self, key: Array) -> HebbianMeta:
        k_trunk, k_w = jax.random.split(key)
        trunk = ()
        if self.use_conv:
            trunk = init_conv_trunk(k_trunk, image_shape(self.input_shape)[-1], self.conv_channels)
        slow = init_dense(k_w, self.plastic_inputs, self.num_classes)
        return HebbianMeta(
            trunk=trunk,
            w=slow.w,
            plasticity=jnp.full(slow.w.shape, PLASTICITY_INIT, jnp.float32),
            b=slow.b,
            rate_logit=jnp.asarray(RATE_LOGIT_INIT, jnp.float32),
        )

    def init_state(self, meta: HebbianMeta, key: Array, spec: TaskSpec) -> HebbianState:
        del key
        check_fixed_shape(self, spec, self.input_shape, self.num_classes)
        return HebbianState(fast_weights=jnp.zeros_like(meta.w))

    def step(self, meta: HebbianMeta, state: HebbianState, x: Array, y: Array) -> tuple[Array, HebbianState]:
        check_single_example(self, x, math.prod(self.input_shape))
        features = features_of(meta.trunk, x, self.input_shape)
        weights = meta.w + meta.plasticity * state.fast_weights
        y = y.astype(weights.dtype)

        def plastic_layer(error: Array, label: Array) -> tuple[Array, Array]:
            inputs = jnp.concatenate([features, error, label])
            return inputs, inputs @ weights + meta.b

        _, out = plastic_layer(jnp.zeros_like(y), jnp.zeros_like(y))  # pass 1: predict
        logits = bound_logits(out, self.tanh_bound)
        inputs, out = plastic_layer(cross_entropy_feedback(logits, y), y)  # pass 2: see error and label
        return logits, HebbianState(fast_weights=self.update(state.fast_weights, meta, inputs, out))

    def update(self, fast_weights: Array, meta: HebbianMeta, inputs: Array, out: Array) -> Array:
        """The fast-weight rule on x̃ [D̃] and the post-synaptic softmax p [C] of pass 2."""
        rate = jax.nn.sigmoid(meta.rate_logit)
        p = jax.nn.softmax(out)
        if self.use_oja:
            return fast_weights + rate * p[None, :] * (inputs[:, None] - p[None, :] * fast_weights)
        return (1.0 - rate) * fast_weights + rate * jnp.outer(inputs, p)
