"""Meta-testing a batched, query-scored run (BLUR): labels, query accuracy and the same-MLP SGD baseline."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.evaluation.baselines import same_unroll_sgd
from vsml.evaluation.meta_test import combine_runs, load_trained_run, meta_test
from vsml.evaluation.statistics import prefix_accuracy
from vsml.learners.base import TaskSpec
from vsml.learners.blur.learner import BLUR, backprop_genome
from vsml.report.meta_test import report_tables
from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import MetaTrainer

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
    adam = next(label for label in learners if label.startswith("Adam, same MLP and batches"))
    # 3 SGD steps on batches of 8 digits learn something a fresh network cannot know.
    assert learners[sgd]["query_accuracy"] > 0.2
    assert 0.0 <= learners[adam]["query_accuracy_interval_95"] <= 1.0 and len(learners[adam]["curve"]) == 3
    table = report_tables(report, num_blocks=3)
    assert "| query | query ± 95% |" in table
    # Short episodes: every step with its interval over episodes, one column per learner.
    assert "predicted before it is learned" in table and f"| {adam}" in table
    # Two runs (here the same run with another query score): the mean over runs, and the best run beside it.
    other = json.loads(json.dumps(report))
    trained = next(r for r in other["datasets"]["digits"]["learners"].values() if r["role"] == "meta-trained")
    mine = next(r for r in learners.values() if r["role"] == "meta-trained")["query_accuracy"]
    trained["query_accuracy"] = mine + 0.5
    query = combine_runs([report, other], ["a", "b"])["datasets"]["digits"]["seeds"]["query_accuracy"]
    assert query["values"] == pytest.approx([mine, mine + 0.5]) and query["best_run"] == "b"
    assert query["mean"] == pytest.approx(mine + 0.25) and query["best"] == pytest.approx(mine + 0.5)
    assert "the best run" in report_tables(combine_runs([report, other], ["a", "b"]), num_blocks=3)


def test_same_unroll_sgd_uses_the_learners_mlp_and_initial_synapses():
    learner = BLUR(hidden_sizes=(5,), init_scale=0.5, scale_by_channels=True)
    sgd = same_unroll_sgd(learner)
    assert sgd.hidden_sizes == (5,) and sgd.init_scale == 0.5 and sgd.scale_by_channels
    spec, key = TaskSpec((4,), 3), jax.random.PRNGKey(0)
    genome = backprop_genome(2, -0.1)
    first, second = learner.init_state(genome, key, spec), sgd.init_state(genome, key, spec)
    # The baseline's synapses are the learner's, made symmetric (every channel and G = Fᵀ from channel 0).
    np.testing.assert_array_equal(np.asarray(second.forward[0][1]), np.asarray(first.forward[0][0]))
    np.testing.assert_array_equal(
        np.asarray(second.backward[0][0]), np.asarray(jnp.transpose(first.forward[0][0, :-1]))
    )


# TINY's shapes (tests/run/test_trainer.py: 6-step episodes, 2 pairs, eval 2 x 6): the meta-step and the
# evaluation then come from the suite's shared compilation cache instead of being compiled once more.
VSML_RUN = {
    "name": "vsml_seeds",
    "learner": {"name": "vsml", "feed_label": True},
    "task": {"dataset": "digits", "episode_length": 6},
    "es": {"num_pairs": 2},
    "train": {"iterations": 1, "checkpoint_every": 1},
    "eval": {"datasets": ["digits"], "every": 1, "num_episodes": 2, "episode_length": 6},
}


def test_intervals_csv_and_several_runs_combined(tmp_path):
    from vsml.report.meta_test import curves_csv, write_report

    reports = []
    for seed in (1, 2):
        MetaTrainer(experiment_from_dict({**VSML_RUN, "seed": seed}), tmp_path / f"s{seed}").run(
            progress=False
        )
        reports.append(
            meta_test(load_trained_run(tmp_path / f"s{seed}"), num_episodes=5, length=6, num_blocks=2)
        )
    entry = reports[0]["datasets"]["digits"]["learners"]
    assert {r["role"] for r in entry.values()} == {"untrained", "meta-trained", "baseline"}
    for r in entry.values():
        per_episode_std = np.std(r["curve"])  # a loose bound: the interval is over 5 episodes
        assert 0.0 <= r["mean_accuracy_interval_95"] <= 1.0 and len(r["loss_curve"]) == 6
        assert np.isfinite(per_episode_std)
    combined = combine_runs(reports, ["s1", "s2"])
    seeds = combined["datasets"]["digits"]["seeds"]
    trained = [
        next(r for r in rep["datasets"]["digits"]["learners"].values() if r["role"] == "meta-trained")
        for rep in reports
    ]
    assert seeds["mean_accuracy"] == [t["mean_accuracy"] for t in trained]
    assert seeds["mean_accuracy_mean"] == pytest.approx(np.mean(seeds["mean_accuracy"]))
    np.testing.assert_allclose(seeds["curve"], np.mean([t["curve"] for t in trained], axis=0))
    assert "over 2 runs (s1, s2)" in report_tables(combined, num_blocks=2)
    # First-n-step blocks (here of the 6 steps there are) and their mean over the runs.
    for rep in reports:
        for r in rep["datasets"]["digits"]["learners"].values():
            r["prefix_accuracy"] = prefix_accuracy(np.tile(r["curve"], (5, 1)), (3, 6))
    combined = combine_runs(reports, ["s1", "s2"])
    blocks = combined["datasets"]["digits"]["seeds"]["prefix_accuracy"]
    assert list(blocks) == ["3", "6"] and blocks["6"]["values"] == pytest.approx(seeds["mean_accuracy"])
    assert blocks["6"]["interval_95"] == pytest.approx(seeds["mean_accuracy_interval_95"])
    table = report_tables(combined, num_blocks=2)
    assert "first n examples" in table and "| steps 1–3" in table and "mean of 2 runs" in table
    csv = curves_csv(combined).splitlines()
    assert csv[0] == "dataset,learner,step,accuracy,accuracy_std,loss" and len(csv) == 1 + 6 * len(entry)
    written = {p.name for p in write_report(combined, tmp_path / "out")}
    assert {"evaluation.json", "evaluation.md", "evaluation.csv", "learning_curves_digits.png"} == written


def test_runs_meta_tested_on_different_settings_are_not_combined():
    def report(length):
        return {"datasets": {"digits": {}}, "episodes": 2, "length": length}

    with pytest.raises(ValueError, match="different settings.*--datasets"):
        combine_runs([report(5), report(6)], ["a", "b"])


def test_a_corrupt_checkpoint_manifest_is_an_error_naming_the_file(tmp_path):
    from vsml.run.checkpoint import CheckpointError

    manifest = tmp_path / "ckpt_00000001.json"
    (tmp_path / "ckpt_00000001.npz").write_bytes(b"")
    manifest.write_text("{not json")
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint manifest {manifest}"):
        load_trained_run(manifest)
