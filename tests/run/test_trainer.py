"""The ES outer loop end to end on a tiny real task: logs, checkpoints, exact resume, bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners import LEARNERS
from vsml.learners.base import TaskSpec
from vsml.meta.es import OpenES
from vsml.meta.problem import population_problem
from vsml.meta.protocol import meta_step
from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import MetaTrainer, RunExistsError, read_metrics
from vsml.tasks import load_dataset, make_episode_source
from vsml.tasks.sampler import EpisodeSampler

pytest.importorskip("sklearn")

TINY = {
    "name": "tiny",
    "seed": 3,
    "learner": {"name": "vsml", "feed_label": True},
    "task": {"dataset": "digits", "episode_length": 6},
    "es": {"num_pairs": 2},
    "train": {"iterations": 4, "checkpoint_every": 2},
    "eval": {"datasets": ["digits"], "every": 2, "num_episodes": 2, "episode_length": 6},
}


def tiny_config(**changes):
    data = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return experiment_from_dict(data)


def open_es(**settings) -> OpenES:
    """OpenES with the tiny config's settings, changed as given."""
    return OpenES(replace(tiny_config().es, **settings))


def one_es_step(optimizer, learner, state, key, length, source):
    """One trainer step (`meta_step`) of `optimizer` on episodes of `length` steps from one source."""
    problem = population_problem(learner, "mean", (EpisodeSampler(length),), (source,))
    return meta_step(optimizer, state, key, problem)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def finished_run(tmp_path_factory, name, config):
    """(run folder, trainer) of `config` run to its end, in a fresh folder `name`."""
    run_dir = tmp_path_factory.mktemp(name)
    trainer = MetaTrainer(config, run_dir)
    trainer.run(progress=False)
    return run_dir, trainer


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return finished_run(tmp_path_factory, "full", tiny_config())


def test_run_writes_log_checkpoints_and_config(uninterrupted):
    run_dir, trainer = uninterrupted
    assert trainer.iteration == 4
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert "eval_accuracy_digits" in records[1] and "eval_accuracy_digits" not in records[0]
    assert sorted(p.name for p in run_dir.glob("ckpt_*.json")) == ["ckpt_00000002.json", "ckpt_00000004.json"]
    assert (run_dir / "config.yaml").exists()
    # ES moved V_M away from its initialisation.
    init = trainer.learner.init_meta(jax.random.PRNGKey(3))
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(leaves(init), leaves(trainer.meta), strict=True))


