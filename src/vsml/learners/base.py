"""The one interface every learning algorithm implements: an online learner (DESIGN.md).

    meta = learner.init_meta(key)                     # what the outer loop optimises
    state = learner.init_state(meta, key, spec)       # the inner-loop "weights" of one episode
    logits, state = learner.step(meta, state, x, y)   # predict x first, then learn from its label y

`step` makes its prediction *before* it sees the label, so the online accuracy of an episode measures how fast the
learner learns. Labels are one-hot float vectors (`y: [num_classes]`), which also covers padded label spaces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any


@dataclass(frozen=True)
class TaskSpec:
    """Static shapes of one task: what a learner needs to build its per-episode state."""

    input_shape: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        if not self.input_shape or any(int(d) <= 0 for d in self.input_shape):
            raise ValueError(f"TaskSpec.input_shape must be non-empty and positive, got {self.input_shape}")
        if int(self.num_classes) < 2:
            raise ValueError(f"TaskSpec.num_classes must be >= 2, got {self.num_classes}")

    @property
    def input_size(self) -> int:
        size = 1
        for d in self.input_shape:
            size *= int(d)
        return size


@runtime_checkable
class Learner(Protocol):
    """A learning algorithm: static settings (a frozen dataclass) plus three pure functions."""

    def init_meta(self, key: Array) -> PyTree: ...

    def init_state(self, meta: PyTree, key: Array, spec: TaskSpec) -> PyTree: ...

    def step(self, meta: PyTree, state: PyTree, x: Array, y: Array) -> tuple[Array, PyTree]: ...


def spec_of_episode(xs: Array, ys: Array) -> TaskSpec:
    """The per-example TaskSpec of one episode `xs: [T, *input_shape]`, `ys: [T, num_classes]` (one-hot).

    With an inner batch, `xs: [T, B, *input_shape]` and `ys: [T, B, num_classes]`: the axes between T and the
    classes in ys are batch axes, and are not part of the input shape.
    """
    if ys.ndim < 2:
        raise ValueError(f"ys must be one-hot labels of shape [T, num_classes], got shape {tuple(ys.shape)}")
    batch_axes = ys.ndim - 2
    if xs.shape[: 1 + batch_axes] != ys.shape[:-1]:
        raise ValueError(
            f"xs {tuple(xs.shape)} and ys {tuple(ys.shape)} disagree on the episode length or inner batch"
        )
    return TaskSpec(tuple(int(d) for d in xs.shape[1 + batch_axes :]), int(ys.shape[-1]))


def run_episode(
    learner: Learner, meta: PyTree, key: Array, xs: Array, ys: Array, remat: bool | int = False
) -> Array:
    """Run one online episode as a single `lax.scan` over `learner.step`; returns the logits `[T, C]`.

    The logit at step t is the prediction for xs[t] made before ys[t] was given. `remat=True` recomputes each
    step in the backward pass (`jax.checkpoint`), so backprop through the unroll stores only the carried state
    per step, not every intermediate of every synapse (spec §3.2). `remat=k` (an int ≥ 2) checkpoints blocks
    of k steps as well: backprop then keeps the state only at block boundaries plus, while it recomputes one
    block, that block's k states (T/k + k states instead of T; k ≈ √T is least; one more forward pass).
    """
    state = learner.init_state(meta, key, spec_of_episode(xs, ys))
    return run_episode_from_state(learner, meta, state, xs, ys, remat)[0]


def run_episode_from_state(
    learner: Learner, meta: PyTree, state: PyTree, xs: Array, ys: Array, remat: bool | int = False
) -> tuple[Array, PyTree]:
    """`run_episode` from a given initial state; also returns the final state (for resuming an episode)."""

    def body(carry: PyTree, xy: tuple[Array, Array]) -> tuple[PyTree, Array]:
        logits, carry = learner.step(meta, carry, xy[0], xy[1])
        return carry, logits

    if isinstance(remat, bool) or remat in (0, 1):
        return _scan_steps(jax.checkpoint(body) if remat else body, state, xs, ys)
    if remat < 0:
        raise ValueError(f"remat must be a bool or a block length >= 2, got {remat}")
    return _scan_in_blocks(jax.checkpoint(body), state, xs, ys, int(remat))


def _scan_steps(body: Callable, state: PyTree, xs: Array, ys: Array) -> tuple[Array, PyTree]:
    final_state, logits = jax.lax.scan(body, state, (xs, ys))
    return logits, final_state


def _scan_in_blocks(step: Callable, state: PyTree, xs: Array, ys: Array, block: int) -> tuple[Array, PyTree]:
    """Two-level rematerialisation: an outer scan over checkpointed blocks of `block` checkpointed steps; the
    T mod block steps left over run after them, per-step checkpointed."""
    blocks = xs.shape[0] // block
    cut = blocks * block

    def run_block(carry: PyTree, xy: tuple[Array, Array]) -> tuple[PyTree, Array]:
        return jax.lax.scan(step, carry, xy)

    def split(a: Array) -> Array:
        return jnp.reshape(a[:cut], (blocks, block, *a.shape[1:]))

    state, logits = jax.lax.scan(jax.checkpoint(run_block), state, (split(xs), split(ys)))
    logits = jnp.reshape(logits, (cut, *logits.shape[2:]))
    if cut < xs.shape[0]:
        rest, state = _scan_steps(step, state, xs[cut:], ys[cut:])
        logits = jnp.concatenate([logits, rest])
    return logits, state


# "auto" on a CPU: run together about as many episodes as keep this many sub-RNN applications per micro tick
# (VSML), the count rounded down to a power of two (below). Measured on 2 cores by benchmarks/episodes_at_once.py
# (reports/speed_cpu/episodes_at_once_*.json; forward meta-loss, the Fig. 6 learner, N = 8 episodes of T = 100,
# seconds for k at a time, interleaved in one run): 784 → 10 (7,840 per episode) one 0.358, two 0.354, four
# 0.395, all 0.556; 400 → 10 one 0.197, two 0.185, four 0.179, all 0.210; 196 → 10 four 0.090, all 0.088;
# 64 → 10, N = 128, T = 50: 16 0.255, 25 0.249, 32 0.247, 51 0.256, all 0.409. 32,768, before, ran 784 → 10
# four at a time (12% slower than two in the stored run, 6–20% in six earlier ones). Deeper networks
# (784 → 32 → 10: 25,408 per episode) run one at a time: 1.6–2× faster than all vmapped (inner_loop.py), and
# the whole ES iteration of configs/deep.yaml and conv.yaml is fastest one at a time on 1 and 2 devices
# (es_iteration.py --compare).
CPU_APPLICATIONS_AT_ONCE = 16_384
# The same when differentiating through the episodes (the backward pass holds more per application; per-step
# remat, LayerNorm as the gradient Fig. 6 config, hand-written VJP): 784 → 10 one 2.91 s, two 3.39, all 4.05;
# 400 → 10 one 1.74, two 1.46, four 1.58; 196 → 10 four 0.73, all 0.75; 64 → 10 all 0.25, four 0.30: the
# fastest each time.
CPU_APPLICATIONS_AT_ONCE_BACKPROP = 8_192
AUTO = "auto"


def check_count_or_auto(value: object, what: str) -> None:
    """The settings that take a positive count, null (all / whole) or "auto": a clear error otherwise."""
    if value in (None, AUTO):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, null or 'auto', got {value!r}")


def run_episodes(
    learner: Learner, meta: PyTree, keys: Array, xs: Array, ys: Array, at_once: int | str | None = AUTO
) -> Array:
    """`run_episode` vmapped over a batch of episodes: keys [N, 2], xs [N, T, ...], ys [N, T, C] -> [N, T, C].
    `at_once`: run only that many episodes together (see `map_in_batches`; "auto": `resolve_at_once`)."""
    at_once = resolve_at_once(learner, at_once, xs, ys)
    return map_in_batches(lambda k, x, y: run_episode(learner, meta, k, x, y), (keys, xs, ys), at_once)


def resolve_at_once(
    learner: Learner,
    at_once: int | str | None,
    xs: Array,
    ys: Array,
    budget: int = CPU_APPLICATIONS_AT_ONCE,
) -> int | None:
    """How many of the episodes `xs [N, T, ...]`, `ys [N, T, C]` to run together: `at_once` itself unless it is
    "auto". "auto" on a CPU, for a learner that counts its work (`sub_rnn_applications`, VSML): the largest
    power of two of episodes within `budget` sub-RNN applications per micro tick
    (`CPU_APPLICATIONS_AT_ONCE_BACKPROP` when differentiated), so their state stays in cache; otherwise (GPUs,
    other learners, small networks) all N at once (None)."""
    if at_once != AUTO:
        return at_once  # type: ignore[return-value]
    count = getattr(learner, "sub_rnn_applications", None)
    if count is None or jax.default_backend() != "cpu":
        return None
    per_episode = max(1, count(spec_of_episode(xs[0], ys[0])))
    # The largest power of two within the budget (at least 1): 3 episodes at a time ran 10–36% slower than 2,
    # 5 slower than 4 (episodes_at_once.py, 8 episodes: 144 → 32 → 10 forward three 0.269 s, two 0.244, four
    # 0.230; 300 → 10 five 0.166, four 0.134). Rounding to the nearest power of two instead (3.3 → 4) won
    # 2–7% on three hidden-layer shapes but lost 5–6% on `make demo`'s population (64 → 10: 32 at a time
    # 0.475 s per ES iteration, 16 or 25 0.447–0.450; reports/speed_cpu).
    together = 1 << max(0, (budget // per_episode).bit_length() - 1)
    return None if together >= xs.shape[0] else together


def map_in_batches(fn: Callable[..., PyTree], args: tuple, at_once: int | None) -> PyTree:
    """`jax.vmap(fn)(*args)`, or with `at_once` a loop over batches of that many (`lax.map`), same result.

    On a CPU, VSML's per-episode state (a 784 → 10 layer: 8 MB of gate pre-activations) stays in cache only
    if few episodes run together: one at a time measured 1.6–2× faster on dense 784 → 10, 784 → 32 → 10 and
    the conv network (reports/speed_cpu; benchmarks/inner_loop.py, `fast_map` against `fast_vmap`); on a GPU
    all at once keeps the device busy.
    """
    if at_once is None:
        return jax.vmap(fn)(*args)
    if isinstance(at_once, bool) or not isinstance(at_once, int) or at_once < 1:
        raise ValueError(
            f"at_once must be an int >= 1 or None (all at once), got {at_once!r} ('auto': resolve_at_once first)"
        )
    # One at a time without lax.map's batch_size: a size-1 vmap inside the loop made VSML's conv network
    # ~1.9x slower on XLA:CPU (8.4 vs 4.4 ms per episode-step, benchmarks/inner_loop.py).
    return jax.lax.map(lambda a: fn(*a), args, batch_size=None if at_once == 1 else at_once)


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Cross-entropy of one-hot `labels` under `softmax(logits)`, over the last axis."""
    return -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1)
