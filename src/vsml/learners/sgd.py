"""Hand-designed online baselines: SGD and Adam on a small softmax network (VSML spec §5, SGD/Adam row).

The baselines that Kirsch & Schmidhuber (NeurIPS 2021, arXiv 2012.14905) compare their meta-learned learning
algorithms against. Per step t, on one example (x_t, y_t):

    ŷ_t = 100·tanh(f(θ_t; flatten(x_t)) / 100)     # predict first (§5: every baseline's output bound)
    g_t = ∇_θ CE(softmax(ŷ_t), y_t)                 # then learn from that example's label
    SGD:  θ_{t+1} = θ_t − α·g_t                     # no momentum
    Adam: θ_{t+1} = θ_t − α·m̂_t / (√v̂_t + ε),  b1 0.9, b2 0.999, ε 1e-8

f is a linear model (`hidden_sizes=()`, the code's `num_layers 1`) or an MLP with tanh hidden layers
(`hidden_sizes=(160,)`, `num_layers 2`). The spec's defaults: SGD α 0.01, Adam α 0.001.

Faithful: the update rules, the output bound, the Haiku-default initialisation (weights truncated normal at
±2σ with σ = 1/√fan_in, zero bias) and a fixed initialisation key (22) shared by every episode.
Documented choices: the same seed does not reproduce Haiku's exact numbers (Haiku splits its keys
differently); the learning rate is a meta-parameter, log α, read in `step` (not baked into an optax closure),
so it can be meta-learned or vmapped over; the Omniglot conv trunk of the authors' code is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from vsml.learners.base import Array, PyTree, TaskSpec, softmax_cross_entropy
from vsml.learners.modules import DenseParams, bound_logits, init_dense

OPTIMIZERS = ("sgd", "adam")
# Adam's constants: optax's defaults (spec §5 names no others).
ADAM_B1 = 0.9
ADAM_B2 = 0.999
ADAM_EPS = 1e-8


class OnlineSGDMeta(NamedTuple):
    """What an outer loop could optimise: only the learning rate, in log space so it stays positive."""

    log_learning_rate: Array  # [] log α


class OnlineSGDState(NamedTuple):
    """The inner-loop weights of one episode and the optimiser's statistics about them."""

    params: tuple[DenseParams, ...]  # one per layer, input to output
    opt_state: PyTree  # SGD: optax.EmptyState(); Adam: optax.ScaleByAdamState(count [], mu, nu like params)


