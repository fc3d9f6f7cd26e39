"""Tiny meta-training steps whose results must not depend on how many devices run them (tests/meta/test_parallel).

Imported, it gives the single-device results of the pytest process; run as a script under
`XLA_FLAGS=--xla_force_host_platform_device_count=4`, it writes the same results, computed on 4 devices, to an
.npz file:

    python tests/meta/sharded_steps.py OUT.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

if __name__ == "__main__":  # run as a script: make `tests` and `vsml` importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.run.test_trainer import TINY, ScaledLearner, VectorMeta
from vsml.meta.cmaes import CMAESConfig, cmaes_init, ravel_meta
from vsml.meta.cmaes_iteration import cmaes_iteration
from vsml.meta.es import make_es_optimizer
from vsml.meta.grad import meta_batch_loss
from vsml.meta.parallel import replicate
from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import es_iteration
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

    optimizer = make_es_optimizer(experiment_from_dict(TINY).es)
    samplers = (EpisodeSampler(5), EpisodeSampler(5, EpisodeTransform(resize=(6, 6))))
    # Placed as the steps return them (as the trainer does), so the second step does not compile again.
    meta, opt_state, sources = replicate((start, optimizer.init(start), (source, source)))
    for iteration in range(2):
        meta, opt_state, *_ = es_iteration(
            learner, "mean", (1, 2), 0.5, samplers, optimizer, meta, opt_state, sources,
            jax.random.PRNGKey(iteration), (jax.random.PRNGKey(10), jax.random.PRNGKey(11)),
        )  # fmt: skip
    results["es/w"] = np.asarray(meta.w)

    flat, unravel = ravel_meta(start)
    config = CMAESConfig(population_size=6, sigma=0.3)
    state = replicate(cmaes_init(config, flat))
    for generation in range(2):
        state, *_ = cmaes_iteration(
            learner, "mean", config, 2, EpisodeSampler(5), unravel, state, sources[0], jax.random.PRNGKey(generation)
        )  # fmt: skip
    results["cmaes/mean"] = np.asarray(state.mean)

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
