"""What the benchmarks here share: the best-of-R timer, the machine fields of their JSON, the random episodes
of the meta-loss benchmarks, the check that two results agree before they are timed and the JSON key of an
at-once setting."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def best_time(fn: Callable[[], Any], repeats: int, warm_up: bool = True) -> float:
    """The fastest of `repeats` calls of `fn` in seconds, each waited for (`block_until_ready`). With
    `warm_up`, one call first compiles and warms it (pass False when the caller has already called it)."""
    return best_times({"fn": fn}, repeats, warm_up)["fn"]


def best_times(fns: dict[str, Callable[[], Any]], repeats: int, warm_up: bool = True) -> dict[str, float]:
    """`best_time` of several functions with their calls interleaved (round-robin, after one warm-up call
    each unless `warm_up` is False), so a slow period of a shared machine hits every function about equally
    instead of all of one's calls (seen on 2-core VMs: one variant's every call 3× slower for a few seconds)."""
    if warm_up:
        for fn in fns.values():
            jax.block_until_ready(fn())
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def machine_fields() -> dict[str, str]:
    """Where the figures were measured: the JAX device, JAX's version and the CPU architecture."""
    return {"device": str(jax.devices()[0]), "jax": jax.__version__, "machine": platform.machine()}


def at_once_label(setting: int | str | None) -> str:
    """The JSON key of an episodes/members-at-once setting: "all" (None), "auto" or the count."""
    return "all" if setting is None else str(setting)


def random_episodes(episodes: int, length: int, inputs: int, classes: int = 10) -> tuple[jax.Array, ...]:
    """xs [N, T, A] standard normal, ys [N, T, C] one-hot random labels and N episode keys (fixed seeds, so
    every benchmark that calls it times the same data)."""
    xs = jax.random.normal(jax.random.PRNGKey(1), (episodes, length, inputs))
    labels = jax.random.randint(jax.random.PRNGKey(2), (episodes, length), 0, classes)
    return xs, jax.nn.one_hot(labels, classes), jax.random.split(jax.random.PRNGKey(3), episodes)


def tree_difference(got: Any, want: Any) -> tuple[float, float]:
    """(largest |got − want| over the leaves of two equal-structure pytrees, largest |want|)."""
    difference = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )
    return difference, max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(want))
