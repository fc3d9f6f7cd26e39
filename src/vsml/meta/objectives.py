"""Meta-losses and metrics of online episodes (spec vsml.md §2).

Every function takes the logits a learner produced over an episode, `logits: [..., T, C]`, and the one-hot
labels `ys: [..., T, C]`; the logit at step t is the prediction for x_t made *before* y_t was seen
(DESIGN.md), so these measure how fast the learner learns, not how well it fits. Leading axes (episodes,
population members, ...) are kept, except by the `*_curve` functions, which average them away.

- `mean_online_cross_entropy` is the default meta-loss (`loss_type: mean`): the mean cross-entropy over all
  T steps, i.e. the area under the online loss curve, which rewards fast learning (§2).
- `last_step_cross_entropy` is `loss_type: last`, used for the Omniglot query step (§2, §6.5).
- `online_accuracy` / `final_step_accuracy` are the logged `eval_accuracy_*` / `eval_final_accuracy_*` (§2).
- `query_ce` / `query_error` score forward-only predictions on held-out query steps after the learning steps
  (BLUR's meta-loss and CMA-ES fitness, blur.md §6); `episode_meta_loss` applies any of them to one episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from vsml.learners.base import (
    Learner,
    PyTree,
    run_episode,
    run_episode_from_state,
    softmax_cross_entropy,
    spec_of_episode,
)

Array = jax.Array
MetaLoss = Callable[[Array, Array], Array]


def _check_episode_shapes(logits: Array, ys: Array) -> None:
    # Shapes are static, so this costs nothing under jit; a silent broadcast of [T, C] against [N, T, C] would
    # otherwise produce a plausible-looking but wrong loss.
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape [..., T, C], got shape {tuple(logits.shape)}")
    if logits.shape != ys.shape:
        raise ValueError(
            f"logits and one-hot ys must have the same shape [..., T, C], got {tuple(logits.shape)} and "
            f"{tuple(ys.shape)}"
        )


def per_step_cross_entropy(logits: Array, ys: Array) -> Array:
    """Softmax cross-entropy of each online prediction: `[..., T, C] -> [..., T]`."""
    _check_episode_shapes(logits, ys)
    return softmax_cross_entropy(logits, ys)


def mean_online_cross_entropy(logits: Array, ys: Array) -> Array:
    """Mean cross-entropy over the T steps, `[..., T, C] -> [...]`: area under the online loss curve (§2)."""
    return jnp.mean(per_step_cross_entropy(logits, ys), axis=-1)


def last_step_cross_entropy(logits: Array, ys: Array) -> Array:
    """Cross-entropy of the final prediction only, `[..., T, C] -> [...]` (§2, `loss_type: last`)."""
    _check_episode_shapes(logits, ys)
    return softmax_cross_entropy(logits[..., -1, :], ys[..., -1, :])


def correct_predictions(logits: Array, ys: Array) -> Array:
    """1. where argmax(logits) is the one-hot label's class, else 0., over the last axis."""
    # argmax of a one-hot row is its class; padded label spaces (all-zero columns) are never the target.
    return (jnp.argmax(logits, axis=-1) == jnp.argmax(ys, axis=-1)).astype(jnp.float32)


def online_accuracy(logits: Array, ys: Array) -> Array:
    """Fraction of steps whose prediction (made before the label) was right, `[..., T, C] -> [...]` (§2)."""
    _check_episode_shapes(logits, ys)
    return jnp.mean(correct_predictions(logits, ys), axis=-1)


def final_step_accuracy(logits: Array, ys: Array) -> Array:
    """Whether the last prediction of each episode was right (0. or 1.), `[..., T, C] -> [...]` (§2)."""
    _check_episode_shapes(logits, ys)
    return correct_predictions(logits[..., -1, :], ys[..., -1, :])


def online_accuracy_curve(logits: Array, ys: Array) -> Array:
    """The learning curve: accuracy at each step averaged over every leading axis, `[..., T, C] -> [T]`."""
    _check_episode_shapes(logits, ys)
    correct = correct_predictions(logits, ys)
    return jnp.mean(correct.reshape((-1, correct.shape[-1])), axis=0)


def online_loss_curve(logits: Array, ys: Array) -> Array:
    """Cross-entropy at each step averaged over every leading axis, `[..., T, C] -> [T]`."""
    losses = per_step_cross_entropy(logits, ys)
    return jnp.mean(losses.reshape((-1, losses.shape[-1])), axis=0)


# The `loss_type` values of the reference configs (§2).
META_LOSSES: dict[str, MetaLoss] = {
    "mean": mean_online_cross_entropy,
    "last": last_step_cross_entropy,
}


def meta_loss_by_name(name: str) -> MetaLoss:
    """The meta-loss registered as `name` in `META_LOSSES` ("mean" or "last")."""
    try:
        return META_LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown meta-loss {name!r}; choose one of: {', '.join(sorted(META_LOSSES))}"
        ) from None


