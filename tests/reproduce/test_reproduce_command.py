"""`vsml reproduce`: the registry of paper experiments is valid, its commands are real `vsml` commands, and a
tiny experiment runs end to end, then reuses its finished run."""

from __future__ import annotations

import json
import shlex

import pytest

from vsml.cli.main import _build_parser, main
from vsml.reproduce import recipes as rp
from vsml.run.experiment import load_experiment, stage_experiment


def run_cli(*argv: str) -> int:
    return main(["--cpu-devices", "1", *argv])


def all_training_steps(kind: type = rp.TrainStep) -> list[tuple[str, str, rp.TrainStep]]:
    return [
        (name, scale, step)
        for name, exp in rp.EXPERIMENTS.items()
        for scale in rp.SCALES
        for step in rp.training_at(exp, scale)
        if isinstance(step, kind)
    ]


def test_registry_covers_the_paper_experiments():
    assert {"demo", "fig6", "fig8", "blur_mnist", "blur_toy2d", "omniglot", "cloning"} <= set(
        rp.EXPERIMENTS
    )
    for name in rp.EXPERIMENTS:
        rp.validate(name)  # warm starts and report steps name runs trained before them


@pytest.mark.parametrize("name, scale, step", all_training_steps(), ids=lambda v: getattr(v, "run", v))
def test_every_config_exists_and_its_overrides_load(name, scale, step, tmp_path):
    assert rp.config_path(step).is_file(), step.config
    overrides = rp.train_overrides(step, scale, tmp_path / scale, data_dir=str(tmp_path / "data"))
    config = load_experiment(rp.config_path(step), overrides)
    if scale == "paper":  # paper scale: the config as it is, but for what defines the run at every scale
        assert all(o in step.overrides.get("cpu-small", ()) for o in step.overrides["paper"]), step.run
    if scale in step.warm_start:
        assert config.train.init_from == str(tmp_path / scale / step.warm_start[scale])


@pytest.mark.parametrize(
    "name, scale, step", all_training_steps(rp.CloneRun), ids=lambda v: getattr(v, "run", v)
)
def test_every_clone_config_exists_and_its_overrides_load(name, scale, step):
    from vsml.config import load_config
    from vsml.meta.cloning import CloneConfig

    load_config(CloneConfig, rp.config_path(step), step.overrides[scale])
    assert not step.warm_start


def test_a_run_name_means_the_same_run_in_every_experiment():
    seen: dict[tuple[str, str], rp.TrainStep] = {}
    for _, scale, step in all_training_steps():
        key = (scale, step.run)
        if key in seen:
            other = seen[key]
            assert (step.config, step.overrides[scale], step.warm_start.get(scale)) == (
                other.config,
                other.overrides[scale],
                other.warm_start.get(scale),
            ), step.run
        seen[key] = step


def test_fig6_trains_three_seeds_from_a_random_v_m_on_mnist_only_and_meta_tests_them_together():
    for scale in rp.SCALES:
        commands = rp.plan("fig6", scale, runs_dir="r")
        outs = [c.split(" --out ")[1].split()[0] for c in commands[:3]]
        assert outs == [f"r/{scale}/fig6_seed{s}" for s in (0, 1, 2)]
        assert all(f"--set seed={s}" in commands[s] for s in (0, 1, 2))
        assert "init_from" not in " ".join(commands)
        evaluate = commands[3]
        assert evaluate.startswith(f"vsml evaluate r/{scale}/fig6_seed0 r/{scale}/fig6_seed1 r/{scale}/fig6_seed2 ")
        assert "--length 2000" in evaluate or scale == "paper"
    for step in rp.EXPERIMENTS["fig6"].training:  # MNIST and nothing else, at every stage of the curriculum
        config = load_experiment(rp.config_path(step), step.overrides["cpu-small"])
        assert config.train.init_from is None and config.curriculum
        for stage in range(len(config.curriculum) + 1):
            task = stage_experiment(config, stage)
            assert {piece.dataset for piece in task.population} == {"mnist"}
            assert [piece.transform.project for piece in task.population] == [True, False]


@pytest.mark.parametrize("scale", rp.SCALES)
@pytest.mark.parametrize("name", list(rp.EXPERIMENTS))
def test_plan_gives_commands_the_cli_accepts(name, scale):
    commands = rp.plan(name, scale, data_dir="/data")
    exp = rp.EXPERIMENTS[name]
    assert len(commands) == len(rp.training_at(exp, scale)) + len(rp.reports_at(exp, scale))
    parser = _build_parser()
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "vsml"
        args = parser.parse_args(words[1:])  # a real command line, options and all
        assert args.data_dir == "/data"
    assert shlex.split(commands[0])[1] == (
        "clone" if isinstance(exp.training[0], rp.CloneRun) else "meta-train"
    )


