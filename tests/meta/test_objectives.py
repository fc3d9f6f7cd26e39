"""Tests of the meta-losses and online metrics (spec vsml.md §2) against literal numpy versions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.meta.objectives import (
    META_LOSSES,
    final_step_accuracy,
    last_step_cross_entropy,
    mean_online_cross_entropy,
    meta_loss_by_name,
    online_accuracy,
    online_accuracy_curve,
    online_loss_curve,
    per_step_cross_entropy,
)

N, T, C = 4, 6, 5


@pytest.fixture
def episodes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(N, T, C)).astype(np.float32) * 3
    labels = rng.integers(0, C, size=(N, T))
    return logits, np.eye(C, dtype=np.float32)[labels]


def numpy_cross_entropy(logits: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Literal −log softmax(logits)[label], step by step: [N, T]."""
    out = np.zeros(logits.shape[:2])
    for n in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            z = logits[n, t].astype(np.float64)
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            out[n, t] = -np.log(p[np.argmax(ys[n, t])])
    return out


def test_cross_entropies_match_numpy(episodes):
    logits, ys = episodes
    ce = numpy_cross_entropy(logits, ys)
    np.testing.assert_allclose(per_step_cross_entropy(logits, ys), ce, rtol=1e-5)
    np.testing.assert_allclose(mean_online_cross_entropy(logits, ys), ce.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(last_step_cross_entropy(logits, ys), ce[:, -1], rtol=1e-5)
    np.testing.assert_allclose(online_loss_curve(logits, ys), ce.mean(axis=0), rtol=1e-5)


def test_mean_loss_is_the_area_under_the_online_loss_curve(episodes):
    """§2: `loss_type: mean` = area under the per-step loss curve (unit-width steps), normalised by T."""
    logits, ys = episodes
    curve = online_loss_curve(logits[:1], ys[:1])  # [T]
    area = float(curve.sum())
    assert float(mean_online_cross_entropy(logits[0], ys[0])) == pytest.approx(area / T, rel=1e-5)


def test_accuracies_match_numpy(episodes):
    logits, ys = episodes
    correct = (logits.argmax(-1) == ys.argmax(-1)).astype(np.float32)
    np.testing.assert_allclose(online_accuracy(logits, ys), correct.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(final_step_accuracy(logits, ys), correct[:, -1])
    np.testing.assert_allclose(online_accuracy_curve(logits, ys), correct.mean(axis=0), rtol=1e-6)


def test_leading_axes_are_kept_and_curves_average_them(episodes):
    logits, ys = episodes
    stacked_logits, stacked_ys = np.stack([logits, logits]), np.stack([ys, ys])  # [2, N, T, C]
    assert mean_online_cross_entropy(stacked_logits, stacked_ys).shape == (2, N)
    assert online_accuracy(stacked_logits, stacked_ys).shape == (2, N)
    assert final_step_accuracy(stacked_logits, stacked_ys).shape == (2, N)
    np.testing.assert_allclose(
        online_accuracy_curve(stacked_logits, stacked_ys), online_accuracy_curve(logits, ys), rtol=1e-6
    )
    single = online_accuracy_curve(logits[0], ys[0])  # one episode [T, C] -> [T]
    assert single.shape == (T,)


def test_perfect_and_uniform_predictions():
    ys = jnp.eye(C)[jnp.arange(T) % C]
    confident = 50.0 * ys
    assert float(online_accuracy(confident, ys)) == 1.0
    assert float(mean_online_cross_entropy(confident, ys)) < 1e-6
    uniform = jnp.zeros((T, C))
    np.testing.assert_allclose(mean_online_cross_entropy(uniform, ys), np.log(C), rtol=1e-6)


def test_padded_label_space_never_predicts_padding():
    """A one-hot over a padded label space: the label is one of the first 3 of 5 columns."""
    ys = jnp.eye(5)[jnp.array([0, 2, 1])][None]
    logits = jnp.array([[[2.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0], [0, 0, 0, 0, 3.0]]])
    np.testing.assert_allclose(online_accuracy(logits, ys), [2 / 3], rtol=1e-6)


def test_meta_losses_are_differentiable_and_jittable(episodes):
    logits, ys = episodes
    for loss in META_LOSSES.values():
        grad = jax.jit(jax.grad(lambda z, loss=loss: loss(z, ys).sum()))(jnp.asarray(logits))
        assert grad.shape == logits.shape and bool(jnp.all(jnp.isfinite(grad)))
        # The CE gradient is softmax − y on the steps the loss looks at.
        assert float(jnp.abs(grad.sum(axis=-1)).max()) < 1e-5


def test_registry():
    assert meta_loss_by_name("mean") is mean_online_cross_entropy
    assert meta_loss_by_name("last") is last_step_cross_entropy
    with pytest.raises(ValueError, match=r"unknown meta-loss 'sum'; choose one of: last, mean"):
        meta_loss_by_name("sum")


def test_shape_mismatch_is_a_clear_error(episodes):
    logits, ys = episodes
    with pytest.raises(ValueError, match=r"same shape .*\(4, 6, 5\) and \(6, 5\)"):
        mean_online_cross_entropy(logits, ys[0])
    with pytest.raises(ValueError, match=r"\[\.\.\., T, C\]"):
        online_accuracy(logits[0, 0], ys[0, 0])


# ----- query losses and inner batches (BLUR, blur.md §5–6) -------------------------------------------------------


class _Memoriser:
    """A toy learner with a forward-only `predict`: it remembers the label of the last example of each class
    sign, so learning (step) changes its query predictions and prediction alone does not."""

    def init_meta(self, key):
        return jnp.zeros(())

    def init_state(self, meta, key, spec):
        return jnp.zeros((spec.num_classes,))

    def step(self, meta, state, x, y):
        logits = jnp.broadcast_to(state, y.shape)
        return logits, state + jnp.sum(y.reshape((-1, y.shape[-1])), axis=0)

    def predict(self, meta, state, x):
        return jnp.broadcast_to(state, x.shape[:-1] + state.shape)


def test_query_losses_score_predictions_after_learning():
    from vsml.meta.objectives import Objective, episode_meta_loss

    # 3 learning steps of class 2, then 2 query steps: the memoriser predicts class 2 for every query.
    ys = jax.nn.one_hot(jnp.array([2, 2, 2, 2, 0]), 4)
    xs = jnp.zeros((5, 3))
    error = episode_meta_loss(_Memoriser(), Objective("query_error", 2), None, jax.random.PRNGKey(0), xs, ys)
    assert float(error) == pytest.approx(0.5)  # right on the 4th step's class 2, wrong on the class-0 query
    ce = episode_meta_loss(_Memoriser(), Objective("query_ce", 2), None, jax.random.PRNGKey(0), xs, ys)
    logits = jnp.array([0.0, 0.0, 3.0, 0.0])  # the state after 3 learning steps; the query steps do not learn
    expected = np.mean([-jax.nn.log_softmax(logits)[2], -jax.nn.log_softmax(logits)[0]])
    assert float(ce) == pytest.approx(float(expected), rel=1e-6)
    l2 = episode_meta_loss(_Memoriser(), Objective("query_l2", 2), None, jax.random.PRNGKey(0), xs, ys)
    targets = np.array([[-1, -1, 1, -1], [1, -1, -1, -1]], np.float32)
    assert float(l2) == pytest.approx(float(np.mean((np.asarray(logits)[None] - targets) ** 2)), rel=1e-6)


def test_online_losses_average_an_inner_batch_over_its_steps():
    from vsml.meta.objectives import episode_meta_loss

    rng = np.random.default_rng(1)
    ys = jnp.asarray(np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=(4, 5))])  # [T, B, C]
    xs = jnp.zeros((4, 5, 2))
    loss = episode_meta_loss(_Memoriser(), "mean", None, jax.random.PRNGKey(0), xs, ys)
    counts, expected = np.zeros(3), []
    for t in range(4):
        logits = counts.astype(np.float64)
        expected += [-(logits - np.log(np.exp(logits).sum()))[np.argmax(ys[t, b])] for b in range(5)]
        counts = counts + np.asarray(ys[t]).sum(axis=0)
    assert float(loss) == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_bad_objectives_are_clear_errors():
    from vsml.learners import VSML, MetaRNN
    from vsml.meta.objectives import Objective, check_learner_supports

    with pytest.raises(ValueError, match="task.query_steps >= 1"):
        Objective("query_error")
    with pytest.raises(ValueError, match="needs a query loss"):
        Objective("mean", query_steps=3)
    with pytest.raises(ValueError, match="unknown meta-loss"):
        Objective("accuracy")
    with pytest.raises(ValueError, match="no forward-only predict"):
        check_learner_supports(MetaRNN(), Objective("query_ce", 2))
    check_learner_supports(VSML(), Objective("query_ce", 2))  # VSML.predict: a forward tick, state discarded
