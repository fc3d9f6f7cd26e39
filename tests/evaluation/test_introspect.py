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
    gradient_asymmetry_by_layer,
    introspect_run,
    introspection_table,
    plot_probabilities,
    prediction_trace,
    recognition_by_k,
    update_jacobian,
    write_introspection,
)
from vsml.evaluation.meta_test import TrainedRun
from vsml.learners import build_learner
from vsml.learners.blur.learner import BLUR, BLURState, backprop_blur, backprop_genome, random_genome
from vsml.learners.sgd import online_sgd
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


# ----- the figure -----------------------------------------------------------------------------------------------


def _fake_report(num_classes: int = 6, length: int = 12, ways: int = 3) -> dict:
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.arange(length) % ways).tolist()

    def entry(label: str) -> dict:
        probabilities = rng.dirichlet(np.ones(num_classes), size=length)
        return {
            "label": label,
            "by_k": recognition_by_k(probabilities, np.array(labels)),
            "example": {"probabilities": probabilities.tolist(), "labels": labels},
        }

    return {
        "dataset": "fake",
        "length": length,
        "ways": ways,
        "episodes": 1,
        "seed": 22,
        "chance": 1.0 / num_classes,
        "learner": entry("VSML, meta-trained V_M (3 ES it.)"),
        "sgd": entry("online SGD (lr 0.1)"),
    }


def test_plot_probabilities_writes_a_non_trivial_png(tmp_path):
    from matplotlib.image import imread

    path = plot_probabilities(_fake_report(), tmp_path / "sub" / "intro.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    image = imread(path)
    assert image.shape[1] > 2 * image.shape[0] and image[..., :3].std() > 0.1  # three panels, not blank
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    no_sgd = {**_fake_report(), "sgd": None}
    assert plot_probabilities(no_sgd, tmp_path / "one.png").stat().st_size > 10_000


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
        and "VSML p(true)" in printed
        and "online SGD p(true)" in printed
    )
    assert "VSML, meta-trained V_M (1 ES it.)" in printed
    report = json.loads((out / "introspection.json").read_text())
    assert (
        report["dataset"] == "digits"
        and report["episodes"] == EPISODES
        and "gradient_asymmetry" not in report
    )
    assert (out / "introspection.png").stat().st_size > 20_000
    # Bad input is one clear line.
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it, with its usage line
        main([*argv, "--episodes", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "vsml introspect: error:" in err and "--episodes: must be >= 1" in err and "Traceback" not in err


# ----- BLUR: is the update a gradient? (BLUR §3.5, App. A) -------------------------------------------------------

TINY_NET = (3, 4, 2)  # inputs, hidden, classes


def _tiny_episode(steps: int, dtype: np.dtype) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(steps, TINY_NET[0])).astype(dtype))
    ys = jnp.asarray(np.eye(TINY_NET[-1])[rng.integers(0, TINY_NET[-1], steps)].astype(dtype))
    return xs, ys


