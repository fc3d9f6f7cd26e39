"""A scikit-learn classifier whose learning algorithm is a meta-learned one: `LearnedOnlineClassifier`.

    from vsml.sklearn import LearnedOnlineClassifier
    clf = LearnedOnlineClassifier().fit(X_train, y_train)   # vsml_general: one online pass, predict-then-learn
    clf.score(X_test, y_test)

Nothing here is fitted by gradients: `fit` and `partial_fit` run the learner's own `step` over the examples,
one at a time, and the learned "weights" are its state (for VSML, the LSTM states of every synapse, spec §1).
Because VSML's meta-parameters V_M are shared by every synapse, the same V_M runs a network of any input width
and any number of classes, so the estimator takes any numeric feature matrix and label vector.

scikit-learn is a dependency of vsml; only this module (and the digits loader) imports it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "vsml.sklearn needs scikit-learn, a dependency of vsml that is missing here: pip install scikit-learn"
    ) from err

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sklearn_validate_data = None

from vsml.evaluation.arrays import check_features, to_float32
from vsml.learners.base import Learner, PyTree, TaskSpec
from vsml.pretrained.load import DEFAULT_PRETRAINED, Pretrained, as_pretrained

__all__ = ["LearnedOnlineClassifier"]

_MAX_CHUNK = 256  # examples per compiled scan / vmap; fewer are padded to 32 or 256 (two programs per shape)


def _chunk_size(n: int) -> int:
    """Padding every call to one of a few sizes keeps jit from compiling a new program per input length."""
    return 32 if n <= 32 else _MAX_CHUNK


@partial(jax.jit, static_argnums=0)
def _learn_chunk(
    learner: Learner, meta: PyTree, state: PyTree, xs: jax.Array, ys: jax.Array, valid: jax.Array
) -> PyTree:
    """`learner.step` over xs [T, ...], ys [T, C] in order; padded steps (valid False) leave the state as is."""

    def body(carry: PyTree, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[PyTree, None]:
        x, y, keep = inputs
        _, stepped = learner.step(meta, carry, x, y)
        return jax.tree.map(lambda new, old: jnp.where(keep, new, old), stepped, carry), None

    return jax.lax.scan(body, state, (xs, ys, valid))[0]


@partial(jax.jit, static_argnums=0)
def _predict_chunk(learner: Learner, meta: PyTree, state: PyTree, xs: jax.Array) -> jax.Array:
    """Forward-only logits [T, C] of every row of xs with the same (unchanged) state."""
    return jax.vmap(learner.predict, in_axes=(None, None, 0))(meta, state, xs)


def _check_seed(seed: Any) -> None:
    """Validated in fit, not __init__ (scikit-learn's rule for parameters): both its uses need an int in
    [0, 2**32), jax.random.PRNGKey for the initial state and numpy's default_rng for the shuffle."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(
            f"seed must be an int in [0, 2**32), got {seed!r}; it keys the learner's initial state and fit's "
            "shuffle (for a random one, pass e.g. seed=int(np.random.default_rng().integers(2**32)))"
        )


def _check_label_types(labels: np.ndarray, what: str) -> None:
    """Labels that mix strings and numbers (e.g. 1 and 'a' in an object array) cannot be sorted into classes_,
    nor scored by scikit-learn's metrics (its own type checks fail on them): a clear error instead."""
    if labels.dtype != object:
        return
    kinds = {"string" if isinstance(v, (str, bytes)) else type(v).__name__ for v in labels.ravel()}
    if "string" in kinds and len(kinds) > 1:
        examples = sorted(kinds - {"string"})
        raise ValueError(
            f"{what} mixes strings and other values ({', '.join(examples)}); labels must be of one kind: convert "
            f"them first, e.g. np.asarray({what}).astype(str)"
        )


