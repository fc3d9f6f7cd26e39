"""Introspection (VSML Sec. 5, spec vsml.md §6.6) and BLUR's "not gradient descent" check (blur.md §9)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.cli.main import main
from vsml.evaluation.introspect import (
    IntrospectionSampler,
    check_source,
    earlier_examples,
    introspect_run,
    prediction_trace,
    recognition_by_k,
)
from vsml.evaluation.meta_test import TrainedRun
from vsml.learners import build_learner
from vsml.learners.sgd import online_sgd
from vsml.report.introspect import introspection_table, write_introspection
from vsml.run.experiment import experiment_from_dict
from vsml.tasks.episodes import EpisodeSource

# One episode shape for the VSML tests, so the CLI test reuses the compilations of the "better learner" test.
LENGTH, WAYS, EPISODES = 16, 4, 8
TINY_VSML_RUN = {
    "name": "introspect_tiny",
    "seed": 3,
    "learner": {"name": "vsml", "num_micro_ticks": 1},  # one tick: a smaller program, quicker to compile
    "task": {"dataset": "digits", "episode_length": 4},
    "es": {"num_pairs": 2},
    "train": {"iterations": 1, "checkpoint_every": 1},
    "eval": {"datasets": ["digits"], "every": 100, "num_episodes": 2, "episode_length": 4},
}


# ----- the summary by k ------------------------------------------------------------------------------------------


def test_recognition_by_k_on_a_hand_made_trace():
    labels = np.array([0, 1, 0, 0, 1, 2])
    np.testing.assert_array_equal(earlier_examples(labels), [0, 0, 1, 2, 1, 0])
    # p(true class) per step: 0.2, 0.3, 0.9, 0.6, 0.4, 0.1; argmax right at steps 2, 3 and 4 only.
    probabilities = np.array(
        [
            [0.2, 0.5, 0.3],
            [0.6, 0.3, 0.1],
            [0.9, 0.05, 0.05],
            [0.6, 0.2, 0.2],
            [0.3, 0.4, 0.3],
            [0.45, 0.45, 0.1],
        ]
    )
    by_k = recognition_by_k(probabilities, labels)
    assert by_k["k"] == [0, 1, 2]
    assert by_k["count"] == [3, 2, 1]
    np.testing.assert_allclose(by_k["true_class_probability"], [0.2, 0.65, 0.6])
    np.testing.assert_allclose(by_k["accuracy"], [0.0, 1.0, 1.0])
    # Episodes are pooled over leading axes; a k with no steps is None; k > max_k is left out.
    pooled = recognition_by_k(np.stack([probabilities] * 2), np.stack([labels] * 2), max_k=3)
    assert pooled["count"] == [6, 4, 2, 0] and pooled["true_class_probability"][3] is None
    assert recognition_by_k(probabilities, labels, max_k=0)["count"] == [3]
    assert "accuracy_interval_95" not in by_k  # one episode: no interval over episodes
    # Intervals over episodes: each episode's mean over its steps with that k. Two identical episodes: 0.
    assert pooled["true_class_probability_interval_95"][:3] == [0.0, 0.0, 0.0]
    # A second episode with k = 1 steps at p 0.15 (the first: 0.65): the spread of the two episode means.
    other = probabilities.copy()
    other[[2, 4]] = [[0.15, 0.8, 0.05], [0.8, 0.15, 0.05]]
    spread = recognition_by_k(np.stack([probabilities, other]), np.stack([labels] * 2))
    assert spread["true_class_probability"][1] == pytest.approx(0.4)
    half_width = 1.96 / np.sqrt(2)
    assert spread["true_class_probability_interval_95"][1] == pytest.approx(half_width * np.std([0.65, 0.15], ddof=1))
    assert spread["accuracy_interval_95"][1] == pytest.approx(half_width * np.std([1.0, 0.0], ddof=1))


def test_prediction_trace_shapes_and_probabilities(key):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32)
    ys = jnp.asarray(np.eye(3)[[2, 0, 2, 1, 2, 0, 1]], jnp.float32)
    trace = prediction_trace(online_sgd(0.5), online_sgd(0.5).init_meta(key), key, xs, ys)
    assert trace["probabilities"].shape == (7, 3)
    np.testing.assert_allclose(trace["probabilities"].sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(trace["labels"], [2, 0, 2, 1, 2, 0, 1])
    np.testing.assert_array_equal(trace["earlier_examples"], [0, 0, 1, 0, 2, 1, 1])
    np.testing.assert_allclose(
        trace["true_class_probability"], trace["probabilities"][np.arange(7), trace["labels"]]
    )
    assert trace["by_k"]["count"] == [3, 3, 1]
    with pytest.raises(ValueError, match="one example per step"):
        prediction_trace(online_sgd(), online_sgd().init_meta(key), key, xs[:, None], ys[:, None])


# ----- the episodes ---------------------------------------------------------------------------------------------


def _indexed_source(num_classes: int = 6, per_class: int = 5) -> EpisodeSource:
    """x = the example's index, y = index mod num_classes: an episode's examples can be read off its xs."""
    n = num_classes * per_class
    return EpisodeSource(
        jnp.arange(n, dtype=jnp.float32)[:, None],
        jnp.arange(n, dtype=jnp.int32) % num_classes,
        num_classes,
        (1,),
    )


def test_introspection_episodes_have_few_classes_distinct_examples_random_order(key):
    source = _indexed_source()
    sampler = IntrospectionSampler(length=10, ways=4)
    xs, ys = sampler.sample(source, key, 3, key)
    assert xs.shape == (3, 10, 1) and ys.shape == (3, 10, 6)
    index, labels = np.asarray(xs[..., 0]).astype(int), np.asarray(jnp.argmax(ys, axis=-1))
    np.testing.assert_array_equal(index % 6, labels)  # each label is its example's
    orders = set()
    for episode in range(3):
        assert len(set(index[episode])) == 10  # no example twice
        counts = sorted(np.bincount(labels[episode], minlength=6).tolist(), reverse=True)
        assert counts == [3, 3, 2, 2, 0, 0]  # 4 classes, ⌈10 / 4⌉ = 3 of the first two
        orders.add(tuple(labels[episode]))
    assert len(orders) == 3
    # The same key gives the same episodes; one episode alone is the same function.
    np.testing.assert_array_equal(np.asarray(sampler.sample(source, key, 3, key).xs), np.asarray(xs))
    with pytest.raises(ValueError, match="examples each"):
        check_source(source, length=24, ways=4)  # 6 per class, 5 exist
    with pytest.raises(ValueError, match="ways"):
        check_source(source, length=10, ways=7)


# ----- a run: a better learner scores higher; the CLI end to end --------------------------------------------------


@pytest.fixture(scope="module")
def vsml_config():
    pytest.importorskip("sklearn")
    return experiment_from_dict(TINY_VSML_RUN)


def test_tuned_sgd_recognises_classes_better_than_an_untrained_vsml(vsml_config, tmp_path):
    learner = build_learner(vsml_config.learner)
    untrained = TrainedRun(vsml_config, learner, learner.init_meta(jax.random.PRNGKey(0)), 0, tmp_path)
    report = introspect_run(untrained, length=LENGTH, ways=WAYS, episodes=EPISODES, tune_episodes=EPISODES)
    json.dumps(report, allow_nan=False)  # JSON-able
    assert report["max_k"] == 3 and report["learner"]["by_k"]["count"] == [EPISODES * WAYS] * 4
    example = np.asarray(report["learner"]["example"]["probabilities"])
    assert example.shape == (LENGTH, 10)
    np.testing.assert_allclose(example.sum(axis=-1), 1.0, rtol=1e-5)
    sgd, vsml = report["sgd"]["by_k"], report["learner"]["by_k"]
    for k in (2, 3):
        assert sgd["true_class_probability"][k] > vsml["true_class_probability"][k] + 0.1, k
    assert report["sgd"]["learning_rate"] in [float(r) for r in report["sgd"]["train_split_accuracy"]]


def test_cli_introspect_end_to_end(vsml_config, tmp_path, capsys):
    from vsml.run.trainer import MetaTrainer

    MetaTrainer(vsml_config, tmp_path / "run").run(progress=False)
    out = tmp_path / "intro"
    argv = ["--cpu-devices", "1", "introspect", str(tmp_path / "run"), "--dataset", "digits", "--quiet"]
    argv += ["--length", str(LENGTH), "--ways", str(WAYS), "--episodes", str(EPISODES), "--out", str(out)]
    assert main([*argv, "--set", "task.normalisation=dataset"]) == 0
    printed = capsys.readouterr().out
    assert (
        "| k (earlier examples) |" in printed
        and "VSML p(true) ± 95%" in printed
        and "online SGD p(true) ± 95%" in printed
    )
    assert "VSML, meta-trained V_M (1 ES it.)" in printed
    report = json.loads((out / "introspection.json").read_text())
    assert (
        report["dataset"] == "digits"
        and report["episodes"] == EPISODES
        and "gradient_asymmetry" not in report
    )
    assert (out / "introspection.png").stat().st_size > 20_000
    # Several runs (here one run twice) on the same episodes: their mean over runs beside the first run.
    twice = [*argv[:4], str(tmp_path / "run"), *argv[4:]]
    assert main([*twice, "--set", "task.normalisation=dataset"]) == 0
    assert "mean of 2 runs p(true) ± 95% over runs" in capsys.readouterr().out
    seeds = json.loads((out / "introspection.json").read_text())["seeds"]
    assert seeds["by_k"]["accuracy"]["mean"] == report["learner"]["by_k"]["accuracy"]
    assert seeds["by_k"]["accuracy"]["interval_95"] == [0.0] * len(seeds["by_k"]["k"])
    # Bad input is one clear line.
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it, with its usage line
        main([*argv, "--episodes", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "vsml introspect: error:" in err and "--episodes: must be >= 1" in err and "Traceback" not in err


def test_introspect_a_blur_run_reports_the_asymmetry_of_every_layer(vsml_config, tmp_path):
    config = experiment_from_dict({**TINY_VSML_RUN, "learner": {"name": "blur", "hidden_sizes": [3]}})
    learner = build_learner(config.learner)
    run = TrainedRun(config, learner, learner.init_meta(jax.random.PRNGKey(2)), 0, tmp_path)
    report = introspect_run(run, length=8, ways=4, episodes=2, sgd=False, asymmetry_synapses=48)
    json.dumps(report, allow_nan=False)
    layers = report["gradient_asymmetry"]["layers"]
    assert [entry["layer"] for entry in layers] == [0, 1]
    assert layers[0]["synapses"] == 65 * 3 and layers[1]["synapses"] == 4 * 10
    assert layers[0]["measured_synapses"] == 48 and layers[1]["measured_synapses"] == 40
    for entry in layers:
        assert entry["relative_max_asymmetry"] > 1e-3  # a random genome
        assert entry["sgd_reference"]["relative_max_asymmetry"] < 1e-5  # float32 rounding of a Hessian


def test_blur_normalising_over_the_batch_is_not_introspected_one_example_at_a_time(tmp_path):
    """At batch 1 BLUR's batch statistics make every prediction uniform: a p(true) of exactly chance that says
    nothing about the learner. The report says so instead, keeps SGD and the update's asymmetry."""
    learner_settings = {"name": "blur", "hidden_sizes": [3], "activation_normalization": "both"}
    config = experiment_from_dict({**TINY_VSML_RUN, "learner": learner_settings})
    learner = build_learner(config.learner)
    run = TrainedRun(config, learner, learner.init_meta(jax.random.PRNGKey(2)), 0, tmp_path)
    report = introspect_run(run, length=8, ways=4, episodes=2, tune_episodes=2, asymmetry_synapses=8)
    assert report["learner"] is None and "statistics over the batch" in report["learner_not_measured"]
    assert report["sgd"] is not None and len(report["gradient_asymmetry"]["layers"]) == 2
    table = introspection_table(report)
    assert "not measured" in table and "online SGD p(true)" in table and "BLUR p(true)" not in table
    paths = write_introspection(report, tmp_path / "out")
    assert [p.name for p in paths] == ["introspection.json", "introspection.png"]
    # Without SGD nothing is left to plot: the JSON only.
    report["sgd"] = None
    assert [p.name for p in write_introspection(report, tmp_path / "alone")] == ["introspection.json"]
    # Normalising over the batch and the neurons, or the backward pass only, keeps the predictions informative
    # at batch 1: measured as usual.
    for change in ({"activation_norm_axes": "batch_neurons"}, {"activation_normalization": "backward"}):
        learner = build_learner({**learner_settings, **change})
        run = TrainedRun(config, learner, learner.init_meta(jax.random.PRNGKey(2)), 0, tmp_path)
        report = introspect_run(run, length=8, ways=4, episodes=2, sgd=False, asymmetry=False)
        assert report["learner"] is not None