def test_interrupted_run_resumes_exactly(uninterrupted, tmp_path):
    _, full = uninterrupted
    first = MetaTrainer(tiny_config(), tmp_path)
    first.run(iterations=2, progress=False)  # "killed" after its checkpoint at 2
    first.log({"iteration": 3, "loss": 9.0})  # a record written after the checkpoint, before the crash
    resumed = MetaTrainer(tiny_config(), tmp_path, resume=True)
    assert resumed.iteration == 2
    resumed.run(progress=False)
    for a, b in zip(leaves(full.meta), leaves(resumed.meta), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(full.opt_state), leaves(resumed.opt_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert read_metrics(tmp_path)[2]["loss"] != 9.0


def test_existing_run_needs_resume(uninterrupted):
    run_dir, _ = uninterrupted
    with pytest.raises(RunExistsError, match="--resume"):
        MetaTrainer(tiny_config(), run_dir)


def test_resume_with_a_different_experiment_is_refused(uninterrupted):
    run_dir, _ = uninterrupted
    with pytest.raises(ValueError, match="es.num_pairs"):
        MetaTrainer(tiny_config(es__num_pairs=4), run_dir, resume=True)
    # Only the iteration budget and the speed-only settings may change.
    MetaTrainer(tiny_config(train__iterations=6), run_dir, resume=True)
    MetaTrainer(tiny_config(es__members_at_once=None), run_dir, resume=True)
    MetaTrainer(tiny_config(learner__dense_kernel="pallas"), run_dir, resume=True)


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="mnist"):
        MetaTrainer(tiny_config(task__dataset="imagenet"), tmp_path)


def test_missing_data_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data-dir"):
        MetaTrainer(
            tiny_config(task__dataset="mnist", task__data_dir=str(tmp_path / "nowhere")), tmp_path / "run"
        )


# ----- non-finite losses -------------------------------------------------------------------------------------


class ToyMeta(NamedTuple):
    w: jax.Array  # []


@dataclass(frozen=True)
class LogLearner:
    """logits = log(w)·x[:C]: NaN for every member whose perturbed w is negative."""

    def init_meta(self, key):
        return ToyMeta(jnp.float32(0.0))

    def init_state(self, meta, key, spec: TaskSpec):
        return jnp.zeros(())

    def step(self, meta, state, x, y):
        return jnp.log(meta.w) * jnp.reshape(x, (-1,))[: y.shape[0]], state


def test_nonfinite_losses_are_counted_and_do_not_poison_the_update():
    learner = LogLearner()
    source = make_episode_source(load_dataset("digits"), "train")
    optimizer = open_es(num_pairs=8)

    def es_step(meta):
        return one_es_step(optimizer, learner, optimizer.init(meta), jax.random.PRNGKey(0), 5, source)

    # Every pair has one negative member (w = ±σε), so every pair is non-finite: no update at all.
    new, info = es_step(ToyMeta(jnp.float32(0.0)))
    assert int(info["num_nonfinite"]) == 8
    assert float(new.meta.w) == 0.0
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(new.opt_state[0].mu))
    # Away from zero, all members are finite and the update is finite.
    new, info = es_step(ToyMeta(jnp.float32(1.0)))
    assert int(info["num_nonfinite"]) == 0 and np.isfinite(float(new.meta.w)) and float(new.meta.w) != 1.0


# ----- search relative to the starting V_M (es.relative_floor) ------------------------------------------------


class VectorMeta(NamedTuple):
    w: jax.Array  # [10]


@dataclass(frozen=True)
class ScaledLearner:
    """logits = w·x[:10] with w = base + scale·u: the learner ES sees when it searches over u."""

    base: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None

    def init_meta(self, key):
        return VectorMeta(jnp.zeros(10, jnp.float32))

    def init_state(self, meta, key, spec: TaskSpec):
        return jnp.zeros(())

    def step(self, meta, state, x, y):
        w = meta.w if self.base is None else jnp.asarray(self.base) + jnp.asarray(self.scale) * meta.w
        return w * jnp.reshape(x, (-1,))[: y.shape[0]], state


def test_relative_search_is_plain_es_over_the_rescaled_parameters():
    """noise_scale s: ES on θ equals plain ES on u in θ = θ_0 + s·u (same noise, same Adam moments)."""
    from vsml.meta.es import relative_noise_scale

    source = make_episode_source(load_dataset("digits"), "train")
    theta0 = VectorMeta(
        jnp.asarray(np.random.default_rng(0).normal(size=10) * np.logspace(-4, 2, 10), jnp.float32)
    )
    scale = relative_noise_scale(theta0, 1e-3)
    zero = VectorMeta(jnp.zeros(10, jnp.float32))
    wrapped = ScaledLearner(tuple(np.asarray(theta0.w).tolist()), tuple(np.asarray(scale.w).tolist()))

    relative, plain = open_es(num_pairs=8, relative_floor=1e-3), open_es(num_pairs=8)
    theta_state, u_state = relative.init(theta0), plain.init(zero)
    jax.tree.map(np.testing.assert_array_equal, theta_state.fixed, scale)  # the scale is fixed from θ_0
    for _ in range(3):
        key = jax.random.PRNGKey(3)
        theta_state, theta_info = one_es_step(relative, ScaledLearner(), theta_state, key, 5, source)
        u_state, u_info = one_es_step(plain, wrapped, u_state, key, 5, source)
        np.testing.assert_allclose(float(theta_info["loss"]), float(u_info["loss"]), rtol=1e-5)
    theta, u = theta_state.meta, u_state.meta
    np.testing.assert_allclose(
        np.asarray(theta.w), np.asarray(theta0.w + scale.w * u.w), rtol=1e-5, atol=1e-7
    )
    assert not np.allclose(np.asarray(theta.w), np.asarray(theta0.w))  # it did move
    # Each parameter moved in proportion to its own scale: the 1e-4 entries are not wiped out.
    moved = np.abs(np.asarray(theta.w - theta0.w)) / np.asarray(scale.w)
    assert moved.max() < 3 * 0.025 * 1.001  # ≤ 3 Adam steps of lr 0.025 in u (float32 rounding)


