"""Shared test settings: strict numerics (STYLE.md §7) and a key fixture."""

from __future__ import annotations

import gc
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
VECTORS_DIR = SHARED_DIR / "spec" / "vectors"
DATASETS_DIR = SHARED_DIR / "datasets"


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled XLA program after each test module. Each CPU executable holds its own memory
    mappings; the whole suite in one process reached ~50,000 of Linux's 65,530 (vm.max_map_count) by two
    thirds and then segfaulted inside the compiler. Tests only reuse compilations within a module."""
    yield
    jax.clear_caches()
    gc.collect()
