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
    if warm_up:
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def machine_fields() -> dict[str, str]:
    """Where the figures were measured: the JAX device, JAX's version and the CPU architecture."""
    return {"device": str(jax.devices()[0]), "jax": jax.__version__, "machine": platform.machine()}