def test_relative_floor_is_fixed_at_the_start_and_survives_resume(tmp_path):
    data = {**json.loads(json.dumps(TINY))}
    data["es"] = {**data.get("es", {}), "relative_floor": 0.01}
    config = experiment_from_dict(data)
    trainer = MetaTrainer(config, tmp_path)
    start = jax.tree.map(np.asarray, trainer.state.fixed)
    trainer.run(iterations=2, progress=False)
    resumed = MetaTrainer(config, tmp_path, resume=True)
    assert resumed.iteration == 2
    jax.tree.map(np.testing.assert_array_equal, start, jax.tree.map(np.asarray, resumed.state.fixed))
    assert all(np.all(np.asarray(s) >= 0.01) for s in jax.tree.leaves(start))


def test_trainer_reports_nonfinite_pairs(tmp_path, monkeypatch):
    monkeypatch.setitem(LEARNERS, "log_toy", LogLearner)
    config = experiment_from_dict({**json.loads(json.dumps(TINY)), "learner": {"name": "log_toy"}})
    trainer = MetaTrainer(config, tmp_path)
    trainer.run(iterations=2, progress=False)
    assert trainer.total_nonfinite == 2 * config.es.num_pairs
    assert [r["num_nonfinite"] for r in read_metrics(tmp_path)] == [2, 2]
    assert float(trainer.meta.w) == 0.0


def test_projected_training_and_evaluation(tmp_path):
    """spec §3.3: a fixed random projection for the training slice; evaluation draws its own."""
    data = json.loads(json.dumps(TINY))
    data["transform"] = {"project": True}
    trainer = MetaTrainer(experiment_from_dict(data), tmp_path)
    trainer.run(iterations=2, progress=False)
    assert np.isfinite(read_metrics(tmp_path)[-1]["eval_accuracy_digits"])
    key = jax.random.PRNGKey(1)
    projected = trainer.samplers(0)[0].sample(trainer.train_sources[0], key, 1, trainer.transform_keys[0])
    plain = EpisodeSampler(6).sample(trainer.train_sources[0], key, 1, trainer.transform_keys[0])
    assert projected.xs.shape == plain.xs.shape == (1, 6, 8, 8, 1)
    np.testing.assert_array_equal(np.asarray(projected.ys), np.asarray(plain.ys))  # same examples, ...
    assert not np.allclose(np.asarray(projected.xs), np.asarray(plain.xs))  # ... projected inputs


OMNIGLOT_DIR = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "omniglot"


@pytest.mark.skipif(not OMNIGLOT_DIR.exists(), reason=f"Omniglot zips not found in {OMNIGLOT_DIR}")
def test_omniglot_few_shot_meta_training(tmp_path):
    """spec §6.5: 5-way 1-shot episodes of 6 steps, last-step (query) loss, backward pass and label fed."""
    data = json.loads(json.dumps(TINY))
    data["learner"] = {"name": "vsml", "feed_label": True, "backward_pass": True}
    data["task"] = {"dataset": "omniglot", "loss": "last", "episode_length": 6}
    data["eval"] = {"datasets": ["omniglot"], "every": 2, "num_episodes": 4, "episode_length": 6}
    trainer = MetaTrainer(experiment_from_dict(data), tmp_path)
    trainer.run(iterations=2, progress=False)
    record = read_metrics(tmp_path)[-1]
    assert np.isfinite(record["loss"]) and 0.0 <= record["eval_final_accuracy_omniglot"] <= 1.0
    episodes = trainer.samplers(0)[0].sample(
        trainer.train_sources[0], jax.random.PRNGKey(0), 2, trainer.transform_keys[0]
    )
    assert episodes.xs.shape == (2, 6, 28, 28, 1) and episodes.ys.shape == (2, 6, 5)