class LearnedOnlineClassifier(ClassifierMixin, BaseEstimator):
    """Online classification by a meta-learned learning algorithm (default: the shipped `vsml_general` LA,
    `vsml.pretrained.load.DEFAULT_PRETRAINED`).

    Parameters
    ----------
    pretrained : str, Pretrained or (learner, meta), default "vsml_general"
        The learning algorithm: a name from `vsml.list_pretrained()`, a loaded `vsml.load_pretrained(...)`, or
        any `Learner` with a `predict` method and its meta-parameters. It must learn from one example per step
        (VSML does; BLUR, meta-trained on batches of 128, does not).
    seed : int, default 0
        Key of the learner's initial state (VSML draws its initial synapse states from it) and of `fit`'s
        shuffle: an int in [0, 2**32). None (scikit-learn's "random" for `random_state`) is not accepted, so
        that every fit is reproducible; pass a random int for a random start.
    standardise : bool, default True
        Shift and scale every feature by its mean and standard deviation over all the samples seen so far
        (running statistics, updated at the start of each `fit` / `partial_fit` call, before learning from
        its samples; constant features are only shifted). This is how the shipped VSML LA saw its inputs in
        meta-training (per-feature standardisation), and what makes it work on features of any scale.
    shuffle : bool, default True
        `fit` presents the samples in a random order (seeded by `seed`): an online learner given data sorted
        by class would only ever see one class at a time. `partial_fit` always keeps the given order.

    Attributes
    ----------
    classes_ : the class labels, sorted; the learner's outputs are their indices.
    n_features_in_ : the number of features seen in `fit` / the first `partial_fit`.
    n_samples_seen_ : examples learned from so far.
    mean_, scale_ : the current standardisation (zeros and ones when `standardise` is off).
    """

    def __init__(
        self,
        pretrained: Any = DEFAULT_PRETRAINED,
        seed: int = 0,
        standardise: bool = True,
        shuffle: bool = True,
    ) -> None:
        self.pretrained = pretrained
        self.seed = seed
        self.standardise = standardise
        self.shuffle = shuffle

    # ----- scikit-learn plumbing ----------------------------------------------------------------------------

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        # One online pass of a learned LA: on scikit-learn's check problem (300 blobs, 2 features) it can fall
        # short of the training accuracy that the common checks ask of batch-fitted classifiers (0.83);
        # "poor_score" is that case.
        tags.classifier_tags.poor_score = True
        return tags

    def _validate_features(self, X: Any, reset: bool) -> np.ndarray:
        """Dense float64 [n, n_features] (float32 input too), cast to float32 only after standardising
        (`_inputs`); sets or checks n_features_in_ (and feature names, as scikit-learn)."""
        if _sklearn_validate_data is not None:
            X = _sklearn_validate_data(self, X, reset=reset, dtype=(np.float64, np.float32), ensure_2d=True)
        else:  # pragma: no cover - older scikit-learn
            X = self._validate_data(X, reset=reset, dtype=(np.float64, np.float32), ensure_2d=True)
        return check_features(X, as_float32=False)

    def _validate_samples(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """(X float64 [n, n_features], y [n]) checked as scikit-learn does (a column y warns, y=None fails)."""
        options = dict(reset=reset, dtype=(np.float64, np.float32), y_numeric=False)
        if _sklearn_validate_data is not None:
            X, y = _sklearn_validate_data(self, X, y, **options)
        else:  # pragma: no cover - older scikit-learn
            X, y = self._validate_data(X, y, **options)
        _check_label_types(y, "y")
        check_classification_targets(y)
        return check_features(X, as_float32=False), y

    def _load(self) -> Pretrained:
        la = as_pretrained(self.pretrained)
        if not callable(getattr(la.learner, "predict", None)):
            raise ValueError(
                f"{type(la.learner).__name__} has no forward-only predict(meta, state, x); "
                "LearnedOnlineClassifier needs one (VSML and BLUR have it)"
            )
        if la.examples_per_step != 1 or getattr(la.learner, "inner_batch", 1) != 1:
            raise ValueError(
                f"pretrained LA {la.name!r} learns from batches of {la.examples_per_step} examples per step; "
                "LearnedOnlineClassifier presents one example per step: use an online LA such as 'vsml_general' "
                "(vsml.evaluate_online runs batched LAs on your arrays)"
            )
        return la

    def _reset(self, classes: np.ndarray, n_features: int) -> None:
        _check_seed(self.seed)
        if len(classes) < 2:
            raise ValueError(
                f"y has 1 class ({classes[0]!r}); a classifier needs at least 2 classes (pass all of them to "
                "partial_fit with classes=...)"
            )
        self.classes_ = classes
        self.la_ = self._load()
        spec = TaskSpec((n_features,), len(classes))
        self.state_ = self.la_.learner.init_state(self.la_.meta, jax.random.PRNGKey(self.seed), spec)
        self.n_samples_seen_ = 0
        self.mean_ = np.zeros(n_features)
        self._sum_squares = np.zeros(n_features)  # Σ (x − mean)² over the samples seen (Chan et al.'s update)
        self.scale_ = np.ones(n_features)

    def _update_statistics(self, X: np.ndarray) -> None:
        """Running mean_, scale_ (float64) over every sample seen, updated by this chunk (Chan et al.)."""
        if not self.standardise:
            return
        count, batch = self.n_samples_seen_, X.shape[0]
        with np.errstate(over="ignore", invalid="ignore"):
            batch_mean = X.mean(axis=0, dtype=np.float64)
            batch_sum_squares = ((X - batch_mean) ** 2).sum(axis=0, dtype=np.float64)
            total = count + batch
            delta = batch_mean - self.mean_
            mean = self.mean_ + delta * batch / total
            sum_squares = self._sum_squares + batch_sum_squares + delta**2 * count * batch / total
        if not (np.isfinite(mean).all() and np.isfinite(sum_squares).all()):
            raise ValueError(
                "X has values too large to standardise (their squares overflow float64): scale them down first"
            )  # checked before anything changes, so the estimator stays as it was
        self.mean_, self._sum_squares = mean, sum_squares
        std = np.sqrt(self._sum_squares / total)
        self.scale_ = np.where(std > 1e-6, std, 1.0)

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """Standardised in float64 (mean_ and scale_ are float64), then float32 for the learner: casting first
        would erase a feature's variation under a large common offset (1e8 + noise)."""
        if not self.standardise:
            return to_float32(X, "X")
        return to_float32((X - self.mean_) / self.scale_, "X after standardisation")

    def _learn(self, X: np.ndarray, labels: np.ndarray) -> None:
        self._update_statistics(X)
        inputs = self._inputs(X)
        onehot = np.eye(len(self.classes_), dtype=np.float32)[labels]
        size = _chunk_size(len(inputs))
        for start in range(0, len(inputs), size):
            xs, ys = inputs[start : start + size], onehot[start : start + size]
            valid = np.arange(size) < len(xs)
            pad = size - len(xs)
            xs = np.concatenate([xs, np.zeros((pad, xs.shape[1]), np.float32)])
            ys = np.concatenate([ys, np.zeros((pad, ys.shape[1]), np.float32)])
            self.state_ = _learn_chunk(self.la_.learner, self.la_.meta, self.state_, xs, ys, valid)
        self.n_samples_seen_ += len(inputs)

    # ----- the estimator API --------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> LearnedOnlineClassifier:
        """Start a fresh learner and let it learn from every (X[i], y[i]) once, online (shuffled if `shuffle`)."""
        X, y = self._validate_samples(X, y, reset=True)
        classes, labels = np.unique(y, return_inverse=True)
        self._reset(classes, X.shape[1])
        if self.shuffle:
            order = np.random.default_rng(self.seed).permutation(X.shape[0])
            X, labels = X[order], labels[order]
        self._learn(X, labels.reshape(-1))
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> LearnedOnlineClassifier:
        """Learn from (X, y) online, in the given order, continuing from the state of earlier calls.

        `classes` (every label that will ever occur) is required on the first call, as the learner's output
        layer is built for them; later calls may pass it again (it must not change) or leave it out.
        """
        first = not hasattr(self, "classes_")
        X, y = self._validate_samples(X, y, reset=first)
        if classes is not None:
            _check_label_types(np.asarray(classes), "classes")
        if first:
            if classes is None:
                raise ValueError(
                    "classes must be given on the first call to partial_fit: every label that will occur, "
                    "e.g. partial_fit(X, y, classes=np.arange(10))"
                )
            self._reset(np.unique(np.asarray(classes)), X.shape[1])
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(
                f"classes={np.unique(np.asarray(classes)).tolist()} differs from the classes of the first "
                f"partial_fit call, {self.classes_.tolist()}"
            )
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(
                f"y contains labels {unseen.tolist()} that are not in classes_ {self.classes_.tolist()}; pass "
                "every label to the first partial_fit call with classes=..."
            )
        self._learn(X, np.searchsorted(self.classes_, y))
        return self

    def _logits(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        inputs = self._inputs(self._validate_features(X, reset=False))
        size = _chunk_size(len(inputs))
        out = []
        for start in range(0, len(inputs), size):
            xs = inputs[start : start + size]
            padded = np.concatenate([xs, np.zeros((size - len(xs), xs.shape[1]), np.float32)])
            out.append(
                np.asarray(_predict_chunk(self.la_.learner, self.la_.meta, self.state_, padded))[: len(xs)]
            )
        return np.concatenate(out)

    def decision_function(self, X: Any) -> np.ndarray:
        """The learner's logits [n, n_classes] for each row, forward only (nothing is learned)."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """softmax of the learner's logits: [n_samples, n_classes], columns in the order of classes_."""
        logits = self._logits(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, forward only (nothing is learned)."""
        logits = self._logits(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(logits, axis=1)]
