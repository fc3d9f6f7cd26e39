"""Online episodes sampled on device (spec/vsml.md §2 and §3.3, "Episode construction").

An online episode is T consecutive examples with inner batch 1; every episode of a batch has its own data
(spec §3.1: "each pair has its own data episode D_i (distinct examples)"). The authors' tf.data pipeline
shuffles the training split and repeats it; here each episode instead draws its own sample without
replacement, so within an episode no example repeats while T <= n, and when T > n (the 20-image `random` task)
it runs through successive fresh permutations, like a reshuffled, repeated dataset.

`EpisodeSource` is a pytree: its arrays are *leaves*, so they are traced arguments of a jitted
`sample_online_episodes`, not closed-over constants (XLA would embed a 188 MB MNIST array into the program
and compile slowly); its shapes and generator are static metadata, so all sources of one shape (e.g. the
train and test splits of `random`) share a compilation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vsml.tasks.datasets import SPLITS, Dataset

__all__ = ["EpisodeSource", "Episodes", "make_episode_source", "sample_online_episodes"]

Array = jax.Array

# Sampling T of n indices without replacement: Floyd's algorithm costs O(T^2) (a sequential loop of T steps,
# each comparing against T chosen indices), a permutation O(n log n) per episode. On a 2-core CPU, for
# 64 episodes of T=500 from MNIST's n=60000, Floyd takes ~8 ms and a permutation prefix ~1.5 s. Floyd is used
# while T^2 <= _FLOYD_FACTOR * n: T = 500 and 2000 (spec §2) on MNIST-size splits. T > n always cycles.
_FLOYD_FACTOR = 1024


class Episodes(NamedTuple):
    """A batch of online episodes, ready for `learners.base.run_episodes`."""

    xs: Array  # [N, T, *input_shape] float32
    ys: Array  # [N, T, num_classes] float32 one-hot


@dataclass(frozen=True, eq=False)  # eq=False: no elementwise == on arrays
class EpisodeSource:
    """Where episodes come from: an array split on device, or a generated stream (a pytree; see module doc).

    Array source: ``x`` ``[n, *input_shape]`` float32, ``y`` ``[n]`` int32, ``stream`` None. Stream source:
    ``x`` and ``y`` None and ``stream(key, num) -> (x [num, *input_shape], y [num] int32)``.
    """

    x: Array | None  # [n, *input_shape] float32 (leaf)
    y: Array | None  # [n] int32 labels (leaf)
    num_classes: int  # static
    input_shape: tuple[int, ...]  # static
    stream: Callable[[Array, int], tuple[Array, Array]] | None = None  # static; hashed by identity

    @property
    def size(self) -> int | None:
        """Number of examples of an array source; None for a stream."""
        return None if self.x is None else int(self.x.shape[0])


jax.tree_util.register_dataclass(
    EpisodeSource, data_fields=["x", "y"], meta_fields=["num_classes", "input_shape", "stream"]
)


def make_episode_source(dataset: Dataset, split: str) -> EpisodeSource:
    """The episode source of one split ("train" or "test") of `dataset`; array splits are moved to device."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    name = f"{dataset.name}/{split}"
    shape = tuple(int(d) for d in dataset.input_shape)
    if dataset.is_stream:
        return EpisodeSource(None, None, int(dataset.num_classes), shape, dataset.stream)
    x, y = dataset.split(split)
    if x.shape[0] == 0:
        raise ValueError(f"dataset split {name} is empty; episodes need at least one example")
    if x.shape[0] != y.shape[0] or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name}: x {x.shape} and y {y.shape} do not fit input_shape {shape}")
    x_device, y_device = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    return EpisodeSource(x_device, y_device, int(dataset.num_classes), shape)


def _check_count(value: object, what: str) -> int:
    # Both counts fix array shapes, so they must be concrete Python ints (static under jit).
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{what} must be a Python int, got {type(value).__name__}; under jax.jit mark it static "
            f"(static_argnames=('num_episodes', 'length'))"
        )
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


def _floyd_sample(key: Array, n: int, length: int) -> Array:
    """`length` distinct indices of range(n) in uniformly random order (Floyd's algorithm + a shuffle)."""
    key_pick, key_order = jax.random.split(key)
    top = jnp.arange(n - length, n, dtype=jnp.int32)  # step i draws from [0, n - length + i]
    draws = jax.random.randint(key_pick, (length,), 0, top + 1, dtype=jnp.int32)

    def pick(i: Array, chosen: Array) -> Array:
        # Floyd: take the draw unless it was chosen before; else this step's top index, never chosen yet.
        taken = jnp.any(chosen == draws[i])
        return chosen.at[i].set(jnp.where(taken, top[i], draws[i]))

    chosen = jax.lax.fori_loop(0, length, pick, jnp.full((length,), -1, jnp.int32))
    # Floyd gives a uniform *set*; its order is not uniform (top indices come late), so shuffle it.
    return jax.random.permutation(key_order, chosen)


def _permutation_blocks(key: Array, n: int, length: int) -> Array:
    """The first `length` entries of ceil(length / n) successive independent permutations of range(n)."""
    num_blocks = math.ceil(length / n)
    keys = jax.random.split(key, num_blocks)
    blocks = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)  # [num_blocks, n]
    return blocks.reshape(-1)[:length].astype(jnp.int32)


def _episode_indices(key: Array, n: int, length: int, floyd_factor: int) -> Array:
    """Indices of one episode: distinct while length <= n, else cycling through fresh permutations."""
    if length <= n and length * length <= floyd_factor * n:
        return _floyd_sample(key, n, length)
    return _permutation_blocks(key, n, length)


def sample_online_episodes(source: EpisodeSource, key: Array, num_episodes: int, length: int) -> Episodes:
    """Sample `num_episodes` online episodes of `length` steps from `source` (spec §2, §3.3).

    Each episode gets its own key and so its own examples; the same key gives the same episodes. Pure and
    jittable with `num_episodes` and `length` static, e.g.
    ``jax.jit(sample_online_episodes, static_argnames=("num_episodes", "length"))``.
    """
    num_episodes = _check_count(num_episodes, "num_episodes")
    length = _check_count(length, "length")
    if source.stream is None and (source.x is None or source.y is None):
        raise ValueError("EpisodeSource has neither arrays nor a stream; build it with make_episode_source")
    return _sample_online_episodes(source, key, num_episodes, length, _FLOYD_FACTOR)


# Jitted here too so that eager calls (an evaluation loop, a notebook) compile once per shape instead of
# dispatching the sampler op by op (seconds per call); under an outer jit this is simply inlined.
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _sample_online_episodes(
    source: EpisodeSource, key: Array, num_episodes: int, length: int, floyd_factor: int
) -> Episodes:
    keys = jax.random.split(key, num_episodes)
    if source.stream is not None:
        xs, labels = jax.vmap(lambda k: source.stream(k, length))(keys)
    else:
        n = int(source.x.shape[0])
        indices = jax.vmap(lambda k: _episode_indices(k, n, length, floyd_factor))(keys)  # [N, T]
        xs, labels = source.x[indices], source.y[indices]
    ys = jax.nn.one_hot(labels, source.num_classes, dtype=jnp.float32)
    return Episodes(xs.astype(jnp.float32), ys)