def test_heterogeneous_population_slices(tmp_path):
    """Slices with different datasets, transforms and shapes in one run (spec §3.3, `mpi_split`)."""
    data = json.loads(json.dumps(TINY))
    data["es"] = {"num_pairs": 4}
    data["population"] = [
        {"dataset": "digits", "transform": {"project": True}},
        {"dataset": "digits", "transform": {"classes": [0, 1, 2], "resize": [6, 6]}},
        {"dataset": "random", "share": 2},
    ]
    trainer = MetaTrainer(experiment_from_dict(data), tmp_path)
    assert trainer.optimizer.slice_counts(trainer.slice_shares) == (1, 1, 2)
    trainer.run(iterations=2, progress=False)
    assert all(np.isfinite(r["loss"]) for r in read_metrics(tmp_path))
    shapes = [
        sampler.sample(source, jax.random.PRNGKey(0), 1, key).xs.shape[2:] + (sampler.num_classes(source),)
        for sampler, source, key in zip(
            trainer.samplers(0), trainer.train_sources, trainer.transform_keys, strict=True
        )
    ]
    assert shapes == [(8, 8, 1, 10), (6, 6, 1, 3), (28, 28, 1, 10)]
    # The slices' ES losses are really combined: the same run without the random slice ends elsewhere.
    data["population"] = data["population"][:2]
    data["es"] = {"num_pairs": 2}
    other = MetaTrainer(experiment_from_dict(data), tmp_path / "other")
    other.run(iterations=2, progress=False)
    assert not np.allclose(
        np.asarray(jax.tree.leaves(other.meta)[0]), np.asarray(jax.tree.leaves(trainer.meta)[0])
    )


