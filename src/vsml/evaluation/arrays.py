"""Meta-testing on the user's own arrays: `vsml.evaluate_online(learner_or_pretrained, X, y, ...)`.

    import vsml
    ours = vsml.evaluate_online("vsml_general", X, y, episodes=16, length=500)
    sgd = vsml.evaluate_online(vsml.online_sgd(0.01), X, y, episodes=16, length=500)
    print(ours.mean_accuracy, sgd.mean_accuracy)   # .curve: mean online accuracy per step

Each episode draws `length` examples of (X, y) without replacement (a fresh permutation when `length` exceeds
the number of rows), gives them to a fresh learner one at a time (predict, then learn from the label) and scores
the prediction made before each label: the same online protocol, sampler and code path
(`vsml.evaluation.online.evaluate_on_source`) as `vsml evaluate` on the built-in datasets, on arrays built from X
and y.
"""

from __future__ import annotations

import operator
import warnings
from typing import Any

import numpy as np

from vsml.config import check_int32
from vsml.evaluation.defaults import EVAL_SEED
from vsml.evaluation.online import OnlineEvaluation, evaluate_on_source
from vsml.learners.base import PyTree
from vsml.pretrained.load import as_pretrained
from vsml.tasks.episodes import EpisodeSource
from vsml.tasks.omniglot import FewShotSource
from vsml.tasks.sampler import EpisodeSampler
from vsml.tasks.transforms import feature_statistics  # the built-in datasets' per-feature standardisation

__all__ = [
    "check_features",
    "encode_labels",
    "evaluate_arrays",
    "evaluate_online",
    "feature_statistics",
    "standardise_features",
    "to_float32",
]


def check_features(X: Any, what: str = "X", *, as_float32: bool = True) -> np.ndarray:
    """X as a float array [n, *feature_shape], or a ValueError naming the problem (dtype, shape, NaN/inf).

    With `as_float32` (default) the array is float32, what the learners compute in; pass `as_float32=False`
    to keep float64 (or the input's float type where wider) for standardising first: in float32, a feature
    with a large common offset (1e8 + noise) loses its variation before its mean is taken off (`to_float32`).
    """
    array = np.asarray(X)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{what} must be a numeric array, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{what} must be real-valued, got dtype {array.dtype}")
    if array.ndim < 2:
        raise ValueError(
            f"{what} must be 2-D [n_samples, n_features] (or [n_samples, *feature_shape]), got shape "
            f"{array.shape}; reshape a single feature with X.reshape(-1, 1) or a single sample with "
            "X.reshape(1, -1)"
        )
    if array.shape[0] < 1 or any(d < 1 for d in array.shape[1:]):
        raise ValueError(f"{what} has shape {array.shape}: it needs at least one sample and one feature")
    array = array.astype(np.promote_types(array.dtype, np.float64))
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinity; impute or drop those values first")
    return to_float32(array, what) if as_float32 else array


def to_float32(array: np.ndarray, what: str = "X") -> np.ndarray:
    """A finite float array as float32, or a ValueError where its values exceed float32's range (±3.4e38)."""
    limit = np.finfo(np.float32).max
    if array.dtype != np.float32 and array.size and np.abs(array).max() > limit:
        raise ValueError(
            f"{what} has values beyond float32's range (up to {np.abs(array).max():.3g}, limit {limit:.3g}), "
            "which the learners compute in: scale them down first (or standardise them)"
        )
    return array.astype(np.float32)


def standardise_features(features: np.ndarray, what: str = "X") -> np.ndarray:
    """Each feature shifted and scaled by its mean and std over axis 0, in float64 (`feature_statistics`),
    then cast to float32: the rule of `feature_statistics` (a constant feature is only shifted)."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = feature_statistics(features)
        standardised = (features - mean) / std
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and np.isfinite(standardised).all()):
        raise ValueError(
            f"{what} has values too large to standardise (their squares overflow {features.dtype}): scale "
            "them down first"
        )
    return to_float32(standardised, f"{what} after standardisation")


def encode_labels(y: Any, n: int, what: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """(classes [K] sorted, labels [n] int32 indices into classes) of a 1-D label vector of length n."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{what} must be a 1-D vector of labels, got shape {labels.shape}")
    if labels.shape[0] != n:
        raise ValueError(f"X has {n} samples but {what} has {labels.shape[0]} labels")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{what} contains NaN or infinity")
    if labels.dtype == object:
        labels = labels.astype(str)  # mixed Python objects: compare them as text
    classes, indices = np.unique(labels, return_inverse=True)
    return classes, indices.astype(np.int32)


