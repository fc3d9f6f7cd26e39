"""The MetaOptimizer contract, for every (meta-optimiser, learner) pair of the registries at its smallest shapes:
a step keeps the state's structure, shapes and dtypes, compiles once, and gives the same result twice.
Incompatible pairs are refused up front with an error that names what to change."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners import BLUR, FWP, LEARNERS, VSML, FWMemory, HebbianFW, MetaRNN, OnlineSGD
from vsml.meta.cmaes import CMAES, MAX_FULL_COVARIANCE_DIMENSION, CMAESConfig
from vsml.meta.es import OpenES, OpenESConfig
from vsml.meta.grad import GradConfig, MetaGradient
from vsml.meta.objectives import Objective
from vsml.meta.problem import population_problem
from vsml.meta.protocol import MetaState, meta_step
from vsml.meta.registry import META_OPTIMIZERS, build_meta_optimizer
from vsml.tasks.datasets import Dataset
from vsml.tasks.episodes import make_episode_source
from vsml.tasks.sampler import EpisodeSampler

FEATURES, CLASSES, LENGTH = 4, 2, 3

# Every registered learner at its smallest sensible shapes (4 features, 2 classes; VSML's sub-RNN: 2-d
# messages, 4-d state, one micro tick).
SMALLEST = {
    "vsml": VSML(feed_label=True, msg_size=2, state_size=4, num_micro_ticks=1),
    "sgd": OnlineSGD(),
    "blur": BLUR(hidden_sizes=(3,)),
    "metarnn": MetaRNN((FEATURES,), CLASSES, slow_size=4),
    "hebbian": HebbianFW((FEATURES,), CLASSES),
    "fwp": FWP((FEATURES,), CLASSES, fast_size=2),
    "fwmemory": FWMemory((FEATURES,), CLASSES, slow_size=4, memory_size=2),
}
SMALLEST_OPTIMIZERS = {
    "es": OpenES(OpenESConfig(num_pairs=2)),
    "cmaes": CMAES(CMAESConfig(population_size=3, num_episodes=1)),
    "grad": MetaGradient(GradConfig(num_episodes=2)),
}


def test_every_registered_learner_and_optimizer_is_covered():
    assert set(SMALLEST) == set(LEARNERS) and all(type(v) is LEARNERS[k] for k, v in SMALLEST.items())
    assert set(SMALLEST_OPTIMIZERS) == set(META_OPTIMIZERS)
    for name, optimizer in SMALLEST_OPTIMIZERS.items():
        assert type(optimizer) is META_OPTIMIZERS[name] and optimizer.name == name
        assert build_meta_optimizer(name, optimizer.config) == optimizer  # equal settings, equal (hashable) value


def tiny_problem(learner, loss: str = "mean", query_steps: int = 0):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, FEATURES)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    dataset = Dataset("tiny", x, y, x, y, CLASSES, (FEATURES,))
    source = make_episode_source(dataset, "train")
    objective = Objective(loss, query_steps)
    return population_problem(learner, objective, (EpisodeSampler(LENGTH + query_steps),), (source,))


def signature(tree):
    return jax.tree.structure(tree), [(jnp.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(tree)]


@pytest.mark.parametrize("learner_name", sorted(SMALLEST))
@pytest.mark.parametrize("optimizer_name", sorted(SMALLEST_OPTIMIZERS))
def test_step_contract(optimizer_name, learner_name):
    optimizer, learner = SMALLEST_OPTIMIZERS[optimizer_name], SMALLEST[learner_name]
    problem = tiny_problem(learner)
    meta = jax.jit(learner.init_meta)(jax.random.PRNGKey(0))
    optimizer.check(problem, meta)  # every pair here is compatible
    state = optimizer.init(meta, jax.random.PRNGKey(1))
    assert isinstance(state, MetaState)
    key = jax.random.PRNGKey(2)
    first, info = meta_step(optimizer, state, key, problem)
    compiled = meta_step._cache_size()
    second, _ = meta_step(optimizer, first, jax.random.PRNGKey(3), problem)
    assert meta_step._cache_size() == compiled, "the second step compiled again"
    assert signature(first) == signature(state) == signature(second)
    assert signature(optimizer.meta_of(first)) == signature(meta)
    assert {"loss", "num_nonfinite"} <= set(info) and all(jnp.shape(v) == () for v in info.values())
    assert np.isfinite(float(info["loss"])) and int(info["num_nonfinite"]) == 0
    again, info_again = meta_step(optimizer, state, key, problem)  # same inputs, same result
    for a, b in zip(jax.tree.leaves((first, info)), jax.tree.leaves((again, info_again)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_full_covariance_cmaes_refuses_a_learner_with_too_many_meta_parameters():
    big = MetaRNN((FEATURES,), CLASSES, slow_size=64)
    meta = jax.eval_shape(big.init_meta, jax.random.PRNGKey(0))
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(meta)) > MAX_FULL_COVARIANCE_DIMENSION
    with pytest.raises(ValueError, match=r"cmaes keeps a full .* covariance.*Use meta_optimizer es"):
        SMALLEST_OPTIMIZERS["cmaes"].check(tiny_problem(big), meta)


def test_gradients_refuse_a_piecewise_constant_loss():
    learner = SMALLEST["blur"]
    problem = tiny_problem(learner, "query_error", query_steps=2)
    meta = learner.init_meta(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="piecewise constant.*query_ce"):
        SMALLEST_OPTIMIZERS["grad"].check(problem, meta)
    SMALLEST_OPTIMIZERS["es"].check(problem, meta)  # ES and CMA-ES rank by it fine
    SMALLEST_OPTIMIZERS["cmaes"].check(problem, meta)


def test_population_smaller_than_its_slices_is_refused():
    problem = tiny_problem(SMALLEST["sgd"])
    three_slices = population_problem(
        problem.learner, "mean", problem.samplers * 3, problem.sources * 3
    )
    with pytest.raises(ValueError, match="es.num_pairs=2 is smaller than the number of population slices"):
        SMALLEST_OPTIMIZERS["es"].check(three_slices, SMALLEST["sgd"].init_meta(jax.random.PRNGKey(0)))