def test_population_smaller_than_its_slices_is_a_clear_error(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["population"] = [{"dataset": "digits"}, {"dataset": "digits"}, {"dataset": "random"}]
    with pytest.raises(ValueError, match="es.num_pairs=2"):
        MetaTrainer(experiment_from_dict(data), tmp_path)


BLUR_TINY = {
    "name": "blur_tiny",
    "seed": 5,
    "learner": {
        "name": "blur",
        "hidden_sizes": [8],
        "scale_by_channels": True,
        "last_layer_activation": "identity",
    },
    "task": {
        "dataset": "digits",
        "episode_length": 3,
        "batch_size": 4,
        "query_steps": 2,
        "loss": "query_error",
    },
    "meta_optimizer": "cmaes",
    "cmaes": {"population_size": 6, "sigma": 0.2, "num_episodes": 2},
    "train": {"iterations": 4, "checkpoint_every": 2},
    "eval": {"datasets": ["digits"], "every": 2, "num_episodes": 3, "episode_length": 3},
}


def test_cmaes_meta_training_logs_query_accuracy_and_resumes_exactly(tmp_path):
    """BLUR's outer loop (blur.md §6): CMA-ES through the same trainer, checkpoints and exact resume."""
    full = MetaTrainer(experiment_from_dict(BLUR_TINY), tmp_path / "full")
    full.run(progress=False)
    records = read_metrics(tmp_path / "full")
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    assert all(0.0 <= r["loss"] <= 1.0 and r["best_loss"] <= r["loss"] for r in records)
    assert 0.0 <= records[-1]["eval_query_accuracy_digits"] <= 1.0
    assert int(full.opt_state.generation) == 4

    part = MetaTrainer(experiment_from_dict(BLUR_TINY), tmp_path / "part")
    part.run(iterations=2, progress=False)
    resumed = MetaTrainer(experiment_from_dict(BLUR_TINY), tmp_path / "part", resume=True)
    assert resumed.iteration == 2
    resumed.run(progress=False)
    for a, b in zip(
        leaves((full.meta, full.opt_state)), leaves((resumed.meta, resumed.opt_state)), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_gradient_curriculum_grows_the_unroll(tmp_path):
    data = json.loads(json.dumps(BLUR_TINY))
    data["meta_optimizer"] = "grad"
    data["task"]["loss"] = "query_ce"
    data["grad"] = {"num_episodes": 2, "curriculum_increment": 2, "curriculum_every": 2, "clip_norm": 10.0}
    trainer = MetaTrainer(experiment_from_dict(data), tmp_path)
    trainer.run(progress=False)
    assert [r["episode_length"] for r in read_metrics(tmp_path)] == [3, 3, 5, 5]
    assert all(np.isfinite(r["loss"]) for r in read_metrics(tmp_path))


def test_warm_start_takes_the_meta_parameters_of_another_run(uninterrupted, tmp_path):
    source_dir, source = uninterrupted
    data = json.loads(json.dumps(TINY))
    data["train"]["init_from"] = str(source_dir)
    data["train"]["iterations"] = 1
    trainer = MetaTrainer(experiment_from_dict(data), tmp_path)
    for a, b in zip(leaves(trainer.meta), leaves(source.meta), strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.run(progress=False)
    assert read_metrics(tmp_path)[-1]["iteration"] == 1
    data["train"]["init_from"] = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train.init_from"):
        MetaTrainer(experiment_from_dict(data), tmp_path / "other")


def test_resume_without_config_yaml_checks_the_checkpoints_record(uninterrupted, tmp_path):
    """config.yaml gone: the experiment recorded in the newest checkpoint is what the resumed run must match."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    (run_dir / "config.yaml").unlink()
    with pytest.raises(ValueError, match="es.num_pairs.*recorded in its checkpoints"):
        MetaTrainer(tiny_config(es__num_pairs=4), run_dir, resume=True)
    MetaTrainer(tiny_config(train__iterations=6), run_dir, resume=True)  # the same experiment resumes


def test_a_run_interrupted_before_its_first_checkpoint_starts_a_clean_log(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1, "loss": 9.0}\n{"iteration": 2, "loss": 9.0}\n')
    trainer = MetaTrainer(tiny_config(train__iterations=2), tmp_path)  # no checkpoint: a fresh start
    trainer.run(progress=False)
    records = read_metrics(tmp_path)
    assert [r["iteration"] for r in records] == [1, 2]
    assert all(r["loss"] != 9.0 for r in records)


def test_keep_checkpoints_prunes_the_oldest_and_may_change_on_resume(tmp_path):
    config = tiny_config(train__checkpoint_every=1, train__keep_checkpoints=2)
    MetaTrainer(config, tmp_path).run(progress=False)
    assert sorted(p.name for p in tmp_path.glob("ckpt_*")) == [
        "ckpt_00000003.json",
        "ckpt_00000003.npz",
        "ckpt_00000004.json",
        "ckpt_00000004.npz",
    ]
    resumed = MetaTrainer(tiny_config(train__iterations=5, train__checkpoint_every=1), tmp_path, resume=True)
    assert resumed.iteration == 4
    with pytest.raises(ValueError, match="train.keep_checkpoints must be >= 1"):
        tiny_config(train__keep_checkpoints=0)


def test_corrupt_newest_checkpoint_names_the_one_before(tmp_path):
    MetaTrainer(tiny_config(), tmp_path).run(progress=False)
    (tmp_path / "ckpt_00000004.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="iteration 2.*move ckpt_00000004.json and ckpt_00000004.npz"):
        MetaTrainer(tiny_config(), tmp_path, resume=True)
    (tmp_path / "ckpt_00000002.npz").write_bytes(b"not a checkpoint either")
    with pytest.raises(ValueError) as error:  # no way round: no hint
        MetaTrainer(tiny_config(), tmp_path, resume=True)
    assert "move" not in str(error.value)


def test_gradient_meta_training_refuses_a_loss_without_gradient():
    data = json.loads(json.dumps(TINY))
    data["meta_optimizer"] = "grad"
    data["task"].update(loss="query_error", query_steps=2)
    with pytest.raises(ValueError, match="query_error.*has no gradient"):
        experiment_from_dict(data)


@pytest.mark.parametrize(
    ("name", "optimizer"),
    [("metarnn", "es"), ("hebbian", "grad"), ("fwp", "grad"), ("fwmemory", "es"), ("sgd", "grad")],
)
def test_baselines_meta_train_with_both_trainers_and_resume(name, optimizer, tmp_path):
    # The fixed-size baselines (spec §5) run through the same trainers; digits padded like pad.yaml does MNIST.
    data = json.loads(json.dumps(TINY))
    data["learner"] = {"name": name, "input_shape": [10, 10, 1], "num_classes": 12}
    if (
        name == "sgd"
    ):  # online SGD's only meta-parameter is its learning rate (spec §5: tunable by the trainer)
        data["learner"] = {"name": name, "learning_rate": 0.05}
    data["transform"] = {"pad_input_to": [10, 10, 1], "pad_classes_to": 12}
    data["meta_optimizer"] = optimizer
    data["grad"] = {"num_episodes": 2}
    data["train"] = {"iterations": 2, "checkpoint_every": 1}
    full = MetaTrainer(experiment_from_dict(data), tmp_path / "full")
    initial = leaves(full.meta)
    full.run(progress=False)
    records = read_metrics(tmp_path / "full")
    assert [r["iteration"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(full.meta), initial, strict=True))
    data["train"]["iterations"] = 1
    MetaTrainer(experiment_from_dict(data), tmp_path / "cut").run(progress=False)
    data["train"]["iterations"] = 2
    resumed = MetaTrainer(experiment_from_dict(data), tmp_path / "cut", resume=True)
    resumed.run(progress=False)
    for a, b in zip(leaves(resumed.meta), leaves(full.meta), strict=True):
        np.testing.assert_array_equal(a, b)


def test_members_run_a_few_at_a_time_give_the_same_es_step():
    """es.members_at_once only changes how a device batches the population (lax.map), not the result."""
    learner = LEARNERS["vsml"]()
    source = make_episode_source(load_dataset("digits"), "train")
    meta = learner.init_meta(jax.random.PRNGKey(0))

    def es_step(at_once):
        optimizer = open_es(num_pairs=3, members_at_once=at_once)
        state, info = one_es_step(optimizer, learner, optimizer.init(meta), jax.random.PRNGKey(1), 4, source)
        return state.meta, info["loss"]

    together, loss = es_step(None)
    for at_once in (1, 4):  # 6 members: one at a time, and 4 + a remainder of 2
        batched, batched_loss = es_step(at_once)
        np.testing.assert_allclose(float(batched_loss), float(loss), rtol=1e-6)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(together), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    for bad in (0, "fast", True):
        with pytest.raises(ValueError, match="members_at_once"):
            tiny_config(es__members_at_once=bad)
    assert tiny_config().es.members_at_once == "auto"
    assert tiny_config(es__members_at_once=None).es.members_at_once is None


def curriculum_config(**train):
    """The tiny task after two easier stages: digits 0-1 for 2 iterations, then 0-4 in 4-step episodes for 2."""
    data = json.loads(json.dumps(TINY))
    data["curriculum"] = [
        {"iterations": 2, "transform": {"classes": [0, 1]}},
        {
            "iterations": 2,
            "loss_below": 0.01,
            "task": {"episode_length": 4},
            "transform": {"classes": [0, 1, 2, 3, 4]},
        },
    ]
    data["train"] = {"iterations": 6, "checkpoint_every": 2, **train}
    return experiment_from_dict(data)


@pytest.fixture(scope="module")
def curriculum_run(tmp_path_factory):
    return finished_run(tmp_path_factory, "curriculum", curriculum_config())


def test_a_curriculum_runs_its_stages_then_the_experiments_task(curriculum_run):
    run_dir, trainer = curriculum_run
    records = read_metrics(run_dir)
    assert [r["stage"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert trainer.stage == 2 and trainer.task_config is trainer.config
    # Evaluation is always on the experiment's own task (10 classes, 6 steps).
    assert all("eval_accuracy_digits" in records[i] for i in (1, 3, 5))
    sampler, source = trainer.samplers(trainer.iteration)[0], trainer.train_sources[0]
    assert (sampler.length, sampler.num_classes(source)) == (6, 10)


def test_each_stage_meta_trains_on_its_own_task(tmp_path):
    trainer = MetaTrainer(curriculum_config(), tmp_path)
    seen = []
    for _ in range(4):
        sampler, source = trainer.samplers(trainer.iteration)[0], trainer.train_sources[0]
        seen.append((trainer.stage, sampler.length, sampler.num_classes(source)))
        trainer.step()
    assert seen == [(0, 6, 2), (0, 6, 2), (1, 4, 5), (1, 4, 5)]


def test_a_run_interrupted_inside_a_stage_resumes_exactly(curriculum_run, tmp_path):
    _, full = curriculum_run
    first = MetaTrainer(curriculum_config(checkpoint_every=3), tmp_path)
    first.run(iterations=3, progress=False)  # stopped after the first of stage 1's two iterations
    assert (first.stage, len(first.stage_losses)) == (1, 1)
    resumed = MetaTrainer(curriculum_config(checkpoint_every=3), tmp_path, resume=True)
    assert (resumed.iteration, resumed.stage, resumed.stage_losses) == (3, 1, first.stage_losses)
    resumed.run(progress=False)
    assert [r["stage"] for r in read_metrics(tmp_path)] == [0, 0, 1, 1, 2, 2]
    for a, b in zip(leaves(full.meta), leaves(resumed.meta), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_stage_ends_after_its_iterations_or_once_its_loss_is_low():
    from vsml.run.experiment import LOSS_WINDOW, stage_finished

    chance = float(np.log(2))
    low, high = [0.5 * chance] * LOSS_WINDOW, [chance] * LOSS_WINDOW
    assert stage_finished(low, 2, None, 0.9) and not stage_finished(high, 2, None, 0.9)
    assert not stage_finished(low[:-1], 2, None, 0.9)  # a full window first
    assert stage_finished([chance] * 3, 2, 3, 0.9) and not stage_finished([chance] * 2, 2, 3, None)
    # Only the last window counts: a stage that has just learnt its task ends.
    assert stage_finished(high + low, 2, None, 0.9)


@pytest.mark.parametrize(
    "stage, message",
    [
        ({"transform": {"classes": [0, 1]}}, "needs iterations or loss_below"),
        ({"iterations": 0}, "iterations must be >= 1"),
        (
            {"iterations": 2, "task": {"episode_lenght": 4}},
            "curriculum stage 0: unknown config key 'task.episode_lenght'",
        ),
        ({"iterations": 2, "es": {"sigma": 0.1}}, "unknown config key 'curriculum\\[0\\].es'"),
    ],
)
def test_a_bad_curriculum_stage_is_a_clear_error(stage, message):
    data = json.loads(json.dumps(TINY))
    data["curriculum"] = [stage]
    with pytest.raises(ValueError, match=message):
        experiment_from_dict(data)


def test_a_stage_transform_reaches_every_population_slice_and_a_stage_population_replaces_it():
    from vsml.run.experiment import stage_experiment

    data = json.loads(json.dumps(TINY))
    data["population"] = [{"dataset": "digits", "transform": {"project": True}}, {"dataset": "random"}]
    data["curriculum"] = [
        {"iterations": 1, "transform": {"classes": [0, 1]}},
        {"iterations": 1, "population": [{"dataset": "sum"}], "transform": {"resize": [4, 4]}},
    ]
    config = experiment_from_dict(data)
    first, second = stage_experiment(config, 0), stage_experiment(config, 1)
    assert [(p.dataset, p.transform.project, p.transform.classes) for p in first.population] == [
        ("digits", True, (0, 1)),
        ("random", False, (0, 1)),
    ]
    assert first.transform.classes == (0, 1) and first.curriculum == ()
    assert [(p.dataset, p.transform.resize) for p in second.population] == [("sum", (4, 4))]
    assert stage_experiment(config, 2) is config