def evaluate_arrays(
    learner_or_pretrained: Any,
    X: Any,
    y: Any,
    *,
    meta: PyTree | None = None,
    episodes: int = 16,
    length: int = 100,
    seed: int = EVAL_SEED,
    standardise: bool = True,
    examples_per_step: int | None = None,
    query_steps: int | None = None,
) -> OnlineEvaluation:
    """Online accuracy of a learner on `episodes` episodes of `length` steps drawn from (X, y).

    `learner_or_pretrained`: a pretrained name (`vsml.list_pretrained()`), a `Pretrained`, or any `Learner`
    (with `meta`, else its own `init_meta`: `vsml.online_sgd(0.01)` is online SGD at rate 0.01). X is any
    numeric array [n, n_features] (or [n, *shape]); y any label vector (its distinct values are the classes).

    With `standardise` (default), every feature is shifted and scaled by its mean and std over X, which is what
    the shipped VSML LA saw in meta-training (per-feature standardisation); pass `standardise=False` for inputs
    already prepared. `examples_per_step` and `query_steps` default to the pretrained LA's own (BLUR learns
    from batches and is scored on forward-only query batches after them), else 1 and 0.

    Returns an `OnlineEvaluation`: `.curve` (mean accuracy per step), `.mean_accuracy`, `.final_accuracy`,
    `.accuracy_interval` (95% over episodes) and, with query steps, `.mean_query_accuracy`. A learner whose
    predictions become NaN or infinite (diverged) gets a RuntimeWarning (`warn_if_diverged`).
    """
    for value, what in ((episodes, "episodes"), (length, "length"), (seed, "seed")):
        check_int32(operator.index(value), f"evaluate_online({what}=...)")
    la = as_pretrained(learner_or_pretrained, meta)
    # Standardised in float64 (or wider), then cast: float32 first would erase features with a large offset.
    features = check_features(X, as_float32=not standardise)
    classes, labels = encode_labels(y, features.shape[0])
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); online classification needs at least 2")
    if standardise:
        features = standardise_features(features)
    source = EpisodeSource(features, labels, len(classes), tuple(int(d) for d in features.shape[1:]))
    batch = la.examples_per_step if examples_per_step is None else int(examples_per_step)
    queries = la.query_steps if query_steps is None else int(query_steps)
    if length < 1 or queries < 0:
        raise ValueError(f"length must be >= 1 and query_steps >= 0, got {length} and {queries}")
    sampler = EpisodeSampler(length + queries, batch_size=batch)
    result = evaluate_on_source(
        la.learner, la.meta, source, num_episodes=episodes, length=length, seed=seed, sampler=sampler,
        query_steps=queries,
    )  # fmt: skip
    warn_if_diverged(result, la.name)
    return result


def warn_if_diverged(result: OnlineEvaluation, name: str) -> None:
    """A RuntimeWarning where the learner's online losses became NaN or infinite: its accuracy then counts
    those steps as wrong and would otherwise look like a learner that merely stopped learning."""
    bad = ~np.isfinite(result.loss)
    if bad.any():
        episodes, steps = np.nonzero(bad)
        warnings.warn(
            f"{name} diverged: its predictions became NaN or infinite in {len(set(episodes.tolist()))} of "
            f"{bad.shape[0]} episodes, first at step {int(steps.min()) + 1} of {bad.shape[1]}; those steps count "
            "as wrong. Episodes as long as its meta-training ones, or standardised inputs, may avoid it",
            RuntimeWarning,
            stacklevel=3,
        )


def evaluate_online(
    learner_or_pretrained: Any, X: Any, y: Any, *args: Any, **kwargs: Any
) -> OnlineEvaluation:
    """`evaluate_arrays(learner_or_pretrained, X, y, episodes=…, length=…, seed=…)` on the user's arrays.

    An episode source (a `vsml.tasks` dataset split) is evaluated by
    `vsml.evaluation.online.evaluate_on_source(learner, meta, source, …)` instead.
    """
    if isinstance(y, (EpisodeSource, FewShotSource)):
        raise TypeError(
            "evaluate_online(learner_or_pretrained, X, y) takes arrays; for an episode source use "
            "vsml.evaluation.online.evaluate_on_source(learner, meta, source, num_episodes=…, length=…)"
        )
    if args:
        raise TypeError("evaluate_online(learner_or_pretrained, X, y) takes its other settings by keyword")
    return evaluate_arrays(learner_or_pretrained, X, y, **kwargs)