def query_cross_entropy(logits: Array, ys: Array) -> Array:
    """Mean cross-entropy of forward-only query predictions `[Q, ..., C] -> []` (BLUR's paper loss, §3.3)."""
    return jnp.mean(softmax_cross_entropy(logits, ys))


def query_error(logits: Array, ys: Array) -> Array:
    """1 − accuracy of forward-only query predictions `[Q, ..., C] -> []` (BLUR's CMA-ES fitness, blur.md §6)."""
    return 1.0 - jnp.mean(correct_predictions(logits, ys))


def query_l2(logits: Array, ys: Array) -> Array:
    """Mean squared error of the query outputs against ±1 one-hot targets: the authors' code and colab meta-loss
    (`−l2_score`, blur.md §6), where the paper uses cross-entropy (§10.3)."""
    return jnp.mean((logits - (2.0 * ys - 1.0)) ** 2)


# Losses of the query steps after the learning steps (the learner's forward-only `predict`).
QUERY_LOSSES: dict[str, MetaLoss] = {
    "query_ce": query_cross_entropy,
    "query_error": query_error,
    "query_l2": query_l2,
}
LOSS_NAMES = tuple(sorted(META_LOSSES) + sorted(QUERY_LOSSES))
# Piecewise constant in the meta-parameters (its gradient is zero almost everywhere): a fitness for ES or CMA-ES,
# never a loss to differentiate.
NON_DIFFERENTIABLE_LOSSES = ("query_error",)


@dataclass(frozen=True)
class Objective:
    """What one episode is scored by (static, hashable): an online loss over all T steps, or a query loss over
    the last `query_steps` steps, which the learner only predicts after learning from the first ones."""

    loss: str = "mean"
    query_steps: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"unknown meta-loss {self.loss!r}; choose one of: {', '.join(LOSS_NAMES)}")
        if self.loss in QUERY_LOSSES and self.query_steps < 1:
            raise ValueError(f"task.loss {self.loss!r} scores query steps: set task.query_steps >= 1")
        if self.loss not in QUERY_LOSSES and self.query_steps != 0:
            raise ValueError(
                f"task.query_steps = {self.query_steps} needs a query loss ({', '.join(QUERY_LOSSES)}), "
                f"not {self.loss!r}"
            )


def as_objective(objective: str | Objective) -> Objective:
    return objective if isinstance(objective, Objective) else Objective(objective)


def check_learner_supports(learner: Learner, objective: str | Objective) -> None:
    """A query loss needs a forward-only `predict(meta, state, x)`; say so before anything is compiled."""
    if as_objective(objective).loss in QUERY_LOSSES and not callable(getattr(learner, "predict", None)):
        raise ValueError(
            f"{type(learner).__name__} has no forward-only predict, which the query losses need; "
            f"use task.loss: mean or last"
        )


def steps_first_to_last(a: Array) -> Array:
    """One episode's `[T, *batch, C]` as `[*batch, T, C]`, so the online losses see the steps on axis −2."""
    return jnp.moveaxis(a, 0, -2)


def episode_meta_loss(
    learner: Learner,
    objective: str | Objective,
    meta: PyTree,
    key: Array,
    xs: Array,
    ys: Array,
    remat: bool | int = False,
) -> Array:
    """The meta-loss of one episode `xs [T(+Q), (B,) ...]`, `ys [T(+Q), (B,) C]` as a scalar.

    Online losses average over an inner batch; a query loss learns from the first T steps and scores the
    forward-only predictions on the last Q.
    """
    objective = as_objective(objective)
    if objective.loss in QUERY_LOSSES:
        q = objective.query_steps
        logits = run_with_query(learner, meta, key, xs, ys, q, remat)[1]
        return QUERY_LOSSES[objective.loss](logits, ys[-q:])
    logits = run_episode(learner, meta, key, xs, ys, remat=remat)
    return jnp.mean(META_LOSSES[objective.loss](steps_first_to_last(logits), steps_first_to_last(ys)))


def run_with_query(
    learner: Learner,
    meta: PyTree,
    key: Array,
    xs: Array,
    ys: Array,
    query_steps: int,
    remat: bool | int = False,
) -> tuple[Array, Array]:
    """Learn online from the first T steps, then predict the last `query_steps` without learning.

    Returns (online logits [T, ..., C], query logits [Q, ..., C]).
    """
    support_x, support_y = xs[:-query_steps], ys[:-query_steps]
    state = learner.init_state(meta, key, spec_of_episode(support_x, support_y))
    online, final = run_episode_from_state(learner, meta, state, support_x, support_y, remat)
    query = jax.vmap(lambda x: learner.predict(meta, final, x))(xs[-query_steps:])
    return online, query
