"""`vsml.evaluate_online` on the user's arrays: the same episodes and numbers as the Source-based path, usable
for any learner, and clear about bad input."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import vsml
from tests.conftest import offset_problem
from vsml.evaluation.online import evaluate_on_source
from vsml.tasks.datasets import load_dataset
from vsml.tasks.episodes import make_episode_source

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_arrays_give_the_source_path_s_episodes_and_numbers(digits):
    learner = vsml.VSML(feed_label=True)
    meta = learner.init_meta(jax.random.PRNGKey(3))
    from_source = evaluate_on_source(
        learner, meta, make_episode_source(digits, "test"), num_episodes=3, length=20
    )
    from_arrays = vsml.evaluate_online(
        (learner, meta), digits.test_x, digits.test_y, episodes=3, length=20, standardise=False
    )
    np.testing.assert_array_equal(from_arrays.accuracy, from_source.accuracy)
    np.testing.assert_allclose(from_arrays.loss, from_source.loss, rtol=1e-6)
    # The public name takes arrays only; a source is sent to its own function by name.
    with pytest.raises(TypeError, match="evaluate_on_source"):
        vsml.evaluate_online(learner, meta, make_episode_source(digits, "test"), num_episodes=3, length=20)


def test_compare_with_sgd_in_three_lines():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    ours = vsml.evaluate_online("vsml_mnist", X, y + 100, episodes=4, length=60)  # labels are any values
    sgd = vsml.evaluate_online(vsml.online_sgd(0.1), X, y, episodes=4, length=60)
    assert ours.curve.shape == sgd.curve.shape == (60,)
    assert ours.mean_accuracy > 0.3 and sgd.mean_accuracy > 0.3  # chance 0.1
    assert ours.curve[:5].mean() < ours.curve[-20:].mean()  # it learns within the episode


def test_bad_input_is_a_clear_error():
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.arange(30) % 3
    with pytest.raises(ValueError, match="NaN"):
        vsml.evaluate_online("vsml_mnist", np.where(X > 1, np.nan, X), y)
    with pytest.raises(ValueError, match="numeric"):
        vsml.evaluate_online("vsml_mnist", X.astype(str), y)
    with pytest.raises(ValueError, match="2-D"):
        vsml.evaluate_online("vsml_mnist", X[:, 0], y)
    with pytest.raises(ValueError, match="30 samples but y has 29"):
        vsml.evaluate_online("vsml_mnist", X, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        vsml.evaluate_online("vsml_mnist", X, np.zeros(30))
    with pytest.raises(TypeError, match="by keyword"):
        vsml.evaluate_online("vsml_mnist", X, y, 4)


def test_standardised_in_float64_before_the_float32_cast():
    X, y = offset_problem()
    plain = vsml.evaluate_online("vsml_mnist", X, y, episodes=4, length=100)
    offset = vsml.evaluate_online("vsml_mnist", X + 1e8, y, episodes=4, length=100)
    assert plain.mean_accuracy > 0.7  # chance 0.5
    assert offset.mean_accuracy == pytest.approx(plain.mean_accuracy, abs=0.01)  # was 0.46 (float32 first)
    from vsml.evaluation.arrays import check_features

    assert check_features(X).dtype == np.float32
    assert check_features(X + 1e8, as_float32=False).dtype == np.float64


def test_values_beyond_float32_s_range():
    X, y = offset_problem()
    plain = vsml.evaluate_online("vsml_mnist", X, y, episodes=2, length=50)
    huge = vsml.evaluate_online("vsml_mnist", X * 1e39, y, episodes=2, length=50)  # finite in float64
    assert huge.mean_accuracy == pytest.approx(plain.mean_accuracy, abs=0.02)
    with pytest.raises(ValueError, match="beyond float32's range.*scale them down"):
        vsml.evaluate_online("vsml_mnist", X * 1e39, y, standardise=False)
    with pytest.raises(ValueError, match="too large to standardise"):
        vsml.evaluate_online("vsml_mnist", X * 1e200, y)


def test_a_learner_that_diverges_is_a_warning_not_a_silent_low_score():
    """The shipped BLUR LA (meta-trained on 15-step episodes) diverges on digits after ~60 steps: the steps with
    NaN predictions count as wrong, and the user is told why the accuracy fell."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    with pytest.warns(
        RuntimeWarning, match=r"blur_mnist diverged: .* 1 of 1 episodes, first at step \d+ of 100"
    ):
        diverged = vsml.evaluate_online("blur_mnist", X, y, episodes=1, length=100)
    assert not np.isfinite(diverged.loss).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finite run warns nothing
        vsml.evaluate_online("blur_mnist", X, y, episodes=1, length=20)


@pytest.mark.parametrize("what", ["length", "episodes", "seed"])
def test_huge_integers_are_clear_errors_naming_the_argument(what):
    X, y = offset_problem()
    with pytest.raises(ValueError, match=rf"evaluate_online\({what}=\.\.\.\).*32-bit"):
        vsml.evaluate_online(vsml.online_sgd(0.1), X, y, **{what: 10**12})
