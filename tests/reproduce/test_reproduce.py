"""Slow reproduction runs (`make reproduce`; skipped by `make test`)."""

from __future__ import annotations

import pytest

from vsml.config import shipped_configs_dir
from vsml.evaluation.meta_test import load_trained_run, meta_test
from vsml.run.experiment import load_experiment
from vsml.run.trainer import MetaTrainer

CONFIGS = shipped_configs_dir()


@pytest.mark.slow
def test_demo_meta_training_beats_untrained_and_chance(tmp_path):
    """The `make demo` run: VSML meta-trained by ES on digits learns online on held-out digits.

    Measured 2026-11-23 on 2 CPU cores: the loss left the ln 10 plateau near iteration 260; after 450
    iterations the held-out mean online accuracy was 0.635 (untrained 0.099, chance 0.1).
    """
    pytest.importorskip("sklearn")
    trainer = MetaTrainer(load_experiment(CONFIGS / "demo_digits.yaml"), tmp_path)
    trainer.run(progress=False)
    report = meta_test(load_trained_run(tmp_path), baselines=False)
    learners = report["datasets"]["digits"]["learners"]
    trained = next(v for k, v in learners.items() if k.startswith("VSML, meta-trained"))
    untrained = learners["VSML, untrained V_M"]
    assert untrained["mean_accuracy"] < 0.2
    assert trained["mean_accuracy"] > 0.5
    assert trained["block_accuracy"][-1] > trained["block_accuracy"][0]  # it learns within the episode