@dataclass(frozen=True)
class OnlineSGD:
    """Online SGD or Adam on a linear or tanh-MLP softmax classifier (spec §5), as a `Learner`.

    Example:
        >>> learner = OnlineSGD(optimizer="adam", learning_rate=0.001, hidden_sizes=(160,))
        >>> meta = learner.init_meta(jax.random.key(0))
        >>> state = learner.init_state(meta, jax.random.key(1), TaskSpec((28, 28), 10))
        >>> logits, state = learner.step(meta, state, jnp.zeros((28, 28)), jnp.eye(10)[3])
    """

    optimizer: str = "sgd"  # "sgd" (no momentum) or "adam"
    learning_rate: float = 0.01  # initial value of exp(meta.log_learning_rate)
    hidden_sizes: tuple[int, ...] = ()  # () = linear softmax model; (160,) = one tanh hidden layer
    tanh_bound: float = 100.0  # logits are bounded to ±tanh_bound by tanh_bound·tanh(·/tanh_bound)
    init_seed: int = 22  # the fixed initialisation key of the authors' code
    fixed_init: bool = True  # True: all episodes start from the same weights; False: from the episode key

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"OnlineSGD.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"OnlineSGD.learning_rate must be > 0, got {self.learning_rate}")
        # Lists are unhashable and would break jit caching on the learner; normalise to a tuple of ints.
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"OnlineSGD.hidden_sizes must be positive, got {self.hidden_sizes}")
        if not self.tanh_bound > 0:
            raise ValueError(f"OnlineSGD.tanh_bound must be > 0, got {self.tanh_bound}")

    def init_meta(self, key: Array) -> OnlineSGDMeta:
        """log α as a scalar array; `key` is unused (the learning rate is a setting, not random)."""
        del key
        return OnlineSGDMeta(log_learning_rate=jnp.asarray(math.log(self.learning_rate), jnp.float32))

    def init_state(self, meta: OnlineSGDMeta, key: Array, spec: TaskSpec) -> OnlineSGDState:
        """Fresh weights (Haiku-default init; §5: a fixed key unless `fixed_init=False`), optimiser state."""
        del meta  # α is read in `step`, so a changed meta needs no new state
        init_key = jax.random.key(self.init_seed) if self.fixed_init else key
        params = init_mlp_params(init_key, (spec.input_size, *self.hidden_sizes, spec.num_classes))
        return OnlineSGDState(params=params, opt_state=self._direction().init(params))

    def step(
        self, meta: OnlineSGDMeta, state: OnlineSGDState, x: Array, y: Array
    ) -> tuple[Array, OnlineSGDState]:
        """Predict x with the current params, then take an optimiser step on CE(ŷ, y); returns (ŷ, state).

        `x` is one example or an inner batch `[B, *input_shape]` with `y: [B, C]`: then one mini-batch step on
        the batch-mean cross-entropy (a baseline on the batched episodes of BLUR)."""
        batched = y.ndim == 2
        x = self._flat_inputs(state, x, batched)

        def loss_and_logits(params: tuple[DenseParams, ...]) -> tuple[Array, Array]:
            logits = self._logits(params, x, batched)
            return jnp.mean(softmax_cross_entropy(logits, y)), logits

        (_, logits), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(state.params)
        direction, opt_state = self._direction().update(grads, state.opt_state, state.params)
        learning_rate = jnp.exp(meta.log_learning_rate)
        # Casting keeps the scan carry's dtypes fixed even if meta arrives in another precision.
        params = jax.tree.map(lambda p, d: p - (learning_rate * d).astype(p.dtype), state.params, direction)
        return logits, OnlineSGDState(params=params, opt_state=opt_state)

    def predict(self, meta: OnlineSGDMeta, state: OnlineSGDState, x: Array) -> Array:
        """Forward-only: the logits of one example or of a batch `[B, *input_shape]`; nothing learns."""
        del meta
        input_size = state.params[0].w.shape[0]
        batched = x.ndim >= 1 and math.prod(x.shape[1:]) == input_size  # as BLUR.predict tells them apart
        return self._logits(state.params, self._flat_inputs(state, x, batched), batched)

    def _logits(self, params: tuple[DenseParams, ...], x: Array, batched: bool) -> Array:
        return jax.vmap(self.logits, (None, 0))(params, x) if batched else self.logits(params, x)

    def _flat_inputs(self, state: OnlineSGDState, x: Array, batched: bool) -> Array:
        """One example flattened to [D], or a batch to [B, D]."""
        input_size = state.params[0].w.shape[0]
        shape = (x.shape[0], input_size) if batched else (input_size,)
        return jnp.reshape(x, shape).astype(state.params[0].w.dtype)

    def logits(self, params: tuple[DenseParams, ...], x: Array) -> Array:
        """Bounded logits [C] of a flat input x [D]: tanh hidden layers, linear output, tanh bound (§5)."""
        h = x
        for layer in params[:-1]:
            h = jnp.tanh(h @ layer.w + layer.b)
        out = h @ params[-1].w + params[-1].b
        return bound_logits(out, self.tanh_bound)

    def _direction(self) -> optax.GradientTransformation:
        """The optimiser without its learning rate: α·direction is subtracted in `step`."""
        if self.optimizer == "adam":
            return optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
        return optax.identity()


def init_mlp_params(key: Array, sizes: tuple[int, ...]) -> tuple[DenseParams, ...]:
    """Haiku's default `Linear` init for layers sizes[0]→…→sizes[-1]: w ~ N(0, 1/fan_in) cut at ±2σ, b = 0."""
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple(init_dense(k, i, o) for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True))


def online_sgd(
    learning_rate: float = 0.01, hidden_sizes: tuple[int, ...] = (), **kwargs: object
) -> OnlineSGD:
    """Plain online SGD, no momentum, spec §5 default α 0.01."""
    return OnlineSGD(optimizer="sgd", learning_rate=learning_rate, hidden_sizes=hidden_sizes, **kwargs)


def online_adam(
    learning_rate: float = 0.001, hidden_sizes: tuple[int, ...] = (), **kwargs: object
) -> OnlineSGD:
    """Online Adam (b1 0.9, b2 0.999, ε 1e-8), spec §5 default α 0.001."""
    return OnlineSGD(optimizer="adam", learning_rate=learning_rate, hidden_sizes=hidden_sizes, **kwargs)