def test_list_and_dry_run(tmp_path, capsys):
    assert run_cli("reproduce", "--list") == 0
    listed = capsys.readouterr().out
    for name in rp.EXPERIMENTS:
        assert f"{name}\n" in listed
    runs = tmp_path / "runs"
    argv = [
        "reproduce",
        "fig8",
        "--dry-run",
        "--runs-dir",
        str(runs),
        "--reports-dir",
        str(tmp_path),
    ]
    assert run_cli(*argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == rp.plan("fig8", "cpu-small", runs)
    assert any(line.startswith("vsml compare") and " sgd adam " in line for line in printed)
    assert not runs.exists() and not (tmp_path / "fig8").exists()  # nothing was run


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope"], "unknown experiment 'nope'; choose one of demo, "),
        (["demo", "--scale", "huge"], "unknown scale 'huge'; choose one of cpu-small, paper"),
        ([], "name an experiment"),
    ],
)
def test_bad_names_and_scales_are_clear_errors(argv, message, capsys):
    assert run_cli("reproduce", *argv, "--dry-run") == 2
    assert message in capsys.readouterr().err


def test_reproduce_rejects_unknown_names_and_scales_before_running_anything(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        rp.reproduce("nope", runs_dir=tmp_path / "runs")
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        rp.reproduce("demo", "huge", runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


TINY = (
    "es.num_pairs=2",
    "task.episode_length=5",
    "train.iterations=2",
    "train.checkpoint_every=1",
    "eval.every=2",
    "eval.num_episodes=2",
    "eval.episode_length=5",
)


def test_a_tiny_experiment_end_to_end_then_reused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    tiny_suite = tmp_path / "tiny_suite.yaml"
    tiny_suite.write_text(
        "name: tiny\nepisodes: 2\nwindow: 3\nbaselines: [sgd]\ndatasets: [{name: digits, dataset: digits, length: 5}]\n"
    )
    tiny = rp.Experiment(
        "A tiny VSML run on digits, then one more iteration warm-started from it.",
        (
            rp.TrainStep("tiny", "demo_digits.yaml", {"cpu-small": TINY}),
            rp.TrainStep(
                "tiny_warm",
                "demo_digits.yaml",
                {"cpu-small": (*TINY, "train.iterations=1")},
                warm_start={"cpu-small": "tiny"},
            ),
        ),
        (
            rp.MetaTest(
                "meta_test", "tiny_warm", {"cpu-small": rp.Size(2, 5)}, baselines=False, more_runs=("tiny",)
            ),
            rp.Compare("compare", ("tiny", "tiny_warm", "sgd"), ("digits",), {"cpu-small": rp.Size(2, 5)}),
            rp.SuiteStep("suite", "tiny", {"cpu-small": rp.Size()}, suite=str(tiny_suite)),
        ),
    )
    monkeypatch.setitem(rp.EXPERIMENTS, "tiny", tiny)
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    argv = ["reproduce", "tiny", "--runs-dir", str(runs), "--reports-dir", str(reports), "--quiet"]
    assert run_cli(*argv) == 0
    readme = reports / "tiny" / "README.md"
    text = readme.read_text()
    for command in rp.plan("tiny", "cpu-small", runs):
        assert command in text
    assert "trained iterations 1-2" in text and "trained iteration 1;" in text
    assert "VSML, meta-trained V_M (1 ES it.)" in text
    pngs = sorted(p.name for p in (reports / "tiny").glob("*.png"))
    assert {"compare_grid.png", "meta_test_learning_curves_digits.png"} <= set(pngs)
    assert all(f"]({png})" in text for png in pngs)
    assert (reports / "tiny" / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Both runs meta-tested on the same episodes and combined; every step's JSON in results.json.
    assert "over 2 runs" in text
    results = json.loads((reports / "tiny" / "results.json").read_text())
    assert (results["experiment"], results["scale"]) == ("tiny", "cpu-small")
    assert list(results["steps"]) == ["meta_test", "compare", "suite"]
    suite = results["steps"]["suite"]["result"]  # the run's iteration named; its table in the README
    assert suite["learner"] == "tiny (iteration 2)" and [r["name"] for r in suite["datasets"]] == ["digits"]
    assert f"{suite['datasets'][0]['learner']['whole']['mean']:.3f}" in text and "suite_curves.png" in pngs
    assert "of meta-steps in all" in text
    meta_test = results["steps"]["meta_test"]
    assert meta_test["command"] in text
    assert meta_test["result"]["runs"] == [str(runs / "cpu-small" / r) for r in ("tiny_warm", "tiny")]
    assert "digits" in results["steps"]["compare"]["result"]["chance"]

    metrics = runs / "cpu-small" / "tiny" / "metrics.jsonl"
    before = (metrics.read_bytes(), metrics.stat().st_mtime_ns)
    capsys.readouterr()
    assert run_cli(*argv) == 0  # the second time: nothing is trained or re-evaluated
    assert (metrics.read_bytes(), metrics.stat().st_mtime_ns) == before
    text = readme.read_text()
    assert text.count("reused: finished earlier") == 2 and text.count("reused: unchanged") == 3
    assert "VSML, meta-trained V_M (1 ES it.)" in text  # the tables are still there


def test_a_tiny_cloning_experiment_clones_warm_starts_es_from_it_and_is_reused(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    # The settings of tests/meta/test_cloning.py's clone command: the two compile the same programs once.
    clone_tiny = (
        "train.steps=2",
        "train.heldout=64",
        "train.batch_size=32",
        "tuples.length=2",
        "eval.datasets=[digits]",
        "eval.architectures=[[]]",
        "eval.steps=50",
        "eval.test_examples=50",
        "eval.tail=20",
    )
    clone = rp.CloneRun("clone", "cloning/backprop.yaml", {"cpu-small": clone_tiny})
    tiny = rp.Experiment(
        "Clone on a tiny budget, then two ES iterations from the clone.",
        (
            clone,
            rp.TrainStep("es", "es_from_clone.yaml", {"cpu-small": TINY}, warm_start={"cpu-small": "clone"}),
        ),
        (),
    )
    monkeypatch.setitem(rp.EXPERIMENTS, "tiny_clone", tiny)
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    argv = ["reproduce", "tiny_clone", "--runs-dir", str(runs), "--reports-dir", str(reports), "--quiet"]
    assert run_cli(*argv) == 0
    text = (reports / "tiny_clone" / "README.md").read_text()
    assert "cloned and evaluated" in text and "64-10" in text  # the clone's free-running table, digits 64-10
    assert "trained iterations 1-2" in text
    assert (reports / "tiny_clone" / "clone_curves_digits_shallow.png").read_bytes()[
        :8
    ] == b"\x89PNG\r\n\x1a\n"
    assert load_experiment(runs / "cpu-small" / "es" / "config.yaml").train.init_from == str(
        runs / "cpu-small" / "clone"
    )
    assert run_cli(*argv) == 0  # the second time the clone is reused
    assert "reused: cloned and evaluated earlier" in (reports / "tiny_clone" / "README.md").read_text()
    # a clone of another config in the same run directory is an error, not silently reused
    monkeypatch.setitem(
        rp.EXPERIMENTS,
        "tiny_clone",
        rp.Experiment(
            "", (rp.CloneRun("clone", "cloning/backprop.yaml", {"cpu-small": (*clone_tiny, "seed=5")}),), ()
        ),
    )
    with pytest.raises(ValueError, match="holds a clone of another config .*seed"):
        rp.reproduce("tiny_clone", runs_dir=runs, reports_dir=reports, progress=False)


def test_compare_adds_the_datasets_whose_files_are_present_and_names_the_absent(tmp_path):
    import numpy as np

    from vsml.report.grid import grid_table

    folder = tmp_path / "kmnist"
    folder.mkdir()
    for split, count in (("train", 3), ("test", 2)):  # KMNIST's .npz form, tiny
        np.savez(folder / f"kmnist-{split}-imgs.npz", np.zeros((count, 28, 28), np.uint8))
        np.savez(folder / f"kmnist-{split}-labels.npz", np.arange(count, dtype=np.uint8))
    step = rp.Compare("grid", ("sgd",), ("digits",), {"cpu-small": rp.Size(2, 5)}, if_present=("emnist", "kmnist"))
    assert rp.compare_datasets(step, str(tmp_path)) == (("digits", "kmnist"), ("emnist",))
    command = rp.report_command(step, "cpu-small", tmp_path / "runs", tmp_path / "out", set(), str(tmp_path))
    assert "--datasets digits,kmnist " in command
    # A data folder that does not exist is an error, except when only printing the plan.
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        rp.compare_datasets(step, str(tmp_path / "typo"))
    assert rp.compare_datasets(step, str(tmp_path / "typo"), strict=False) == (("digits",), ("emnist", "kmnist"))
    # The grid's table names the absent columns.
    cell = {"mean_accuracy": 0.5, "interval_95": 0.1}
    grid = {"episodes": 2, "length": 5, "chance": {"digits": 0.1}, "absent_datasets": ["emnist"],
            "rows": [{"label": "sgd", "seen": [], "cells": {"digits": cell}}]}  # fmt: skip
    assert "No column for emnist" in grid_table(grid)
    assert "No column" not in grid_table({**grid, "absent_datasets": []})
    # fig8's plan shows the KMNIST column once its files are in the data folder.
    grid_command = [c for c in rp.plan("fig8", "cpu-small", tmp_path / "runs", data_dir=str(tmp_path))
                    if " --datasets " in c and "compare" in c][0]  # fmt: skip
    assert "--datasets mnist,fashion_mnist,random,sum,digits,kmnist " in grid_command
