"""Run folders that cannot be mixed up (issue 23): one writing process per folder (an advisory lock that a
killed process cannot leave stuck), stale temporary files cleared, resume checked against the experiment the
newest checkpoint records, huge integers refused before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from vsml.cli.main import main
from vsml.run.experiment import experiment_from_dict, load_experiment
from vsml.run.run_dir import (
    LOCK_FILE,
    RunFolderBusyError,
    clear_stale_temporaries,
    lock_run_folder,
    recorded_experiment,
)
from vsml.run.trainer import MetaTrainer

pytest.importorskip("sklearn")

# TINY's shapes (tests/run/test_trainer.py: 6-step episodes, 2 pairs, eval 2 x 6): the meta-step and the
# evaluation then come from the suite's shared compilation cache instead of being compiled once more.
TINY = {
    "name": "tiny_folder",
    "seed": 3,
    "learner": {"name": "vsml", "feed_label": True},
    "task": {"dataset": "digits", "episode_length": 6},
    "es": {"num_pairs": 2},
    "train": {"iterations": 2, "checkpoint_every": 2},
    "eval": {"datasets": ["digits"], "every": 2, "num_episodes": 2, "episode_length": 6},
}

HOLD_LOCK = (
    "import sys\n"
    "from vsml.run.run_dir import lock_run_folder\n"
    "lock = lock_run_folder(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


def tiny(**top) -> dict:
    return {**json.loads(json.dumps(TINY)), **top}


@pytest.fixture
def other_process_holding(tmp_path):
    """Start a process that locks a folder and waits; yields (folder, process)."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield run_dir, holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_lock(other_process_holding, tmp_path, capsys):
    run_dir, holder = other_process_holding
    config = experiment_from_dict(tiny())
    with pytest.raises(RunFolderBusyError, match=rf"run folder {run_dir} is in use: pid {holder.pid} on host"):
        MetaTrainer(config, run_dir)
    assert not (run_dir / "config.yaml").exists()  # refused before anything was written

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny()))
    assert main(["meta-train", str(config_file), "--out", str(run_dir), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"vsml meta-train: error: run folder {run_dir} is in use: pid {holder.pid}" in error
    assert "choose another --out" in error

    holder.kill()  # kill -9: the operating system drops its lock
    holder.wait()
    trainer = MetaTrainer(config, run_dir)
    assert trainer.run_lock is not None and trainer.run_lock.held
    assert (run_dir / "config.yaml").exists() and (run_dir / LOCK_FILE).exists()


def test_the_lock_is_handed_over_within_a_process_and_released(tmp_path):
    first = lock_run_folder(tmp_path / "r")
    second = lock_run_folder(tmp_path / "r")  # e.g. a resumed trainer replacing an interrupted one
    assert second.held and not first.held
    first.release()  # no longer its lock: releasing it changes nothing
    with pytest.raises(subprocess.CalledProcessError):  # another process is still refused
        command = [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "r")]
        subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    second.release()
    with lock_run_folder(tmp_path / "r") as again:
        assert again.held
    assert not again.held


def test_stale_temporaries_of_the_run_are_cleared_on_start_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def leftovers():
        made = [
            Path(tempfile.mkstemp(dir=run_dir, prefix=f".{target}.", suffix=".tmp")[1])
            for target in ("ckpt_00000002.npz", "ckpt_00000002.json", "config.yaml", "latest.json", "metrics.jsonl")
        ]
        foreign = Path(tempfile.mkstemp(dir=run_dir, prefix=".evaluation.json.", suffix=".tmp")[1])
        (run_dir / "notes.tmp").write_text("mine")
        return made, foreign

    made, foreign = leftovers()
    config = experiment_from_dict(tiny())
    MetaTrainer(config, run_dir).run(progress=False)
    assert not any(path.exists() for path in made)
    assert foreign.exists() and (run_dir / "notes.tmp").exists()  # not the run's files: left alone

    made, _ = leftovers()
    resumed = MetaTrainer(experiment_from_dict(tiny(train={"iterations": 3, "checkpoint_every": 2})), run_dir, True)
    assert resumed.iteration == 2
    assert not any(path.exists() for path in made)

    with pytest.raises(ValueError, match="needs that folder's lock"):
        clear_stale_temporaries(tmp_path, resumed.run_lock)


def test_resume_checks_the_newest_checkpoint_not_an_edited_config_yaml(tmp_path):
    run_dir = tmp_path / "run"
    MetaTrainer(experiment_from_dict(tiny()), run_dir).run(progress=False)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["seed"] = 4  # edited by hand after the run started
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert recorded_experiment(run_dir)[1]["seed"] == 3  # the checkpoint's record is the authority

    edited = load_experiment(run_dir / "config.yaml", ["train.iterations=3"])
    with pytest.raises(ValueError, match=r"differs in seed from the experiment recorded in its checkpoints") as info:
        MetaTrainer(edited, run_dir, resume=True)
    assert "config.yaml itself differs from that record in seed: edited?" in str(info.value)

    # The run's own experiment resumes, and config.yaml records it again.
    resumed = MetaTrainer(experiment_from_dict(tiny(train={"iterations": 3, "checkpoint_every": 2})), run_dir, True)
    assert resumed.iteration == 2 and resumed.config.seed == 3
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 3


@pytest.mark.parametrize(
    "override",
    ["es.num_pairs=99999999999999999999", "seed=100000000000000000000", "task.episode_length=10000000000000"],
)
def test_huge_integers_are_config_errors_before_anything_is_written(override, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["meta-train", "demo_digits", "--out", str(out), "--set", override, "--quiet"]) == 2
    key = override.split("=")[0]
    assert f"config key '{key}'" in capsys.readouterr().err
    assert not out.exists()


def test_a_corrupt_newest_manifest_is_named_and_the_one_before_offered(tmp_path):
    config = experiment_from_dict(tiny(train={"iterations": 2, "checkpoint_every": 1}))
    MetaTrainer(config, tmp_path).run(progress=False)
    (tmp_path / "ckpt_00000002.json").write_text('{"format": "vsml-chec')  # cut off by a crash or an editor
    with pytest.raises(ValueError, match=r"corrupt checkpoint manifest .*ckpt_00000002\.json.*iteration 1.*move"):
        MetaTrainer(config, tmp_path, resume=True)


def test_vsml_clone_is_refused_a_folder_another_process_holds(other_process_holding, capsys):
    run_dir, holder = other_process_holding
    argv = ["clone", "cloning/backprop", "--out", str(run_dir), "--quiet", "--set", "eval.datasets=[digits]"]
    assert main(argv) == 2
    assert f"run folder {run_dir} is in use: pid {holder.pid}" in capsys.readouterr().err
    assert not (run_dir / "config.yaml").exists()  # refused before anything was written
