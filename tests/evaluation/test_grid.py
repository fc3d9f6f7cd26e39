"""The generalisation grid: contenders from runs and tokens, seen datasets, tuned baselines, files written."""

from __future__ import annotations

import json

import pytest

from vsml.cli.main import main
from vsml.evaluation.grid import (
    contender_from_token,
    contenders_from_arguments,
    generalisation_grid,
    meta_training_datasets,
)
from vsml.report.grid import SEEN_MARK, grid_table, write_grid
from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import MetaTrainer

pytest.importorskip("sklearn")  # the digits dataset

PADDING = {"pad_input_to": [28, 28, 1], "pad_classes_to": 12}
HEBBIAN_RUN = {
    "name": "hebbian_digits",
    "seed": 0,
    "learner": {"name": "hebbian", "input_shape": [28, 28, 1], "num_classes": 12},
    "meta_optimizer": "grad",
    "task": {"dataset": "digits", "episode_length": 30},
    "grad": {"num_episodes": 8, "learning_rate": 0.01},
    "transform": PADDING,
    "train": {"iterations": 40, "checkpoint_every": 40},
    "eval": {"datasets": ["digits"], "every": 40, "num_episodes": 2, "episode_length": 30},
}


@pytest.fixture(scope="module")
def hebbian_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("hebbian_digits")
    MetaTrainer(experiment_from_dict(HEBBIAN_RUN), path).run(progress=False)
    return path


def test_grid_marks_seen_datasets_uses_true_chance_and_ranks_learners(hebbian_run, tmp_path):
    contenders = contenders_from_arguments([str(hebbian_run), "sgd"])
    assert contenders[0].seen == {"digits"} and contenders[1].seen == set()
    report = generalisation_grid(contenders, ["digits", "sum"], num_episodes=6, length=40, progress=False)
    # Chance counts the classes that occur, not the 12 padded outputs.
    assert report["chance"] == pytest.approx({"digits": 0.1, "sum": 0.5})
    hebbian, sgd = report["rows"]
    for row in report["rows"]:
        for cell in row["cells"].values():
            assert (
                0.0 <= cell["mean_accuracy"] <= 1.0 and len(cell["curve"]) == 40 and cell["interval_95"] >= 0
            )
    # SGD's rate was tuned on the training split, from the grid the token names.
    assert sgd["cells"]["digits"]["learning_rate"] in contender_from_token("sgd").rates
    # 40 gradient meta-steps on digits: the Hebbian learner beats chance on its meta-training set.
    assert hebbian["cells"]["digits"]["mean_accuracy"] > 0.2
    # A tuned SGD learns within 40 digits, so its second half beats chance clearly.
    assert sgd["cells"]["digits"]["second_half_accuracy"] > 0.3
    table = grid_table(report)
    assert f"{SEEN_MARK}" in table.splitlines()[4] and "(lr " in table.splitlines()[5]
    written = write_grid(report, tmp_path / "grid", caption="test")
    assert [p.name for p in written] == [
        "grid.json",
        "grid.md",
        "grid.png",
        "curves_digits.png",
        "curves_sum.png",
    ]
    assert json.loads(written[0].read_text())["rows"][0]["label"].startswith("Hebbian FW")
    assert written[2].stat().st_size > 10_000


def test_seen_datasets_follow_the_warm_start_chain(hebbian_run):
    config = experiment_from_dict(
        {**HEBBIAN_RUN, "task": {"dataset": "sum"}, "train": {"init_from": str(hebbian_run)}}
    )
    assert meta_training_datasets(config) == {"sum", "digits"}


def test_unknown_contender_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a run directory nor a hand-designed learner"):
        contenders_from_arguments(["no/such/run"])


def test_compare_command_writes_the_grid(hebbian_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        ["--cpu-devices", "1", "compare", str(hebbian_run), "adam", "--datasets", "digits", "--episodes", "2",
         "--length", "20", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"grid.json", "grid.md", "grid.png", "curves_digits.png"}
    assert "online Adam, linear" in capsys.readouterr().out
    assert main(["--cpu-devices", "1", "compare", "nonsense", "--datasets", "digits", "--out", str(out)]) == 2
    assert "hand-designed" in capsys.readouterr().err


def test_a_dataset_larger_than_the_padding_is_not_available_to_that_contender():
    import jax

    from vsml.evaluation.grid import Contender
    from vsml.learners.hebbian import HebbianFW

    small = HebbianFW(input_shape=(8, 8, 1), num_classes=12)
    config = experiment_from_dict({"transform": {"pad_input_to": [8, 8, 1], "pad_classes_to": 12}})
    contenders = [
        Contender("small", small, config, small.init_meta(jax.random.key(0))),
        contender_from_token("sgd"),
    ]
    report = generalisation_grid(contenders, ["digits", "sum"], num_episodes=2, length=10, progress=False)
    assert "cannot hold inputs" in report["rows"][0]["cells"]["sum"]["unavailable"]
    assert "n/a" in grid_table(report).splitlines()[4]


def test_meta_test_overrides_reach_hand_designed_contenders_too():
    projected = contenders_from_arguments(["adam"], ["transform.project=true"])[0]
    assert projected.config.transform.project and not contender_from_token("adam").config.transform.project


def test_invariance_grid_has_a_column_per_dataset_and_setting(hebbian_run, tmp_path):
    from vsml.evaluation.grid import invariance_grid

    settings = {"5 classes": ["transform.classes=[5,8,1,4,2]"], "48×48": ["transform.resize=[48,48]"]}
    report = invariance_grid(
        [str(hebbian_run), "sgd"], ["digits"], settings, num_episodes=2, length=10, progress=False
    )
    assert list(report["chance"]) == ["digits · 5 classes", "digits · 48×48"]
    assert report["chance"]["digits · 5 classes"] == pytest.approx(0.2)
    hebbian, sgd = report["rows"]
    # The padded baseline cannot take 48×48 inputs; SGD and shape-free learners can.
    assert "unavailable" in hebbian["cells"]["digits · 48×48"] and "curve" in sgd["cells"]["digits · 48×48"]
    assert hebbian["seen"] == ["digits · 5 classes", "digits · 48×48"]
    names = {p.name for p in write_grid(report, tmp_path)}
    assert {"grid.md", "grid.png", "curves_digits__5_classes.png", "curves_digits__48_48.png"} <= names
