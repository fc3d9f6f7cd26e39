"""V_M after 3 iterations of each meta-optimiser equals what the trainer computed before the outer loop moved
behind the MetaOptimizer protocol (tests/data/meta_regression.npz, written by make_meta_regression.py). The cmaes
entry is newer: it was rewritten when CMA-ES moved to the symmetric-root sampling (make_meta_regression.py)."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from tests.meta.meta_regression_configs import REGRESSION_CONFIGS, regression_trainer

STORED = Path(__file__).resolve().parents[1] / "data" / "meta_regression.npz"


@pytest.mark.parametrize("name", sorted(REGRESSION_CONFIGS))
def test_meta_parameters_after_three_iterations_unchanged(name, tmp_path):
    stored = np.load(STORED)
    trainer = regression_trainer(name, tmp_path)
    trainer.run(progress=False)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(trainer.meta)]
    expected = [stored[f"{name}/{i}"] for i in range(len(leaves))]
    assert f"{name}/{len(leaves)}" not in stored, "the stored V_M has more leaves than the trainer's"
    for got, want in zip(leaves, expected, strict=True):
        # Tolerance, not bit equality: the suite compiles at -O1 and other CPUs may fuse differently.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
