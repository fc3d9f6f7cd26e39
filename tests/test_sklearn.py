"""`vsml.sklearn.LearnedOnlineClassifier`: learns real data with the shipped LA, keeps its state across
`partial_fit` calls, rejects bad input clearly, and passes scikit-learn's estimator checks."""

from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_blobs  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from tests.conftest import offset_problem  # noqa: E402
from vsml import load_pretrained  # noqa: E402
from vsml.sklearn import LearnedOnlineClassifier  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:1200], y[:1200], X[1200:], y[1200:]


def test_learns_digits_well_above_chance(digits):
    X_train, y_train, X_test, y_test = digits
    clf = LearnedOnlineClassifier().fit(X_train, y_train)  # the default shipped LA; never saw digits
    assert clf.n_samples_seen_ == len(X_train) and clf.n_features_in_ == 64
    accuracy = clf.score(X_test, y_test)
    assert accuracy > 0.6  # chance 0.1
    proba = clf.predict_proba(X_test[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test[:5]))


def test_any_width_any_labels():
    """3 features, 4 classes named by strings, features on a scale of thousands: standardised, then learned."""
    X, y = make_blobs(n_samples=400, centers=4, n_features=3, random_state=0, cluster_std=1.0)
    names = np.array(["ant", "bee", "cat", "dog"])[y]
    clf = LearnedOnlineClassifier(seed=3).fit(1000.0 * X + 5000.0, names)
    assert list(clf.classes_) == ["ant", "bee", "cat", "dog"]
    assert clf.score(1000.0 * X + 5000.0, names) > 0.6  # chance 0.25; measured 0.76 (a 3-input net)


def test_partial_fit_continues_where_it_left_off(digits):
    X, y = digits[0][:300], digits[1][:300]
    whole = LearnedOnlineClassifier(standardise=False, shuffle=False).fit(X, y)
    pieces = LearnedOnlineClassifier(standardise=False)
    pieces.partial_fit(X[:50], y[:50], classes=np.arange(10))
    pieces.partial_fit(X[50:51], y[50:51])
    pieces.partial_fit(X[51:], y[51:])
    assert pieces.n_samples_seen_ == 300
    np.testing.assert_allclose(
        pieces.predict_proba(X[:40]), whole.predict_proba(X[:40]), rtol=1e-5, atol=1e-6
    )


def test_running_standardisation_matches_the_batch_statistics(digits):
    X, y = digits[0][:200], digits[1][:200]
    clf = LearnedOnlineClassifier()
    clf.partial_fit(X[:70], y[:70], classes=np.arange(10))
    clf.partial_fit(X[70:], y[70:])
    np.testing.assert_allclose(clf.mean_, X.mean(axis=0), atol=1e-9)
    std = X.std(axis=0)
    np.testing.assert_allclose(clf.scale_, np.where(std > 1e-6, std, 1.0), rtol=1e-9)


def test_clear_errors(digits):
    X, y = digits[0][:40], digits[1][:40]
    clf = LearnedOnlineClassifier()
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.where(X == 0, np.nan, X), y)
    with pytest.raises(ValueError, match="infinity"):
        clf.fit(np.where(X == 0, np.inf, X), y)
    with pytest.raises(ValueError):
        clf.fit(np.full((3, 2), "a"), [0, 1, 0])
    with pytest.raises(ValueError, match="classes must be given on the first call"):
        LearnedOnlineClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="1 class"):
        clf.fit(X, np.zeros(len(X)))
    clf.partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match=r"labels \[10, 11\] that are not in classes_"):
        clf.partial_fit(X[:2], [10, 11])
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X[:2], y[:2], classes=np.arange(5))
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(X[:, :10])
    with pytest.raises(ValueError, match="learns from batches of 128"):
        LearnedOnlineClassifier(load_pretrained("blur_mnist")).fit(X, y)
    with pytest.raises(ValueError, match="no pretrained learning algorithm"):
        LearnedOnlineClassifier("nope").fit(X, y)


