"""`vsml meta-train` and `vsml evaluate` as a user runs them, including the bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsml.cli.main import INTERRUPTED, _build_parser, main

pytest.importorskip("sklearn")

# TINY's shapes (tests/run/test_trainer.py: 6-step episodes, 2 pairs, eval 2 x 6): the meta-step and the
# evaluation then come from the suite's shared compilation cache instead of being compiled once more.
TINY_YAML = """
name: cli_tiny
seed: 5
learner: {name: vsml, feed_label: true}
task: {dataset: digits, episode_length: 6}
es: {num_pairs: 2}
train: {iterations: 2, checkpoint_every: 1}
eval: {datasets: [digits], every: 2, num_episodes: 2, episode_length: 6}
"""


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


def run(*argv: str) -> int:
    return main(["--cpu-devices", "1", *argv])


def test_meta_train_then_evaluate(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run("meta-train", str(config_file), "--out", str(out), "--no-progress") == 0
    assert "meta-training done: iteration 2" in capsys.readouterr().out
    # The episodes of tests/evaluation/test_meta_test.py's meta-test (5 of 6 steps): the tuned baselines'
    # programs are compiled once for both.
    assert run("evaluate", str(out), "--episodes", "5", "--length", "6") == 0
    printed = capsys.readouterr().out
    for row in (
        "VSML, untrained V_M",
        "VSML, meta-trained V_M (2 ES it.)",
        "online SGD",
        "online Adam",
        "chance",
    ):
        assert row in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["datasets"]["digits"]["learners"]) >= {"VSML, untrained V_M"}
    assert (out / "learning_curves_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A checkpoint file works as well as the run directory.
    assert (
        run("evaluate", str(out / "ckpt_00000001.json"), "--no-baselines", "--out", str(tmp_path / "e")) == 0
    )
    assert "(1 ES it.)" in capsys.readouterr().out
    # Two checkpoints as two "seeds": meta-tested on the same episodes, combined, CSV written.
    both = [str(out / "ckpt_00000001.json"), str(out / "ckpt_00000002.json")]
    assert run("evaluate", *both, "--no-baselines", "--episodes", "2", "--length", "6") == 2
    assert "several runs need --out" in capsys.readouterr().err
    assert (
        run(
            "evaluate",
            *both,
            "--no-baselines",
            "--episodes",
            "2",
            "--length",
            "6",
            "--out",
            str(tmp_path / "s"),
        )
        == 0
    )
    assert "Meta-trained over 2 runs" in capsys.readouterr().out
    assert (tmp_path / "s" / "evaluation.csv").read_text().startswith("dataset,learner,step,")
    # Running into the same directory again needs --resume; with it, there is nothing left to do.
    assert run("meta-train", str(config_file), "--out", str(out), "--no-progress") == 2
    assert "--resume" in capsys.readouterr().err
    assert run("meta-train", str(config_file), "--out", str(out), "--resume") == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, message",
    [
        ("es.num_pair=3", "es.num_pair"),
        ("es.sigma=abc", "es.sigma"),
        ("task.dataset=imagenet", "imagenet"),
        ("learner.feed_labels=true", "learner.feed_labels"),
        ("learner.name=nope", "learner.name"),
    ],
)
def test_bad_config_values_are_clear_errors(config_file, tmp_path, capsys, override, message):
    assert run("meta-train", str(config_file), "--out", str(tmp_path / "r"), "--set", override) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_files_are_clear_errors(tmp_path, capsys):
    assert run("meta-train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r")) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert run("evaluate", str(tmp_path / "no_run")) == 2
    assert "no_run" in capsys.readouterr().err


def test_missing_data_directory(config_file, tmp_path, capsys):
    code = run(
        "meta-train",
        str(config_file),
        "--out",
        str(tmp_path / "r"),
        "--set",
        "task.dataset=mnist",
        "--data-dir",
        str(tmp_path / "nowhere"),
    )
    assert code == 2
    assert "nowhere" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    printed = capsys.readouterr().out
    assert "meta-train" in printed and "evaluate" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cpu-devices", "0", "list-pretrained"], "--cpu-devices: must be >= 1, got 0"),
        (["evaluate", "RUN", "--length", "0"], "--length: must be >= 1, got 0"),
        (["evaluate", "RUN", "--episodes", "-2"], "--episodes: must be >= 1, got -2"),
        (["compare", "sgd", "--datasets", "digits", "--out", "o", "--episodes", "x"], "whole number"),
        (["sweep-lr", "--datasets", "digits", "--out", "o", "--episodes", "0"], "--episodes: must be >= 1"),
        (["introspect", "RUN", "--ways", "0"], "--ways: must be >= 1"),
    ],
)
def test_counts_below_one_are_refused_not_replaced_by_defaults(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_quiet_and_no_progress_are_one_flag_on_every_command():
    parser = _build_parser()
    commands = (
        "meta-train CONFIG --out o",
        "evaluate RUN",
        "sweep-lr --datasets d --out o",
        "reproduce demo",
        "compare sgd --datasets d --out o",
        "introspect RUN",
        "clone C --out o",
    )
    for command in commands:
        for flag in ("--quiet", "--no-progress"):
            assert parser.parse_args([*command.split(), flag]).quiet
        assert not parser.parse_args(command.split()).quiet


def test_unusable_out_paths_are_clear_errors_before_any_work(config_file, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert run("meta-train", str(config_file), "--out", str(a_file), "--quiet") == 2
    assert "is a file; --out names a directory" in capsys.readouterr().err
    assert run("meta-train", str(config_file), "--out", str(a_file / "sub"), "--quiet") == 2
    err = capsys.readouterr().err
    assert "cannot create --out" in err and "is a file" in err and "Traceback" not in err
    assert not (a_file.parent / "run").exists()  # checked, nothing created


def test_meta_training_settings_are_refused_by_evaluate(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run("meta-train", str(config_file), "--out", str(out), "--quiet", "--set", "train.iterations=1") == 0
    )
    capsys.readouterr()
    for override in ("es.sigma=0.1", "es={sigma: 0.1}", "train.iterations=5"):
        assert run("evaluate", str(out), "--no-baselines", "--set", override) == 2
        assert "changes meta-training only" in capsys.readouterr().err


def test_runs_with_different_eval_datasets_need_datasets(config_file, tmp_path, capsys):
    for name, datasets in (("a", "[digits]"), ("b", "[digits, sum]")):
        argv = ["--set", "train.iterations=1", "--set", f"eval.datasets={datasets}"]
        assert run("meta-train", str(config_file), "--out", str(tmp_path / name), "--quiet", *argv) == 0
    capsys.readouterr()
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert run("evaluate", *runs, "--no-baselines", "--out", str(tmp_path / "e")) == 2
    assert "give them the same ones with --datasets" in capsys.readouterr().err


def test_interrupt_says_what_was_kept(config_file, tmp_path, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("vsml.cli.meta_train.run", interrupted)
    out = tmp_path / "run"
    assert run("meta-train", str(config_file), "--out", str(out)) == INTERRUPTED
    assert "no checkpoint was written" in capsys.readouterr().err
    monkeypatch.undo()
    assert run("meta-train", str(config_file), "--out", str(out), "--quiet") == 0
    monkeypatch.setattr("vsml.cli.meta_train.run", interrupted)
    assert run("meta-train", str(config_file), "--out", str(out), "--resume") == INTERRUPTED
    assert "ckpt_00000002.json) is intact" in capsys.readouterr().err


def test_python_dash_m_vsml_is_the_command():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "vsml", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "meta-train" in result.stdout


def test_the_console_command_leaves_without_teardown_after_ctrl_c(monkeypatch):
    """entry_point: exit code 130 through os._exit (the interpreter's teardown under XLA's running threads
    segfaulted); any other code through sys.exit."""
    import vsml.cli.main as cli

    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    monkeypatch.setattr(cli, "main", lambda: INTERRUPTED)
    with pytest.raises(SystemExit):  # reached only because the patched os._exit returns
        cli.entry_point()
    assert exits == [130]
    monkeypatch.setattr(cli, "main", lambda: 2)
    with pytest.raises(SystemExit) as exit_info:
        cli.entry_point()
    assert exit_info.value.code == 2 and exits == [130]


def test_a_flag_the_command_does_not_take_is_reported_by_that_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "RUN", "--resume"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "usage: vsml evaluate" in err and "vsml evaluate: error: unrecognized arguments: --resume" in err


def test_export_pretrained_needs_an_explicit_destination(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export-pretrained", str(tmp_path), "--name", "x"])
    assert exit_info.value.code == 2
    assert "one of the arguments --out --into-package is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export-pretrained", str(tmp_path), "--name", "x", "--out", str(tmp_path), "--into-package"])
    assert "not allowed with argument" in capsys.readouterr().err
