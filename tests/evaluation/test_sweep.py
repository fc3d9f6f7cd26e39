"""`sweep_learning_rates` and `vsml sweep-lr`: the report, that tuning finds a sensible rate, the bad-input paths."""

from __future__ import annotations

import json

import pytest

from vsml.cli.main import main
from vsml.evaluation.baselines import ADAM_LEARNING_RATES, grid_edge
from vsml.evaluation.sweep import sweep_learning_rates
from vsml.report.sweep import sweep_table, write_sweep

pytest.importorskip("sklearn")  # digits is bundled with scikit-learn

TINY = {"num_episodes": 4, "length": 60, "quiet": True}


@pytest.fixture(scope="module")
def digits_report() -> dict:
    # 1e-6 barely moves the weights in 60 steps, so it stays near chance; 0.1 learns (≈0.45 here).
    return sweep_learning_rates(
        ["digits"], optimizers=("sgd", "adam"), hidden_sizes_options=((), (16,)), rates=(0.1, 1e-6), **TINY
    )


def test_report_structure_and_accuracies_in_range(digits_report):
    assert json.loads(json.dumps(digits_report)) == digits_report  # JSON-able as is
    entry = digits_report["datasets"]["digits"]
    assert entry["num_classes"] == 10 and entry["chance"] == pytest.approx(0.1)
    assert set(entry["learners"]) == {
        "online SGD, linear",
        "online SGD, tanh MLP 16",
        "online Adam, linear",
        "online Adam, tanh MLP 16",
    }
    for result in entry["learners"].values():
        assert result["rates"] == [1e-6, 0.1]  # sorted, so the edges are the ends
        assert set(result["accuracy"]) == {"1e-06", "0.1"}
        assert all(0.0 <= acc <= 1.0 for acc in result["accuracy"].values())
        assert result["best_accuracy"] == max(result["accuracy"].values())
        assert result["at_edge"] == (result["edge"] is not None)


def test_a_sensible_rate_beats_an_absurdly_tiny_one(digits_report):
    sgd = digits_report["datasets"]["digits"]["learners"]["online SGD, linear"]
    assert sgd["accuracy"]["1e-06"] < 0.2  # ≈ chance (0.1): no learning happened
    assert sgd["best_rate"] == 0.1 and sgd["best_accuracy"] > sgd["accuracy"]["1e-06"] + 0.15
    # With two rates the best one is always at an edge; here the upper one: widen the grid upwards.
    assert sgd["edge"] == "high" and sgd["at_edge"]


def test_grid_edge():
    rates = (0.001, 0.01, 0.1)
    assert grid_edge(0.001, rates) == "low"
    assert grid_edge(0.1, rates) == "high"
    assert grid_edge(0.01, rates) is None
    assert grid_edge(0.01, (0.01,)) == "both"


def test_table_and_files(digits_report, tmp_path):
    table = sweep_table(digits_report)
    assert table.count("| digits") == 4 and "highest rate of the grid" in table
    written = write_sweep(digits_report, tmp_path / "new_dir")
    assert [p.name for p in written] == ["lr_sweep.json", "lr_sweep.md"]
    assert json.loads(written[0].read_text()) == digits_report
    assert written[1].read_text() == table


def test_default_grid_is_the_optimizers():
    report = sweep_learning_rates(["sum"], optimizers=("adam",), hidden_sizes_options=((),), **TINY)
    result = report["datasets"]["sum"]["learners"]["online Adam, linear"]
    assert tuple(result["rates"]) == ADAM_LEARNING_RATES
    assert result["spec_default_rate"] == 0.001


def run(*argv: str) -> int:
    return main(["--cpu-devices", "1", *argv])


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep-lr", "--datasets", "sum", "--optimizers", "sgd", "--hidden", "0", "--rates", "0.01,0.1"]
    argv += ["--episodes", "4", "--length", "60", "--out", str(out), "--quiet"]
    assert run(*argv, "--set", "transform.pad_classes_to=4") == 0
    captured = capsys.readouterr()
    assert "| sum" in captured.out and "online SGD, linear" in captured.out
    assert f"wrote {out / 'lr_sweep.json'}" in captured.out and "lr sweep" not in captured.err  # --quiet
    report = json.loads((out / "lr_sweep.json").read_text())
    assert report["datasets"]["sum"]["num_classes"] == 4  # the --set transform reached the sampler
    assert report["transform"]["pad_classes_to"] == 4
    assert (out / "lr_sweep.md").read_text().startswith("### Learning-rate sweep")


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--datasets", "digits,imagenet", "unknown dataset 'imagenet'"),
        ("--optimizers", "sgd,rmsprop", "rmsprop"),
        ("--rates", "0.01,-0.1", "positive"),
        ("--rates", "0.01,,0.1", "empty item"),
        ("--rates", "0.01,fast", "'fast' is not a number"),
        ("--hidden", "0,big", "'big' is not an architecture"),
        ("--set", "es.sigma=0.1", "accepts only transform"),
        ("--set", "transform.pad_input_to=[0]", "transform.pad_input_to"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, flag, value, message):
    argv = {"--datasets": "digits", "--rates": "0.1", "--out": str(tmp_path / "o")}
    argv[flag] = value
    args = ["sweep-lr", "--quiet"]
    for key, val in argv.items():
        args += [key, val]
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("vsml sweep-lr: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