# scikit-learn's common checks (fit/predict contracts, input validation, cloning, pickling, partial_fit, ...).
# The estimator declares the "poor_score" tag (see its __sklearn_tags__): one online pass over 300 blobs does not
# reach the 0.83 training accuracy asked of batch-fitted classifiers, so only that threshold is not asserted.
# Two checks skip themselves here: pandas input (pandas is not installed) and the array API (SCIPY_ARRAY_API unset).
@parametrize_with_checks([LearnedOnlineClassifier()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_large_common_offset_is_standardised_in_float64():
    X, y = offset_problem()
    plain = LearnedOnlineClassifier().fit(X[:800], y[:800]).score(X[800:], y[800:])
    offset = LearnedOnlineClassifier().fit(X[:800] + 1e8, y[:800]).score(X[800:] + 1e8, y[800:])
    assert plain > 0.8  # chance 0.5; measured 0.865
    assert offset == pytest.approx(plain, abs=0.01)  # was 0.55: cast to float32 before standardising

    clf = LearnedOnlineClassifier()
    for chunk in np.array_split(X[:500] + 1e8, 3):  # running statistics over chunks, kept in float64
        clf.partial_fit(chunk, y[: len(chunk)], classes=[0, 1])
    assert clf.mean_.dtype == clf.scale_.dtype == np.float64
    np.testing.assert_allclose(clf.mean_ - 1e8, X[:500].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(clf.scale_, X[:500].std(axis=0), rtol=1e-6)


def test_values_beyond_float32_s_range():
    X, y = offset_problem()
    clf = LearnedOnlineClassifier().fit(X[:800] * 1e39, y[:800])  # finite in float64: standardised first
    assert clf.score(X[800:] * 1e39, y[800:]) > 0.8
    with pytest.raises(ValueError, match="beyond float32's range.*scale them down"):
        LearnedOnlineClassifier(standardise=False).fit(X * 1e39, y)
    with pytest.raises(ValueError, match="too large to standardise"):
        LearnedOnlineClassifier().fit(X * 1e200, y)


@pytest.mark.parametrize("seed", [None, 1.5, -1, 2**32, True, "0"])
def test_bad_seed_is_a_clear_error(seed):
    X, y = offset_problem()
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\)"):
        LearnedOnlineClassifier(seed=seed).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="seed must be an int"):
        LearnedOnlineClassifier(seed=seed).partial_fit(X[:20], y[:20], classes=[0, 1])


def test_numpy_integer_seed():
    X, y = offset_problem()
    ours = LearnedOnlineClassifier(seed=np.int64(3)).fit(X[:50], y[:50]).predict_proba(X[:5])
    np.testing.assert_array_equal(
        ours, LearnedOnlineClassifier(seed=3).fit(X[:50], y[:50]).predict_proba(X[:5])
    )


def test_labels_mixing_strings_and_numbers_are_a_clear_error():
    X = offset_problem()[0][:4]
    for y in (np.array(["a", 1, "a", 1], dtype=object), np.array([1, "a", 1, "a"], dtype=object)):
        with pytest.raises(ValueError, match=r"y mixes strings and other values \(int\).*astype\(str\)"):
            LearnedOnlineClassifier().fit(X, y)
    with pytest.raises(ValueError, match="classes mixes strings"):
        LearnedOnlineClassifier().partial_fit(
            X, ["a", "b", "a", "b"], classes=np.array(["a", "b", 1], object)
        )
    # One kind in an object array (e.g. a pandas column of strings) still works, its labels kept as given.
    clf = LearnedOnlineClassifier().fit(X, np.array(["a", "b", "a", "b"], dtype=object))
    assert list(clf.classes_) == ["a", "b"] and set(clf.predict(X)) <= {"a", "b"}


def test_non_finite_meta_parameters_are_a_clear_error():
    import jax

    la = load_pretrained("vsml_mnist")
    broken = jax.tree.map(lambda leaf: leaf * np.nan, la.meta)
    X, y = offset_problem()
    with pytest.raises(ValueError, match="meta-parameters of .* are not finite"):
        LearnedOnlineClassifier((la.learner, broken)).fit(X[:20], y[:20])