def _introspected(values: list[float | None], mean_accuracy: float, **setting: object) -> dict:
    by_k = {"k": list(range(len(values))), "true_class_probability": values, "accuracy": values}
    report = {"dataset": "digits", "length": 6, "ways": 3, "episodes": 2, "seed": 22} | setting
    return report | {"learner": {"label": "VSML", "by_k": by_k, "mean_accuracy": mean_accuracy}, "sgd": None}


def test_combined_introspections_are_means_and_intervals_over_runs():
    from vsml.evaluation.introspect import combine_introspections

    combined = combine_introspections(
        [_introspected([0.1, 0.5, None], 0.4), _introspected([0.3, 0.7, None], 0.6)], ["a", "b"]
    )
    seeds = combined["seeds"]
    assert seeds["runs"] == ["a", "b"] and combined["learner"]["by_k"]["accuracy"] == [0.1, 0.5, None]
    np.testing.assert_allclose(seeds["by_k"]["true_class_probability"]["mean"][:2], [0.2, 0.6])
    half_width = 1.96 * np.std([0.1, 0.3], ddof=1) / np.sqrt(2)
    np.testing.assert_allclose(seeds["by_k"]["accuracy"]["interval_95"][:2], [half_width] * 2)
    assert seeds["by_k"]["accuracy"]["mean"][2] is None  # no step had that k
    assert seeds["mean_accuracy"]["mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different episodes"):
        combine_introspections([_introspected([0.1], 0.1), _introspected([0.1], 0.1, seed=3)], ["a", "b"])
    unmeasured = _introspected([0.1], 0.1) | {"learner": None}
    with pytest.raises(ValueError, match="of b was not measured"):
        combine_introspections([_introspected([0.1], 0.1), unmeasured], ["a", "b"])
