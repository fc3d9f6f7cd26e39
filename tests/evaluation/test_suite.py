"""The fixed meta-test suite (issue 24 §3): its shipped config, rate tuning on the episodes themselves with the
grid grown past an edge, and a whole (tiny) suite run whose numbers follow from the runs it made."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from tests.conftest import DATASETS_DIR
from vsml.config import ConfigError
from vsml.evaluation.baselines import HAND_DESIGNED, sgd_meta
from vsml.evaluation.online import evaluate_on_source
from vsml.evaluation.suite import (
    MAX_EXTENSIONS,
    Suite,
    SuiteDataset,
    acceptance,
    evaluate_suite,
    load_suite,
    suite_episodes,
    tune_on_episodes,
)
from vsml.learners.vsml import VSML

pytest.importorskip("sklearn")


def test_the_shipped_suite_names_held_out_data_and_its_protocols():
    suite = load_suite("general")
    names = {d.name: d for d in suite.datasets}
    assert {"fashion_mnist_28x28", "omniglot_5way", "omniglot_20way", "digits", "sum_sign"} <= set(names)
    assert names["omniglot_20way"].protocol == "all_drawings" and names["omniglot_20way"].ways == 20
    assert set(names["omniglot_5way"].alphabets) == {"Korean", "Tagalog"}
    assert not names["sum_sign"].held_out and names["sum_sign"].min_accuracy == 0.9
    assert suite.episodes >= 16 and set(suite.baselines) == set(HAND_DESIGNED)


def test_bad_suites_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="ways is for omniglot only"):
        SuiteDataset("x", "mnist", ways=5)
    with pytest.raises(ValueError, match="needs ways"):
        SuiteDataset("x", "omniglot")
    with pytest.raises(ValueError, match="baselines must be some of"):
        Suite("s", (SuiteDataset("x", "mnist"),), baselines=("rmsprop",))
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\ndatasets: [{name: x, dataset: mnist, lenght: 3}]\n")
    with pytest.raises(ConfigError, match="did you mean 'datasets\\[0\\].length'"):
        load_suite(path)
    with pytest.raises(FileNotFoundError, match="general"):
        load_suite("no_such_suite")


def test_digits_all_pools_both_halves_and_a_too_long_episode_is_refused():
    source, sampler = suite_episodes(SuiteDataset("d", "digits", split="all", length=1000))
    assert source.size == 1797 and sampler.length == 1000
    with pytest.raises(ValueError, match="split: all"):
        suite_episodes(SuiteDataset("d", "digits", split="test", length=1000))


@pytest.mark.skipif(not (DATASETS_DIR / "omniglot").is_dir(), reason="no Omniglot files")
def test_omniglot_episodes_are_standardised_all_drawings_episodes():
    source, sampler = suite_episodes(SuiteDataset("o", "omniglot", ways=5), data_dir=DATASETS_DIR)
    assert sampler.length == 100 and sampler.all_drawings
    images = np.asarray(source.images)
    assert images.shape[:2] == (57, 20)  # Korean and Tagalog
    pixels = images.reshape(57 * 20, -1)  # each pixel standardised over the pool (an always-blank one is 0)
    std = pixels.std(axis=0)
    assert np.abs(pixels.mean(axis=0)).max() < 1e-4 and np.all(np.isclose(std, 1, atol=1e-3) | (std == 0))


def test_tuning_grows_the_grid_until_the_best_rate_is_inside_and_runs_each_rate_once():
    """A made-up learner whose accuracy peaks at rate 0.05 early and 0.002 over the whole episode."""
    calls = []

    def run(rate: float) -> np.ndarray:
        calls.append(rate)
        early = 1 - abs(np.log10(rate / 0.05))
        late = 1 - abs(np.log10(rate / 0.002))
        accuracy = np.concatenate([np.full((4, 10), early), np.full((4, 90), late)], axis=1)
        return accuracy + np.linspace(0, 0.01, 4)[:, None]  # a spread over episodes

    tuned = tune_on_episodes(run, (0.003, 0.01), (10, None))
    assert tuned["first_10"]["rate"] == pytest.approx(0.0316, rel=1e-2)  # grown upwards past 0.01 twice
    assert tuned["whole"]["rate"] == 0.003 or tuned["whole"]["rate"] < 0.003
    assert tuned["first_10"]["at_grid_edge"] is None and tuned["whole"]["interval"] > 0
    assert len(calls) == len(set(calls))  # every rate ran once, shared by the windows
    # A best rate past every growth is flagged.
    edge = tune_on_episodes(lambda r: np.full((2, 5), r), (0.1, 0.3), (None,))["whole"]
    assert edge["at_grid_edge"] == "high" and edge["rates_tried"] == 2 + MAX_EXTENSIONS


def test_a_tiny_suite_compares_the_learner_with_baselines_tuned_on_the_same_episodes():
    suite = Suite(
        "tiny",
        (
            SuiteDataset("digits", "digits", split="test", length=40),
            SuiteDataset("sum", "sum", length=30, resize=(4, 4), held_out=False, min_accuracy=0.99),
        ),
        episodes=3,
        window=10,
        baselines=("sgd",),
    )
    learner = VSML(feed_label=True)
    meta = learner.init_meta(jax.random.PRNGKey(0))
    results = evaluate_suite(learner, meta, suite)
    digits, sum_sign = results["datasets"]
    assert digits["steps"] == 40 and sum_sign["steps"] == 30 and len(digits["curve"]) == 40
    # The learner's numbers are those of an evaluation of the same episodes.
    source, sampler = suite_episodes(suite.datasets[0])
    direct = evaluate_on_source(learner, meta, source, num_episodes=3, length=40, seed=suite.seed, sampler=sampler)
    assert digits["learner"]["whole"]["mean"] == pytest.approx(direct.mean_accuracy)
    assert digits["learner"]["first_10"]["mean"] == pytest.approx(direct.accuracy[:, :10].mean())
    # The tuned SGD is at least as good as SGD at any rate of its grid on those episodes, window by window.
    tuned = digits["baselines"]["sgd"]
    sgd = HAND_DESIGNED["sgd"].learner()
    for rate in HAND_DESIGNED["sgd"].rates:
        fixed = evaluate_on_source(
            sgd, sgd_meta(rate), source, num_episodes=3, length=40, seed=suite.seed, sampler=sampler
        )
        assert tuned["whole"]["mean"] >= fixed.mean_accuracy - 1e-6
        assert tuned["first_10"]["mean"] >= fixed.accuracy[:, :10].mean() - 1e-6
    assert digits["best_baseline"]["whole"]["baseline"] == "sgd"
    # An untrained V_M is at chance: behind, not ahead, and below Sum Sign's floor.
    verdict = results["acceptance"]
    assert verdict["ahead_over_first_10"] == [] and not verdict["ahead_met"]
    assert verdict["min_accuracy"] == {"sum": False} and not verdict["all_met"]
    # The verdict follows the numbers: a learner far ahead meets every criterion.
    def numbers(mean: float, interval: float) -> dict:
        return {w: {"mean": mean, "interval": interval} for w in ("first_10", "whole")}

    ahead = dataclasses.replace(suite, ahead_datasets=1)
    strong = {**digits, "learner": numbers(0.9, 0.05), "best_baseline": numbers(0.5, 0.05)}
    floors = {**sum_sign, "learner": numbers(1.0, 0.0)}
    assert acceptance([strong, floors], ahead)["all_met"]
    overlapping = {**strong, "best_baseline": numbers(0.85, 0.05)}  # ahead, but the intervals overlap
    assert acceptance([overlapping, floors], ahead)["ahead_over_first_10"] == []
    behind = {**strong, "best_baseline": numbers(0.94, 0.0)}  # more than 0.03 behind over the whole episode
    assert acceptance([behind, floors], ahead)["within_met"] is False


def test_the_suite_command_writes_a_report_rendered_from_its_results(tmp_path, capsys):
    from vsml.cli.main import main

    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nepisodes: 2\nwindow: 5\nbaselines: [sgd]\n"
        "datasets: [{name: digits, dataset: digits, length: 12}]\n"
    )
    out = tmp_path / "report"
    assert main(["--cpu-devices", "1", "suite", "vsml_mnist", "--suite", str(path), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["learner"] == "vsml_mnist" and [r["name"] for r in results["datasets"]] == ["digits"]
    readme = (out / "README.md").read_text()
    record = results["datasets"][0]
    assert f"{record['learner']['whole']['mean']:.3f}" in readme and (out / "curves.png").stat().st_size > 0
    assert "digits" in capsys.readouterr().out
    assert main(["suite", "vsml_mnist", "--suite", "nonexistent", "--out", str(out)]) == 2
