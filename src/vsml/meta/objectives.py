"""Meta-losses and metrics of online episodes (spec vsml.md §2).

Every function takes the logits a learner produced over an episode, `logits: [..., T, C]`, and the one-hot
labels `ys: [..., T, C]`; the logit at step t is the prediction for x_t made *before* y_t was seen
(DESIGN.md), so these measure how fast the learner learns, not how well it fits. Leading axes (episodes,
population members, ...) are kept, except by the `*_curve` functions, which average them away.

- `mean_online_cross_entropy` is the default meta-loss (`loss_type: mean`): the mean cross-entropy over all
  T steps, i.e. the area under the online loss curve, which rewards fast learning (§2).
- `last_step_cross_entropy` is `loss_type: last`, used for the Omniglot query step (§2, §6.5).
- `online_accuracy` / `final_step_accuracy` are the logged `eval_accuracy_*` / `eval_final_accuracy_*` (§2).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from vsml.learners.base import softmax_cross_entropy

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


def _correct(logits: Array, ys: Array) -> Array:
    # argmax of a one-hot row is its class; padded label spaces (all-zero columns) are never the target.
    return (jnp.argmax(logits, axis=-1) == jnp.argmax(ys, axis=-1)).astype(jnp.float32)


def online_accuracy(logits: Array, ys: Array) -> Array:
    """Fraction of steps whose prediction (made before the label) was right, `[..., T, C] -> [...]` (§2)."""
    _check_episode_shapes(logits, ys)
    return jnp.mean(_correct(logits, ys), axis=-1)


def final_step_accuracy(logits: Array, ys: Array) -> Array:
    """Whether the last prediction of each episode was right (0. or 1.), `[..., T, C] -> [...]` (§2)."""
    _check_episode_shapes(logits, ys)
    return _correct(logits[..., -1, :], ys[..., -1, :])


def online_accuracy_curve(logits: Array, ys: Array) -> Array:
    """The learning curve: accuracy at each step averaged over every leading axis, `[..., T, C] -> [T]`."""
    _check_episode_shapes(logits, ys)
    correct = _correct(logits, ys)
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
