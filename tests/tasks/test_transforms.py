from __future__ import annotations

import numpy as np
import pytest

from vsml.tasks import load_dataset
from vsml.tasks.transforms import apply_normalisation


def test_per_feature_standardisation_uses_train_statistics():
    pytest.importorskip("sklearn")
    digits = load_dataset("digits")
    out = apply_normalisation(digits, "per_feature")
    flat = out.train_x.reshape(len(out.train_x), -1)
    varying = digits.train_x.reshape(len(digits.train_x), -1).astype(np.float64).std(axis=0) > 1e-6
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0)[varying], 1, atol=1e-3)
    assert np.all(flat[:, ~varying] == 0)  # constant pixels: shifted, not blown up
    # Test data reuses the train statistics, so it is not exactly standardised itself.
    assert abs(out.test_x.mean()) < 0.2 and not np.allclose(
        out.test_x.reshape(len(out.test_x), -1).mean(0), 0
    )
    assert apply_normalisation(digits, "dataset") is digits


def test_unknown_normalisation_and_streams_are_errors():
    with pytest.raises(ValueError, match="per_feature"):
        apply_normalisation(load_dataset("random"), "zscore")
    with pytest.raises(ValueError, match="stream"):
        apply_normalisation(load_dataset("sum"), "per_feature")
