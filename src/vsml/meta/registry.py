"""The meta-optimisers by config name: `meta_optimizer: <name>` picks one, the `<name>:` section sets it."""

from __future__ import annotations

from typing import Any

from vsml.meta.cmaes import CMAES
from vsml.meta.es import OpenES
from vsml.meta.grad import MetaGradient
from vsml.meta.protocol import MetaOptimizer

META_OPTIMIZERS: dict[str, type] = {cls.name: cls for cls in (OpenES, MetaGradient, CMAES)}


def build_meta_optimizer(name: str, settings: Any) -> MetaOptimizer:
    """The meta-optimiser `name` with its settings (its config dataclass: OpenESConfig, GradConfig, ...)."""
    if name not in META_OPTIMIZERS:
        raise ValueError(f"meta_optimizer must be one of {', '.join(META_OPTIMIZERS)}, got {name!r}")
    return META_OPTIMIZERS[name](settings)


__all__ = ["META_OPTIMIZERS", "build_meta_optimizer"]
