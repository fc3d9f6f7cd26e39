"""Meta-testing a batched, query-scored run (BLUR): labels, query accuracy and the same-MLP SGD baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.experiment import experiment_from_dict
from vsml.learners.base import TaskSpec
from vsml.learners.blur import BLUR, backprop_genome
from vsml.meta.trainer import MetaTrainer
from vsml.meta_test import load_trained_run, meta_test, report_tables, same_unroll_sgd

pytest.importorskip("sklearn")

BLUR_RUN = {
    "name": "blur_meta_test",
    "seed": 2,
    "learner": {
        "name": "blur",
        "hidden_sizes": [6],
        "scale_by_channels": True,
        "activation_normalization": "both",
    },
    "task": {
        "dataset": "digits",
        "episode_length": 3,
        "batch_size": 8,
        "query_steps": 2,
        "loss": "query_error",
    },
    "meta_optimizer": "cmaes",
    "cmaes": {"population_size": 4, "sigma": 0.1},
    "train": {"iterations": 1, "checkpoint_every": 1},
    "eval": {"datasets": ["digits"], "every": 1, "num_episodes": 2, "episode_length": 3},
}


def test_blur_run_meta_test_reports_query_accuracy_and_same_mlp_sgd(tmp_path):
    MetaTrainer(experiment_from_dict(BLUR_RUN), tmp_path).run(progress=False)
    report = meta_test(load_trained_run(tmp_path), num_episodes=4, num_blocks=3)
    learners = report["datasets"]["digits"]["learners"]
    assert set(learners) >= {"BLUR, untrained genome", "BLUR, meta-trained genome (1 CMA-ES it.)"}
    sgd = next(label for label in learners if label.startswith("SGD, same MLP and batches"))
    for entry in learners.values():
        assert 0.0 <= entry["query_accuracy"] <= 1.0 and len(entry["curve"]) == 3
    # 3 SGD steps on batches of 8 digits learn something a fresh network cannot know.
    assert learners[sgd]["query_accuracy"] > 0.2
    assert "| query |" in report_tables(report, num_blocks=3)


def test_same_unroll_sgd_uses_the_learners_mlp_and_initial_synapses():
    learner = BLUR(hidden_sizes=(5,), init_scale=0.5, scale_by_channels=True)
    sgd = same_unroll_sgd(learner)
    assert sgd.hidden_sizes == (5,) and sgd.init_scale == 0.5 and sgd.scale_by_channels
    spec, key = TaskSpec((4,), 3), jax.random.PRNGKey(0)
    genome = backprop_genome(2, -0.1)
    first, second = learner.init_state(genome, key, spec), sgd.init_state(genome, key, spec)
    # The baseline's synapses are the learner's, made symmetric (every channel and G = Fᵀ from channel 0).
    np.testing.assert_array_equal(np.asarray(second.forward[0][..., 1]), np.asarray(first.forward[0][..., 0]))
    np.testing.assert_array_equal(
        np.asarray(second.backward[0][..., 0]), np.asarray(jnp.transpose(first.forward[0][:-1, :, 0]))
    )