def test_backprop_genome_update_jacobian_is_the_loss_hessian(key):
    """J = ∂Δw/∂w of SGD is −λ·∂²L/∂w² (here L = CE of one example; w = [W_0; b_0] of the tanh layer)."""
    blur = backprop_blur(TINY_NET[1:-1], "tanh", "ce")
    rate = -float(backprop_genome(2, -0.1).synapse_update)  # λ as stored (float32), not 0.1 exactly
    with jax.enable_x64(True):
        xs, ys = _tiny_episode(1, np.float64)
        # Synapses made on the host (eager jax.random would compile op by op), tied as backprop_blur ties them.
        rng = np.random.default_rng(7)
        weights = [
            rng.uniform(-1, 1, size=(n + 1, m)) for n, m in zip(TINY_NET[:-1], TINY_NET[1:], strict=True)
        ]
        state = BLURState(  # channel-first: [k, n+1, m] and [k, m, n]
            tuple(jnp.asarray(np.stack([w, w])) for w in weights),
            tuple(jnp.asarray(np.stack([w[:-1].T, w[:-1].T])) for w in weights),
        )
        genome = jax.tree.map(lambda g: jnp.asarray(g, jnp.float64), backprop_genome(2, -rate))
        # A block of J in a shuffled order of synapses: `indices` must pick rows and columns alike.
        chosen = np.random.default_rng(6).permutation(16)[:12]
        jacobian = update_jacobian(blur, genome, state, xs[0], ys[0], 0, jnp.asarray(chosen))
        last = state.forward[1][0]

        def loss(w: jax.Array) -> jax.Array:
            hidden = jnp.tanh(jnp.append(xs[0], 1.0) @ w.reshape(TINY_NET[0] + 1, TINY_NET[1]))
            logits = jnp.append(hidden, 1.0) @ last
            return -jnp.sum(ys[0] * jax.nn.log_softmax(logits))

        hessian = jax.jit(jax.hessian(loss))(state.forward[0][0].reshape(-1))
    expected = -rate * np.asarray(hessian)[np.ix_(chosen, chosen)]
    assert jacobian.shape == (12, 12) and np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(np.asarray(jacobian), expected, rtol=1e-10, atol=1e-14)


def test_update_jacobian_rows_are_updates_and_columns_are_synapses():
    """J[a, b] = ∂Δw_a/∂w_b, checked against jax.jacfwd on an untied network (no syncs), where J is asymmetric."""
    learner = BLUR(hidden_sizes=TINY_NET[1:-1])
    genome = random_genome(jax.random.PRNGKey(3), 2)
    xs, ys = _tiny_episode(1, np.float32)
    rng = np.random.default_rng(8)
    shapes = [((2, n + 1, m), (2, m, n)) for n, m in zip(TINY_NET[:-1], TINY_NET[1:], strict=True)]
    state = BLURState(
        tuple(jnp.asarray(rng.uniform(-1, 1, f).astype(np.float32)) for f, _ in shapes),
        tuple(jnp.asarray(rng.uniform(-1, 1, g).astype(np.float32)) for _, g in shapes),
    )
    chosen = np.random.default_rng(9).permutation(16)  # all synapses, shuffled

    def update(w: jax.Array) -> jax.Array:
        forward = state.forward[0].at[0].set(w.reshape(4, 4))
        _, new = learner.step(genome, state._replace(forward=(forward, state.forward[1])), xs[0], ys[0])
        return new.forward[0][0].reshape(-1) - w

    expected = jax.jit(jax.jacfwd(update))(state.forward[0][0].reshape(-1))
    jacobian = update_jacobian(learner, genome, state, xs[0], ys[0], 0, jnp.asarray(chosen))
    expected = np.asarray(expected)[np.ix_(chosen, chosen)]
    assert np.abs(expected - expected.T).max() > 1e-2 * np.abs(expected).max()  # not symmetric
    np.testing.assert_allclose(np.asarray(jacobian), expected, rtol=1e-5, atol=1e-7)


def test_backprop_genome_is_symmetric_and_a_random_genome_is_not(key):
    with jax.enable_x64(True):
        xs, ys = _tiny_episode(4, np.float64)
        # A random genome on the authors' default network, after 3 warm-up steps; plain SGD as the reference.
        learner = BLUR(hidden_sizes=TINY_NET[1:-1])
        layers = gradient_asymmetry_by_layer(learner, random_genome(jax.random.PRNGKey(3), 2), key, xs, ys)
    assert [result["layer"] for result in layers] == [0, 1]
    assert [result["synapses"] for result in layers] == [16, 10]
    for result in layers:
        assert result["measured_synapses"] == result["synapses"] and result["warmup_steps"] == 3
        assert result["relative_max_asymmetry"] > 1e-3 and result["antisymmetric_fraction"] > 1e-3
        reference = result["sgd_reference"]
        assert reference["max_abs_jacobian"] > 1e-3 and reference["relative_max_asymmetry"] < 1e-6


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
