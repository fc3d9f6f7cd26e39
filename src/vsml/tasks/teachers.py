"""Generated classification tasks from random teachers: a new task in every episode.

Not in the papers: a task family for meta-training and meta-testing learned learning algorithms beyond a few
image data sets (issue 24's task mixture). A dataset named `linear_teacher_F_C`, `mlp_teacher_F_C` or
`blobs_teacher_F_C` is an infinite stream of F-feature inputs labelled by a teacher drawn from the stream's key:

    linear:  x ~ N(0, I),  y = argmax_c (x W)_c               W ~ N(0, 1)^{F x C}
    mlp:     x ~ N(0, I),  y = argmax_c (tanh(x W1 / √F · 2) W2)_c     W1 ~ N(0, 1)^{F x 32}, W2 ~ N(0, 1)^{32 x C}
    blobs:   y ~ U{0..C-1}, k ~ U{0..2},  x = (m_{y,k} + ε) / √2     m ~ N(0, I)^{C x 3 x F}, ε ~ N(0, I)

Blobs are a different kind of task (a class is a mixture of three Gaussian clusters; at few features no linear
rule separates it) kept for meta-*testing*: the flagship LA's suite uses it as a generated family it never
trained on.

The episode sampler calls a stream once per episode with that episode's key (`tasks.episodes`), so each episode
has its own teacher: what a learner can carry from one episode to the next is how to learn, not the task. The
gain 2 puts the hidden units in tanh's non-linear range, so the MLP teacher's classes are not linearly separable.
Inputs are already standardised: unit variance per feature in every kind (per-feature normalisation leaves a
stream unchanged).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp

TEACHER_KINDS = ("linear", "mlp", "blobs")
TEACHER_HIDDEN = 32
BLOBS_PER_CLASS = 3
_TEACHER_GAIN = 2.0
_NAME = re.compile(r"^(linear|mlp|blobs)_teacher_(\d+)_(\d+)$")
MAX_FEATURES = 4096
MAX_CLASSES = 1000


def parse_teacher_name(name: str) -> tuple[str, int, int] | None:
    """(kind, features, classes) of a teacher dataset name, None for another name; a clear error for a teacher
    name whose sizes are out of range."""
    match = _NAME.match(name)
    if match is None:
        return None
    kind, features, classes = match.group(1), int(match.group(2)), int(match.group(3))
    if not 1 <= features <= MAX_FEATURES or not 2 <= classes <= MAX_CLASSES:
        raise ValueError(
            f"dataset {name!r}: a teacher task needs 1..{MAX_FEATURES} features and 2..{MAX_CLASSES} classes, "
            f"e.g. linear_teacher_16_5"
        )
    return kind, features, classes


Stream = Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]


@functools.cache  # one function per setting: a stream is a static jit argument hashed by identity
def teacher_stream(kind: str, features: int, classes: int) -> Stream:
    """`stream(key, num) -> (x [num, features] float32, y [num] int32)`: `num` examples of the teacher that
    `key` draws (module docstring). Jittable with `num` static."""
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher kind must be one of {', '.join(TEACHER_KINDS)}, got {kind!r}")

    def stream(key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
        key_teacher, key_x = jax.random.split(key)
        if kind == "blobs":
            return _blobs(key_teacher, key_x, num, features, classes)
        x = jax.random.normal(key_x, (num, features), jnp.float32)
        if kind == "linear":
            weights = jax.random.normal(key_teacher, (features, classes), jnp.float32)
            logits = x @ weights
        else:
            key_in, key_out = jax.random.split(key_teacher)
            w_in = jax.random.normal(key_in, (features, TEACHER_HIDDEN), jnp.float32)
            w_out = jax.random.normal(key_out, (TEACHER_HIDDEN, classes), jnp.float32)
            logits = jnp.tanh(_TEACHER_GAIN * (x @ w_in) / jnp.sqrt(features)) @ w_out
        return x, jnp.argmax(logits, axis=-1).astype(jnp.int32)

    return stream


def _blobs(
    key_teacher: jax.Array, key_x: jax.Array, num: int, features: int, classes: int
) -> tuple[jax.Array, jax.Array]:
    """`num` examples of the Gaussian-mixture teacher `key_teacher` draws (module docstring)."""
    centres = jax.random.normal(key_teacher, (classes, BLOBS_PER_CLASS, features), jnp.float32)
    key_y, key_k, key_noise = jax.random.split(key_x, 3)
    y = jax.random.randint(key_y, (num,), 0, classes)
    k = jax.random.randint(key_k, (num,), 0, BLOBS_PER_CLASS)
    noise = jax.random.normal(key_noise, (num, features), jnp.float32)
    return (centres[y, k] + noise) / jnp.sqrt(2.0), y.astype(jnp.int32)
