"""Tiny meta-training steps whose results must not depend on how many devices run them (tests/meta/test_parallel).

Imported, it gives the single-device results of the pytest process; run as a script under
`XLA_FLAGS=--xla_force_host_platform_device_count=4`, it writes the same results, computed on 4 devices, to an
.npz file:

    python tests/meta/sharded_steps.py OUT.npz
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

if __name__ == "__main__":  # run as a script: make `tests` and `vsml` importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.run.test_trainer import TINY, ScaledLearner, VectorMeta
from vsml.meta.cmaes import CMAES, CMAESConfig
from vsml.meta.es import OpenES
from vsml.meta.parallel import replicate
from vsml.meta.problem import meta_batch_loss, population_problem
from vsml.meta.protocol import meta_step
from vsml.run.experiment import experiment_from_dict
from vsml.tasks import load_dataset, make_episode_source
from vsml.tasks.sampler import EpisodeSampler
from vsml.tasks.transforms import EpisodeTransform


def sharded_results() -> dict[str, np.ndarray]:
    """After two steps each: V_M of ES over a heterogeneous population (1 pair on 8×8 digits, 2 pairs on digits
    resized to 6×6: 2 and 4 members, so on 4 devices the first slice is padded), the CMA-ES mean (population 6:
    padded to 8), and a meta-batch loss and gradient (3 episodes: padded to 4).

    A linear toy learner keeps the compilation short: what is checked is the split over devices, not the
    learner (test_parallel's two-process test runs VSML through the trainer).
    """
    learner = ScaledLearner()
    start = VectorMeta(jax.numpy.linspace(-1.0, 1.0, 10))
    source = make_episode_source(load_dataset("digits"), "train")
    results = {}

    es = OpenES(replace(experiment_from_dict(TINY).es, num_pairs=3, sigma=0.5))
    samplers = (EpisodeSampler(5), EpisodeSampler(5, EpisodeTransform(resize=(6, 6))))
    transform_keys = (jax.random.PRNGKey(10), jax.random.PRNGKey(11))
    # Placed as the steps return them (as the trainer does), so the second step does not compile again.
    state, sources = replicate((es.init(start), (source, source)))
    problem = population_problem(learner, "mean", samplers, sources, (1, 2), transform_keys)
    assert es.slice_counts(problem.shares) == (1, 2)
    for iteration in range(2):
        state, _ = meta_step(es, state, jax.random.PRNGKey(iteration), problem)
    results["es/w"] = np.asarray(state.meta.w)

    cmaes = CMAES(CMAESConfig(population_size=6, sigma=0.3, num_episodes=2))
    state = replicate(cmaes.init(start))
    problem = population_problem(learner, "mean", (EpisodeSampler(5),), sources[:1])
    for generation in range(2):
        state, _ = meta_step(cmaes, state, jax.random.PRNGKey(generation), problem)
    results["cmaes/mean"] = np.asarray(state.opt_state.mean)

    episodes = EpisodeSampler(5).sample(source, jax.random.PRNGKey(1), 3, None)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    loss, grad = jax.jit(
        jax.value_and_grad(lambda meta: meta_batch_loss(learner, "mean", False, meta, *episodes, keys))
    )(start)
    results["grad/loss"], results["grad/w"] = np.asarray(loss), np.asarray(grad.w)
    results["devices"] = np.asarray(jax.device_count())
    return results


if __name__ == "__main__":
    np.savez(sys.argv[1], **sharded_results())
