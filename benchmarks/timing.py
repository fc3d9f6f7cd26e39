"""What every benchmark here shares: the best-of-R timer and the machine fields of its JSON."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import jax


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
