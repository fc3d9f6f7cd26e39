"""Installed is the same as checked out (STYLE.md §17, issue 23): `pip install .` into a bare folder, then from
another folder `vsml reproduce --list` and `vsml meta-train <shipped config name>` work, with the configs and
recipes (and the meta-test suite) found as package data, not through the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(args: list[str], cwd: Path, site: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy only, not this checkout's src/
    env.pop("VSML_DATA", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_installed_package_runs_shipped_configs_from_another_folder(tmp_path):
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not available to this interpreter")
    source, site, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "elsewhere"
    # Built from a copy, so that pip's build files never land in the checkout.
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere.mkdir()

    where = _python(["-c", "import vsml; print(vsml.__file__)"], elsewhere, site)
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(site), where

    listed = _python(["-m", "vsml", "reproduce", "--list"], elsewhere, site)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "demo" in listed.stdout and "fig6" in listed.stdout

    # The shapes, and the one CPU device, of the tiny demo_digits run of tests/reproduce/test_reproduce_command.py:
    # the two share their compiled programs through the suite's compilation cache.
    tiny = [
        "train.iterations=1",
        "es.num_pairs=2",
        "task.episode_length=5",
        "eval.num_episodes=2",
        "eval.episode_length=5",
    ]
    sets = [word for setting in tiny for word in ("--set", setting)]
    command = ["-m", "vsml", "--cpu-devices", "1", "meta-train", "demo_digits", "--out", "run", "--quiet", *sets]
    trained = _python(command, elsewhere, site)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (elsewhere / "run" / "ckpt_00000001.json").is_file()
    assert "name: demo_digits" in (elsewhere / "run" / "config.yaml").read_text()

    # The meta-test suite ships too (vsml suite --suite general).
    suite = _python(
        ["-c", "from vsml.evaluation.suite import load_suite; print(len(load_suite('general').datasets))"],
        elsewhere,
        site,
    )
    assert suite.returncode == 0 and int(suite.stdout) >= 5, suite.stderr[-3000:]
