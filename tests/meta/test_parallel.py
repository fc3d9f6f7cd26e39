"""The population over several devices and processes (meta/parallel.py) gives the single-device result.

Both checks run the sharded side in subprocesses: a JAX process fixes its devices when its backend starts, and
the pytest process has one CPU device, which computes the reference.

Tolerances (float32), relative to each array's largest entry. A member's loss computed in a block of 3
members per device is not always bit-identical to the same member in a block of 6 (XLA vectorises by shape),
and ES carries the rounding of the antithetic losses into the update, where Adam's normalisation passes on
its *relative* size: the rounding (~1e-7 of a loss of ln 10) over a loss difference of ~1e-2 gives ~1e-5 of
an Adam step per iteration. So: 1e-6 after the first step, whose Adam step is ±lr whatever ĝ's size (observed
≤ 6e-8 with 4 devices), and 1e-4 after several (observed ≤ 1.5e-5 after 5 iterations on 2 processes). The
configs use σ = 0.5: at the default σ = 0.05 on the ln 10 plateau the loss differences are ~1e-3 and the same
rounding reaches ~1e-4 within a few steps. A real sharding error (a member lost or counted twice, a wrong
gradient scale, another member's episode) changes ĝ at order one, i.e. V_M by a good part of the Adam step
lr = 0.025: far above both.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.meta.sharded_steps import sharded_results
from tests.run.test_trainer import TINY
from vsml.meta.parallel import with_cpu_devices
from vsml.run.checkpoint import latest_checkpoint, load_checkpoint
from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import MetaTrainer, read_metrics

pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]
FIRST_STEP_TOLERANCE = 1e-6
SEVERAL_STEPS_TOLERANCE = 1e-4


def test_with_cpu_devices_replaces_only_the_device_count():
    flags = "--xla_backend_optimization_level=1 --xla_force_host_platform_device_count=2"
    assert (
        with_cpu_devices(flags, 4)
        == "--xla_backend_optimization_level=1 --xla_force_host_platform_device_count=4"
    )
    assert with_cpu_devices("", 3) == "--xla_force_host_platform_device_count=3"


def subprocess_env(devices: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    # The suite's own XLA flags (conftest.py) too, so both sides compile alike.
    env["XLA_FLAGS"] = with_cpu_devices(os.environ.get("XLA_FLAGS", ""), devices)
    return env


def assert_close_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray], tolerance: float) -> None:
    """Equal names, and every array within `tolerance` × its largest entry."""
    assert sorted(a) == sorted(b)
    for name in a:
        scale = max(float(np.max(np.abs(a[name]))), 1e-30)
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=tolerance * scale, err_msg=name)


def test_four_devices_give_the_single_device_steps(tmp_path):
    """(a) ES through the trainer (a heterogeneous population, one slice padded), CMA-ES and a meta-batch
    gradient on 4 forced CPU devices against the same on one."""
    out = tmp_path / "sharded.npz"
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "meta" / "sharded_steps.py"), str(out)],
        env=subprocess_env(4),
        cwd=REPO,
        check=True,
        timeout=300,
    )
    sharded = dict(np.load(out))
    assert int(sharded.pop("devices")) == 4
    single = sharded_results()
    assert int(single.pop("devices")) == 1
    assert_close_arrays(single, sharded, FIRST_STEP_TOLERANCE)  # two steps: the second barely moves it


# ----- two processes on 127.0.0.1 ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_process_config() -> dict:
    data = json.loads(json.dumps(TINY))
    data["es"] = {"num_pairs": 3, "sigma": 0.5}  # 6 members: 3 on each process
    # Far more iterations than the test lets it run, no evaluation: it is killed after its third checkpoint.
    data["train"] = {"iterations": 1000, "checkpoint_every": 1}
    data["eval"]["every"] = 1000
    return data


def state_arrays(meta, opt_state) -> dict[str, np.ndarray]:
    """V_M and the Adam state (count, first and second moments), by leaf index."""
    return {str(index): np.asarray(leaf) for index, leaf in enumerate(jax.tree.leaves((meta, opt_state)))}


def test_two_processes_give_one_process_result_and_resume_on_one(tmp_path):
    """(b) `vsml meta-train --coordinator … --num-processes 2 --process-id I`, one CPU device each, equals one
    process; (c) killed mid-run, it resumes with one process and continues as the uninterrupted run does."""
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(json.dumps(two_process_config()))  # JSON is YAML
    run_dir = tmp_path / "run"
    address = f"127.0.0.1:{free_port()}"
    logs = [tmp_path / f"process_{index}.log" for index in range(2)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vsml.cli.main",
                "--cpu-devices",
                "1",
                "meta-train",
                str(config_path),
                "--out",
                str(run_dir),
                "--no-progress",
                "--coordinator",
                address,
                "--num-processes",
                "2",
                "--process-id",
                str(index),
            ],
            env=subprocess_env(1),
            cwd=REPO,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for index, log in enumerate(logs)
    ]
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "ckpt_00000003.json").exists():
            for process, log in zip(processes, logs, strict=True):
                if process.poll() is not None:
                    pytest.fail(f"a process ended early ({process.returncode}):\n{log.read_text()}")
            assert time.monotonic() < deadline, "no third checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)  # mid-run: the next checkpoint may be half-written
            process.wait()
    killed_at = latest_checkpoint(run_dir)
    assert killed_at is not None
    step = int(killed_at.stem.split("_")[1])
    assert step >= 3

    config = experiment_from_dict(two_process_config())
    reference = MetaTrainer(config, tmp_path / "reference")  # one process, one device, never interrupted
    reference.run(iterations=1, progress=False)
    templates = {"meta": reference.meta, "opt_state": reference.opt_state}
    _, first, _ = load_checkpoint(run_dir / "ckpt_00000001.npz", templates)
    reference_first = state_arrays(reference.meta, reference.opt_state)
    assert_close_arrays(
        reference_first, state_arrays(first["meta"], first["opt_state"]), FIRST_STEP_TOLERANCE
    )
    reference.run(iterations=step - 1, progress=False)
    resumed = MetaTrainer(config, run_dir, resume=True)  # one process now
    assert resumed.iteration == step
    reference_state = state_arrays(reference.meta, reference.opt_state)
    assert_close_arrays(
        reference_state, state_arrays(resumed.meta, resumed.opt_state), SEVERAL_STEPS_TOLERANCE
    )

    reference.run(iterations=2, progress=False)
    resumed.run(iterations=2, progress=False)
    reference_state = state_arrays(reference.meta, reference.opt_state)
    assert_close_arrays(
        reference_state, state_arrays(resumed.meta, resumed.opt_state), SEVERAL_STEPS_TOLERANCE
    )
    # Only process 0 wrote the log, and the records after the checkpoint were dropped on resume.
    assert [r["iteration"] for r in read_metrics(run_dir)] == list(range(1, step + 3))
    np.testing.assert_allclose(
        [r["loss"] for r in read_metrics(run_dir)],
        [r["loss"] for r in read_metrics(tmp_path / "reference")],
        rtol=1e-6,
    )


# ----- the command line --------------------------------------------------------------------------------------


def test_meta_train_lists_the_process_flags(capsys):
    from vsml.cli.main import main

    with pytest.raises(SystemExit):
        main(["meta-train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--coordinator HOST:PORT", "--num-processes N", "--process-id I", "--distributed"):
        assert flag in text
    assert "$VSML_COORDINATOR" in text and "SLURM" in text


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--coordinator", "10.0.0.1"], {}, "HOST:PORT"),
        (["--num-processes", "2", "--process-id", "2"], {}, "--process-id must be in 0 … 1"),
        ([], {"VSML_NUM_PROCESSES": "2", "VSML_PROCESS_ID": "5"}, "--process-id must be in 0 … 1"),
        (["--num-processes", "0"], {}, "--num-processes must be >= 1"),
    ],
)
def test_bad_process_flags_are_clear_errors(arguments, environment, message, tmp_path, monkeypatch, capsys):
    """Checked before jax.distributed starts (which this already-started pytest process could not do)."""
    from vsml.cli.main import main

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    argv = ["--cpu-devices", "1", "meta-train", "unused.yaml", "--out", str(tmp_path), *arguments]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_malformed_process_variable_breaks_only_meta_train(monkeypatch, tmp_path, capsys):
    """$VSML_NUM_PROCESSES is parsed only by the subcommand that uses it, with an error that names it."""
    from vsml.cli.main import main

    monkeypatch.setenv("VSML_NUM_PROCESSES", "two")
    with pytest.raises(SystemExit) as raised:
        main(["--cpu-devices", "1", "meta-train", "unused.yaml", "--out", str(tmp_path)])
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "$VSML_NUM_PROCESSES" in error and "'two'" in error
    assert main(["list-pretrained"]) == 0
