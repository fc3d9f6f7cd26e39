"""Run folders written before the outer-loop redesign of issue 23 (tests/data/run_before_protocol_{es,cmaes,grad}:
the tiny configs of tests/meta/meta_regression_configs.py, 3 iterations) still resume, warm-start a new run
(`train.init_from`) and export as a pretrained LA. Each test works on a copy: the stored folders never change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from vsml.pretrained.export import export_pretrained
from vsml.pretrained.load import load_pretrained
from vsml.run.checkpoint import checkpoint_metadata, latest_checkpoint
from vsml.run.experiment import ExperimentConfig, experiment_from_dict
from vsml.run.run_dir import read_metrics
from vsml.run.trainer import MetaTrainer

pytest.importorskip("sklearn")

DATA = Path(__file__).resolve().parents[1] / "data"
OPTIMIZERS = ("es", "cmaes", "grad")
# As tests/meta/test_meta_regression.py: the suite compiles at -O1 and other CPUs may fuse differently.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def old_run(optimizer: str, tmp_path: Path) -> Path:
    """A copy of the stored pre-redesign run folder of `optimizer`."""
    source = DATA / f"run_before_protocol_{optimizer}"
    assert latest_checkpoint(source) is not None, f"{source} lost its checkpoint"
    return Path(shutil.copytree(source, tmp_path / f"old_{optimizer}"))


def recorded_config(run_dir: Path, **train) -> ExperimentConfig:
    """The experiment the run's checkpoint records, with `train` settings changed."""
    data = checkpoint_metadata(run_dir)["experiment"]
    data["train"] = {**data["train"], **train}
    return experiment_from_dict(data)


def stored_meta(run_dir: Path) -> list[np.ndarray]:
    """The checkpoint's meta-parameter arrays as the .npz holds them (`meta/<leaf index>`), loader aside."""
    with np.load(run_dir / "ckpt_00000003.npz", allow_pickle=False) as npz:
        count = sum(1 for key in npz.files if key.startswith("meta/"))
        return [npz[f"meta/{i}"] for i in range(count)]


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_old_run_resumes(optimizer, tmp_path):
    run_dir = old_run(optimizer, tmp_path)
    trainer = MetaTrainer(recorded_config(run_dir, iterations=5), run_dir, resume=True)
    assert trainer.iteration == 3
    for got, want in zip(leaves(trainer.meta), stored_meta(run_dir), strict=True):
        np.testing.assert_array_equal(got, want)
    trainer.run(progress=False)
    assert trainer.iteration == 5 and latest_checkpoint(run_dir).name == "ckpt_00000005.json"
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(leaf).all() for leaf in leaves(trainer.meta))
    if optimizer != "es":
        return
    # ES: the resumed run is the run that was never interrupted.
    whole = MetaTrainer(recorded_config(run_dir, iterations=5), tmp_path / "whole")
    whole.run(progress=False)
    for got, want in zip(leaves((trainer.meta, trainer.opt_state)), leaves((whole.meta, whole.opt_state)), strict=True):
        np.testing.assert_allclose(got, want, **TOLERANCE)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_old_run_warm_starts_a_new_one(optimizer, tmp_path):
    run_dir = old_run(optimizer, tmp_path)
    config = recorded_config(run_dir, init_from=str(run_dir))
    trainer = MetaTrainer(config, tmp_path / "new")
    assert trainer.iteration == 0
    for got, want in zip(leaves(trainer.meta), stored_meta(run_dir), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_an_old_run_exports_as_a_pretrained_la(optimizer, tmp_path):
    run_dir = old_run(optimizer, tmp_path)
    config = recorded_config(run_dir)
    dataset = config.eval.datasets[0]
    row = {"role": "meta-trained", "mean_accuracy": 0.1, "final_accuracy": 0.1, "block_accuracy": [0.1]}
    evaluation = {
        "iteration": 3,
        "episodes": config.eval.num_episodes,
        "length": config.eval.episode_length,
        "query_steps": config.task.query_steps,
        "datasets": {dataset: {"num_classes": 10, "chance": 0.1, "learners": {"meta-trained": row}}},
    }
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    out = tmp_path / "exported"
    npz_path, json_path = export_pretrained(run_dir, f"old_{optimizer}", out_dir=out)
    assert npz_path.parent == out and json_path.parent == out
    la = load_pretrained(f"old_{optimizer}", out)
    for got, want in zip(leaves(la.meta), stored_meta(run_dir), strict=True):
        np.testing.assert_array_equal(got, want)
    assert la.metadata["meta_training"]["runs"][0]["iterations"] == 3
    assert la.metadata["learner"] == config.learner
