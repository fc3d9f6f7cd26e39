"""Learning-algorithm cloning: the teacher is backprop, the constructed V_M matches the teacher one step at a
time and run free, cloning by gradients lowers the loss, and the command writes its report."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml.cli.main import main
from vsml.config import config_from_dict, load_config, shipped_configs_dir
from vsml.evaluation.clone import (
    clone_online,
    encode_network,
    evaluate_clone,
    init_network,
    read_network,
    teacher_forward,
    teacher_network_step,
)
from vsml.learners.vsml import VSML, codec
from vsml.meta import cloning
from vsml.meta.cloning import CloneConfig, CloneTeacher, CloneTrainConfig, TupleDistribution
from vsml.run.checkpoint import latest_checkpoint, load_checkpoint

CLONE_CONFIGS = sorted((shipped_configs_dir() / "cloning").glob("*.yaml"))


def test_teacher_is_backprop_of_the_mean_aggregated_network(key):
    """Reference oracle: the teacher's literal update equals −α·(layer factor)·jax.grad, the factor being the
    mean over inputs (A) and, below the top, the mean over outputs where the chain rule sums (A_top / B_top)."""
    sizes = (6, 5, 3)
    weights, biases = init_network(key, sizes, 1.0)
    biases = [b + 0.1 * jax.random.normal(jax.random.fold_in(key, i), b.shape) for i, b in enumerate(biases)]
    x = jax.random.normal(jax.random.fold_in(key, 9), (6,))
    y = jax.nn.one_hot(1, 3)
    alpha = 0.3

    def loss(ws, bs):
        return -jnp.sum(y * jax.nn.log_softmax(teacher_forward(ws, bs, x)[-1]))

    gw, gb = jax.grad(loss, argnums=(0, 1))(weights, biases)
    _, new_w, new_b = teacher_network_step(weights, biases, x, y, alpha)
    top_factor = sizes[1]  # z_top = mean over its A = 5 inputs
    low_factor = sizes[0] * sizes[1] / sizes[2]  # A_low · (A_top / B_top)
    np.testing.assert_allclose(new_w[1] - weights[1], -alpha * top_factor * gw[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new_b[1] - biases[1], -alpha * gb[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new_w[0] - weights[0], -alpha * low_factor * gw[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        new_b[0] - biases[0], -alpha * gb[0] * sizes[1] / sizes[2], rtol=1e-4, atol=1e-7
    )


def test_constructed_vm_matches_the_teacher_one_step_at_a_time():
    """On held-out per-synapse tuples, the constructed V_M's messages and state changes match the teacher's.
    Stated tolerances (relative mean squared errors, `cloning_losses`): forward ≤ 1e-8 (measured 2e-10),
    backward ≤ 1e-8 (measured 1e-10; before the pending cells it was 5e-5, the reverse tick reading the
    weight after its own update), state and update ≤ 1e-7 (measured 2e-14 and 8e-9, float32 rounding of the
    per-step change), hold = 0 (the forward tick never writes the forward copies)."""
    student = codec.VSMLCloneStudent(codec.clone_learner())
    params = codec.constructed_backprop(student.learner, CloneTeacher())
    histories = cloning.sample_histories(jax.random.PRNGKey(123), TupleDistribution(length=6), 2048)
    parts = {k: float(v) for k, v in cloning.cloning_losses(student, params, histories, 0.3).items()}
    assert parts["forward"] <= 1e-8 and parts["state"] <= 1e-7 and parts["update"] <= 1e-7, parts
    assert parts["hold"] == 0.0 and parts["backward"] <= 1e-8, parts
    # and a random V_M is far from it: the bound is not vacuous
    random = codec.random_clone_params(student.learner, jax.random.PRNGKey(0), CloneTeacher())
    assert float(sum(cloning.cloning_losses(student, random, histories, 0.3).values())) > 1.0


def test_cloning_by_gradients_lowers_the_held_out_loss():
    config = CloneConfig(
        init="random",
        tuples=TupleDistribution(length=3),
        train=CloneTrainConfig(
            steps=40, batch_size=256, learning_rate=3e-3, magnitude_floor=1.0, heldout=512
        ),
    )
    student = codec.VSMLCloneStudent(codec.clone_learner(config.num_micro_ticks))
    _, history = cloning.train_clone(config, student, progress=False)
    before, after = sum(history["heldout_before"].values()), sum(history["heldout_after"].values())
    assert np.isfinite(after) and after < 0.5 * before, (before, after)
    assert history["train"][-1]["loss"] < history["train"][0]["loss"]


def test_a_curriculum_over_history_length_trains_each_length_in_turn():
    train = CloneTrainConfig(steps=6, batch_size=64, learning_rate=3e-3, heldout=64, log_every=1,
                             history_lengths=(1, 3))  # fmt: skip
    assert [train.history_length(i, 8) for i in range(6)] == [1, 1, 1, 3, 3, 3]
    assert CloneTrainConfig().history_length(5, 8) == 8  # no curriculum: the tuples' length
    config = CloneConfig(init="random", tuples=TupleDistribution(length=2), train=train)
    _, history = cloning.train_clone(config, codec.VSMLCloneStudent(codec.clone_learner()), progress=False)
    assert [record["length"] for record in history["train"]] == [1, 1, 1, 3, 3, 3]
    assert all(np.isfinite(record["loss"]) for record in history["train"])
    for lengths in ((0, 2), (1,) * 7):
        with pytest.raises(ValueError, match="train.history_lengths"):
            CloneTrainConfig(steps=6, history_lengths=lengths)


@pytest.mark.parametrize(
    ("hidden", "min_same", "max_deviation"), [((), 0.99, 1e-3), ((8,), 0.99, 1e-3)], ids=["shallow", "deep"]
)
def test_the_constructed_clone_run_free_trains_like_the_teacher(hidden, min_same, max_deviation):
    """Forward-only VSML with the constructed V_M against the literal teacher from the same weights: the same
    predictions nearly everywhere, and it learns (digits, 800 steps). Both nets end with the teacher's
    weights up to float error (measured 3e-5 and 5e-5)."""
    params = codec.constructed_backprop(codec.clone_learner(), CloneTeacher())
    result = evaluate_clone(
        params, "digits", hidden, steps=800, learning_rate=0.3, test_examples=400, tail=200
    )
    assert result["same_online_prediction"] >= min_same, result["same_online_prediction"]
    assert max(result["final_weight_deviation"]) < max_deviation, result["final_weight_deviation"]
    assert result["clone"]["test_accuracy"] > 0.4  # chance 0.1
    assert abs(result["clone"]["test_accuracy"] - result["teacher"]["test_accuracy"]) < 0.05


def test_codec_round_trip_and_clone_state_after_free_running(key):
    vsml = codec.clone_learner(hidden_sizes=(4,))
    params = codec.constructed_backprop(vsml, CloneTeacher())
    weights, biases = init_network(key, (5, 4, 3), 1.0)
    biases = [b + 0.5 for b in biases]
    state = encode_network(vsml, params.codec, weights, biases)
    read_w, read_b = read_network(params.codec, state)
    for a, b in zip(read_w + read_b, weights + biases, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    xs = jax.random.normal(key, (20, 5))
    ys = jax.nn.one_hot(jnp.arange(20) % 3, 3)
    logits, final = clone_online(vsml, params.meta, state, xs, ys)
    assert logits.shape == (20, 3) and jax.tree.structure(final) == jax.tree.structure(state)


def test_predict_is_the_forward_tick_without_learning(key):
    vsml = VSML(hidden_sizes=(3,))
    meta = vsml.init_meta(key)
    from vsml.learners.base import TaskSpec

    state = vsml.init_state(meta, key, TaskSpec((4,), 2))
    x, y = jnp.arange(4.0) / 4, jnp.array([0.0, 1.0])
    logits, new_state = vsml.step(meta, state, x, y)
    np.testing.assert_allclose(vsml.predict(meta, state, x), logits, rtol=1e-6)
    assert not np.allclose(new_state.c[0], state.c[0])  # step learns, predict leaves the state to the caller
    with pytest.raises(ValueError, match="VSML.predict got x of shape"):
        vsml.predict(meta, state, jnp.zeros(5))


def test_wrong_vsml_form_is_a_clear_error():
    with pytest.raises(ValueError, match="backward_pass=False"):
        codec.constructed_backprop(VSML(), CloneTeacher())
    with pytest.raises(ValueError, match="config key init"):
        CloneConfig(init="cloned")
    with pytest.raises(ValueError, match="teacher.learning_rate"):
        CloneTeacher(learning_rate=0.0)


@pytest.mark.parametrize("path", CLONE_CONFIGS, ids=lambda p: p.name)
def test_cloning_configs_are_valid(path):
    config = load_config(CloneConfig, path)
    codec.check_clone_learner(codec.clone_learner(config.num_micro_ticks))


def test_clone_command_writes_checkpoint_and_report(tmp_path, capsys):
    out = tmp_path / "clone"
    # One CPU device, as the reproduce command's cloning test: the XLA flags are part of the compilation cache's
    # key, so the two then share their compiled programs.
    args = [
        "--cpu-devices", "1", "clone", str(CLONE_CONFIGS[0]), "--out", str(out), "--quiet",
        "--set", "train.steps=2", "--set", "train.heldout=64", "--set", "train.batch_size=32",
        "--set", "tuples.length=2", "--set", "eval.datasets=[digits]", "--set", "eval.architectures=[[]]",
        "--set", "eval.steps=50", "--set", "eval.test_examples=50", "--set", "eval.tail=20",
    ]  # fmt: skip
    assert main(args) == 0
    assert "clone test acc" in capsys.readouterr().out
    summary = json.loads((out / "clone.json").read_text())
    assert summary["results"][0]["architecture"] == "64-10"
    assert (out / "clone.md").exists() and (out / "curves_digits_shallow.png").stat().st_size > 10_000
    # the checkpoint starts a VSML meta-training run (train.init_from) of the same form
    vsml = codec.clone_learner()
    _, trees, _ = load_checkpoint(out, {"meta": vsml.init_meta(jax.random.PRNGKey(0))}, partial=True)
    assert len(trees["meta"].sets) == 2
    # a second clone into the same folder is refused; --eval-only re-evaluates it
    assert main(args) == 2
    assert "already holds a cloning checkpoint" in capsys.readouterr().err
    assert main([*args, "--eval-only"]) == 0
    assert main(["clone", str(CLONE_CONFIGS[0]), "--out", str(tmp_path / "none"), "--eval-only"]) == 2
    assert "holds no cloning checkpoint" in capsys.readouterr().err
    # A dataset the evaluation cannot find fails before cloning, not after it.
    missing = [*args[:5], str(tmp_path / "missing_data"), *args[6:], "--set", "eval.datasets=[mnist]"]
    missing += ["--data-dir", str(tmp_path / "empty")]
    (tmp_path / "empty").mkdir()
    assert main(missing) == 2
    assert "mnist" in capsys.readouterr().err and latest_checkpoint(tmp_path / "missing_data") is None


def test_steps_relative_to_each_parameter_or_to_its_leaf():
    params = {"small": jnp.array([1e-3, 0.0]), "large": jnp.array([1000.0, 0.0])}
    ones = jax.tree.map(jnp.ones_like, params)
    plain, _ = cloning.scale_by_magnitude(1.0).update(ones, optax.EmptyState(), params)
    np.testing.assert_allclose(plain["small"], [1.001, 1.0])  # the floor swamps a small leaf's own size
    np.testing.assert_allclose(plain["large"], [1001.0, 1.0])
    leaf, _ = cloning.scale_by_magnitude(0.5, per_leaf=True).update(ones, optax.EmptyState(), params)
    np.testing.assert_allclose(leaf["small"], [1.5e-3, 0.5e-3])  # the floor: half the leaf's largest entry
    np.testing.assert_allclose(leaf["large"], [1500.0, 500.0])
    assert CloneTrainConfig(floor_per_leaf=True).floor_per_leaf


def test_a_fixed_codec_is_not_trained_while_v_m_is():
    config = CloneConfig(
        init="random",
        tuples=TupleDistribution(length=2),
        train=CloneTrainConfig(steps=3, batch_size=64, learning_rate=3e-3, heldout=64, learn_codec=False),
    )
    student = codec.VSMLCloneStudent(codec.clone_learner())
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)  # train_clone's init key
    start = codec.random_clone_params(student.learner, key, CloneTeacher())
    params, _ = cloning.train_clone(config, student, progress=False)
    jax.tree.map(np.testing.assert_array_equal, params.codec, start.codec)
    assert not np.array_equal(params.meta.sets[0].lstm_W, start.meta.sets[0].lstm_W)
    with pytest.raises(ValueError, match="codec_mask"):
        cloning.make_clone_optimizer(config.train)


@pytest.mark.parametrize("kind", ["one_cell", "distributed"])
def test_a_random_codec_reads_back_what_it_wrote(kind):
    learner = codec.clone_learner()
    params = codec.random_clone_params(learner, jax.random.PRNGKey(0), CloneTeacher(), kind)
    values = jnp.array([[250.0, -3.0], [-0.5, 40.0]])  # (w, b) of two synapses
    cells = values @ params.codec.encoder
    np.testing.assert_allclose(cells @ params.codec.readout, values, rtol=1e-4)
    shared = np.count_nonzero(np.asarray(params.codec.encoder[0]))
    assert shared == (1 if kind == "one_cell" else learner.state_size)  # distributed: every cell holds a share
    with pytest.raises(ValueError, match="codec must be one of"):
        CloneConfig(init="random", codec="sparse")


def test_relative_parts_divide_each_part_by_what_a_zero_predictor_scores():
    student = codec.VSMLCloneStudent(codec.clone_learner())
    histories = cloning.sample_histories(jax.random.PRNGKey(5), TupleDistribution(length=3), 256)
    levels = {k: float(v) for k, v in cloning.zero_predictor_losses(student, histories, 0.3).items()}
    teacher = cloning.teacher_trace(histories, 0.3, student.msg_size)
    w, delta, bwd = (np.asarray(a) for a in (teacher.w, histories.delta, teacher.bwd))
    scale = (1 + np.abs(w)) * (np.abs(delta) + 0.1)  # the backward message's, by hand
    assert levels["backward"] == pytest.approx(float(np.mean((bwd / scale[..., None]) ** 2)), rel=1e-5)
    assert levels["hold"] == 0.0 and all(levels[name] > 0 for name in cloning.RELATIVE_PARTS)
    params = codec.random_clone_params(student.learner, jax.random.PRNGKey(0), CloneTeacher())
    plain, parts = cloning.cloning_loss(student, params, histories, 0.3)
    relative, same_parts = cloning.cloning_loss(student, params, histories, 0.3, relative_parts=True)
    assert float(plain) == pytest.approx(sum(float(v) for v in parts.values()), rel=1e-6)
    expected = sum(float(v) / levels[k] if k != "hold" else float(v) for k, v in same_parts.items())
    assert float(relative) == pytest.approx(expected, rel=1e-5)
    # the constructed V_M (the teacher, up to rounding) scores far below every zero-predictor level
    constructed = codec.constructed_backprop(student.learner, CloneTeacher())
    _, constructed_parts = cloning.cloning_loss(student, constructed, histories, 0.3)
    assert all(float(constructed_parts[name]) < 1e-6 * levels[name] for name in cloning.RELATIVE_PARTS)
    # a batch whose δ are all 0 has no backward or update target: the loss stays finite
    still = histories._replace(delta=jnp.zeros_like(histories.delta))
    assert np.isfinite(float(cloning.cloning_loss(student, params, still, 0.3, relative_parts=True)[0]))


def test_a_config_with_relative_parts_trains_on_the_relative_loss():
    config = config_from_dict(CloneConfig, {"init": "random", "tuples": {"length": 2},
                                            "train": {"relative_parts": True, "batch_size": 64}})  # fmt: skip
    assert config.train.relative_parts
    student = codec.VSMLCloneStudent(codec.clone_learner())
    params = codec.random_clone_params(student.learner, jax.random.PRNGKey(0), CloneTeacher())
    optimizer = cloning.make_clone_optimizer(config.train)
    key = jax.random.PRNGKey(4)
    _, _, loss, _ = cloning.clone_step(student, config, optimizer, params, optimizer.init(params), key)
    histories = cloning.sample_histories(key, config.tuples, config.train.batch_size)  # clone_step's batch
    lr = config.teacher.learning_rate
    assert float(loss) == pytest.approx(float(cloning.cloning_loss(student, params, histories, lr, True)[0]), rel=1e-5)
    assert float(loss) != pytest.approx(float(cloning.cloning_loss(student, params, histories, lr)[0]), rel=1e-2)
