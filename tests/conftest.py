"""Shared test settings: strict numerics (STYLE.md §7) and a key fixture."""

from __future__ import annotations

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
