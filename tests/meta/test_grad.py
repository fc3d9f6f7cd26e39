"""Meta-gradients through the unrolled inner loop (spec §3.2)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.run.test_trainer import TINY, LogLearner, ToyMeta
from vsml.learners.vsml import VSML
from vsml.meta.grad import GradConfig, MetaGradient
from vsml.meta.problem import meta_batch_loss, population_problem
from vsml.meta.protocol import meta_step
from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import MetaTrainer, read_metrics
from vsml.tasks import load_dataset, make_episode_source
from vsml.tasks.sampler import EpisodeSampler

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits_source():
    return make_episode_source(load_dataset("digits"), "train")


def small_batch(key, n=2, t=4, a=6, c=3):
    kx, ky = jax.random.split(key)
    xs = jax.random.normal(kx, (n, t, a))
    ys = jax.nn.one_hot(jax.random.randint(ky, (n, t), 0, c), c)
    return xs, ys, jax.random.split(key, n)


def test_remat_gives_the_same_gradient_and_matches_finite_differences(key):
    model = VSML(hidden_sizes=(4,), feed_label=True)
    meta = model.init_meta(key)
    xs, ys, keys = small_batch(jax.random.PRNGKey(1))
    g_remat = jax.jit(jax.grad(lambda m: meta_batch_loss(model, "mean", True, m, xs, ys, keys)))(meta)
    g_plain = jax.jit(jax.grad(lambda m: meta_batch_loss(model, "mean", False, m, xs, ys, keys)))(meta)
    for a, b in zip(jax.tree_util.tree_leaves(g_remat), jax.tree_util.tree_leaves(g_plain), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)
    # Directional finite difference in float64 confirms the gradient (feedback path included, no stop-grad).
    with jax.enable_x64(True):
        meta64 = jax.tree.map(lambda x: x.astype(jnp.float64), meta)
        xs64, ys64 = xs.astype(jnp.float64), ys.astype(jnp.float64)

        def loss(m):
            return meta_batch_loss(model, "mean", True, m, xs64, ys64, keys)

        direction = jax.tree.map(
            lambda x: jax.random.normal(jax.random.PRNGKey(7), x.shape, jnp.float64), meta64
        )
        grad = jax.jit(jax.grad(loss))(meta64)
        analytic = sum(
            jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction), strict=True)
        )
        eps = 1e-6
        plus = jax.tree.map(lambda m, d: m + eps * d, meta64, direction)
        minus = jax.tree.map(lambda m, d: m - eps * d, meta64, direction)
        jitted = jax.jit(loss)
        numeric = (jitted(plus) - jitted(minus)) / (2 * eps)
        assert abs(float(analytic) - float(numeric)) <= 1e-6 * max(1.0, abs(float(numeric)))


def test_grad_steps_descend_and_clip(digits_source):
    model = VSML(feed_label=True)
    optimizer = MetaGradient(GradConfig(num_episodes=4, learning_rate=1e-2, clip_norm=25.0, remat=True))
    problem = population_problem(model, "mean", (EpisodeSampler(8),), (digits_source,))
    state = optimizer.init(model.init_meta(jax.random.PRNGKey(0)))
    key = jax.random.PRNGKey(3)  # the same batch every step: the loss on it must go down
    losses = []
    for _ in range(6):
        state, info = meta_step(optimizer, state, key, problem)
        losses.append(float(info["loss"]))
        assert int(info["num_nonfinite"]) == 0 and np.isfinite(float(info["grad_norm"]))
    assert losses[-1] < losses[0]


def test_nonfinite_meta_loss_skips_the_update(digits_source):
    learner = LogLearner()  # w = 0: log(0) = -inf logits, NaN loss
    optimizer = MetaGradient(GradConfig(num_episodes=2))
    problem = population_problem(learner, "mean", (EpisodeSampler(5),), (digits_source,))
    start = optimizer.init(ToyMeta(jnp.float32(0.0)))
    new, info = meta_step(optimizer, start, jax.random.PRNGKey(0), problem)
    assert int(info["num_nonfinite"]) == 1 and not np.isfinite(float(info["loss"]))
    assert float(new.meta.w) == 0.0
    for a, b in zip(jax.tree.leaves(new.opt_state), jax.tree.leaves(start.opt_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_trainer_with_gradient_meta_optimizer_resumes_exactly(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["meta_optimizer"] = "grad"
    data["grad"] = {"num_episodes": 2}
    config = experiment_from_dict(data)
    full = MetaTrainer(config, tmp_path / "full")
    full.run(progress=False)
    part = MetaTrainer(config, tmp_path / "part")
    part.run(iterations=2, progress=False)
    resumed = MetaTrainer(config, tmp_path / "part", resume=True)
    resumed.run(progress=False)
    for a, b in zip(jax.tree.leaves(full.meta), jax.tree.leaves(resumed.meta), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    records = read_metrics(tmp_path / "full")
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    assert all("grad_norm" in r and np.isfinite(r["loss"]) for r in records)


def test_unknown_meta_optimizer_is_a_clear_error():
    data = json.loads(json.dumps(TINY))
    data["meta_optimizer"] = "lbfgs"
    with pytest.raises(ValueError, match="meta_optimizer"):
        experiment_from_dict(data)


def test_episodes_run_a_few_at_a_time_give_the_same_meta_gradient(key):
    """grad.episodes_at_once only changes how a device batches the meta-batch (lax.map), not the gradient.
    Three episodes, so that 2 at once is a batch and a remainder."""
    model = VSML(hidden_sizes=(4,), feed_label=True)
    meta = model.init_meta(key)
    xs, ys, keys = small_batch(jax.random.PRNGKey(1), n=3)

    def gradient(at_once):
        def loss(m):
            return meta_batch_loss(model, "mean", True, m, xs, ys, keys, at_once)

        return jax.jit(jax.grad(loss))(meta)  # compiled whole, not op by op

    together = gradient(None)
    for at_once in (1, 2, "auto"):
        for a, b in zip(jax.tree.leaves(gradient(at_once)), jax.tree.leaves(together), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="episodes_at_once"):
        GradConfig(episodes_at_once=0)
