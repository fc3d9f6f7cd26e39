"""Shared test settings: strict numerics (STYLE.md §7) and a key fixture."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config: pytest.Config) -> None:
    """The suite compiles hundreds of small XLA programs and runs most of them briefly. With LLVM at -O1 instead of
    XLA:CPU's default -O3 they compile 1.5-2x faster; the optimised HLO, fusion included, is the same (checked:
    identical dumps) and only the machine code differs. -O0 compiled faster still but moved float32 results past a
    test's tolerance (tests/evaluation/test_introspect.py: a Hessian's rounding asymmetry grew from 4e-8 to 1.2e-4);
    -O1 gave the same numbers as the default there, though not bit-identical ones everywhere (`make demo`'s 450 ES
    iterations ended at 0.629 online accuracy instead of 0.645). Set before JAX starts its backend (collection has
    not begun) and inherited by the CLI and benchmark subprocesses. Not for the slow reproduction runs (`-m slow`),
    whose thresholds were measured at XLA's default, nor when $XLA_FLAGS names a level; users' runs keep the
    default."""
    if DATASETS_DIR.is_dir():  # the data folder for the library and CLI subprocesses (DATASETS_DIR below)
        os.environ.setdefault("VSML_DATA", str(DATASETS_DIR))
    _share_compilations(config)
    flags, marks = os.environ.get("XLA_FLAGS", ""), config.getoption("markexpr", "")
    if "xla_backend_optimization_level" not in flags and not ("slow" in marks and "not slow" not in marks):
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=1".strip()
        # LLVM's expensive passes off as well: the whole suite 1,039 s of CPU instead of 1,107 (9:37 against
        # 9:54 wall, same tree, back to back on a fresh clone, 2026-12-07), every test passing as before.
        # XLA:CPU's elemental IR emitters instead of its newer MLIR fusion emitters: a tiny VSML meta-gradient
        # (tests/meta/test_grad.py) compiled in 1.3-1.5 s instead of 2.8-2.9 s, and `make test` took 7:08 wall
        # and 826 s of CPU instead of 9:54 and 1,148 s (another machine than the line above: an idle 2-core AMD
        # EPYC, 2026-12-07, both runs at -O1 without LLVM's expensive passes, the same tests passing;
        # /usr/bin/time -v make test, before and after this flag).
        speed_only = (("xla_llvm_disable_expensive_passes", "true"), ("xla_cpu_use_fusion_emitters", "false"))
        wanted = [f"--{name}={value}" for name, value in speed_only if name not in flags]
        os.environ["XLA_FLAGS"] += "".join(f" {flag}" for flag in _flags_xla_knows(wanted))
    # Start the backend now, with these flags: a CLI command a test runs in-process sets one XLA device per
    # core in $XLA_FLAGS (`--cpu-devices`), which would otherwise decide this process's device count if it ran
    # first (the benchmark smoke tests, run in-process, count members per device).
    jax.devices()


def _flags_xla_knows(flags: list[str]) -> list[str]:
    """Those of `flags` this jaxlib accepts. XLA aborts the process on an unknown flag in $XLA_FLAGS, and these
    speed-only flags come and go between releases; a probe (a Python that starts JAX's CPU backend, ~2 s) keeps
    the suite running on any jaxlib. One probe for all of them, one per flag only if that fails."""
    import subprocess
    import sys

    def accepted(candidates: list[str]) -> bool:
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {' '.join(candidates)}"}
        probe = [sys.executable, "-c", "import jax; jax.devices()"]
        try:
            return subprocess.run(probe, env=env, capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.SubprocessError):  # e.g. a timeout on a loaded machine: run without them
            return False

    if not flags or accepted(flags):
        return flags
    known = [flag for flag in flags if accepted([flag])]
    if len(known) < len(flags):
        dropped = " ".join(sorted(set(flags) - set(known)))
        print(f"tests/conftest.py: this jaxlib refused {dropped}; the suite runs without it", file=sys.stderr)
    return known


# Set by the process that created the run's compilation cache (the controller under pytest-xdist), which removes it.
_OWN_CACHE_DIR: str | None = None
_CACHE_SETTINGS = {  # every program, however small or quick to compile: the suite compiles many small ones again
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


def _share_compilations(config: pytest.Config) -> None:
    """One persistent compilation cache per test run, empty at its start and removed at its end, shared by the
    xdist workers and the CLI and benchmark subprocesses (through $JAX_COMPILATION_CACHE_DIR, which they inherit):
    they compile many of the same programs, and every module's `jax.clear_caches()` (below) would otherwise send
    the next module to the compiler again. A run's results never depend on an earlier run's files. Workers find
    the controller's folder in their environment; a folder the user names is used and kept. Entries are written
    without a lock: an entry read while another process writes it fails JAX's decompression, which warns and
    compiles again (checked by truncating entries), so a race costs time, never a wrong program."""
    global _OWN_CACHE_DIR
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        _OWN_CACHE_DIR = tempfile.mkdtemp(prefix="vsml-test-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE_DIR
        for name, value in _CACHE_SETTINGS.items():
            os.environ.setdefault(name, value)
    # jax read its environment when conftest imported it: the settings reach this process through its config.
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    for name in _CACHE_SETTINGS:
        if name in os.environ:
            value = os.environ[name]
            jax.config.update(name.lower(), float(value) if name.endswith("_SECS") else int(value))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE_DIR is not None:
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


# The golden vectors of the authors' code live in the repository (a copy of ../shared/spec/vectors).
VECTORS_DIR = Path(__file__).resolve().parent / "data" / "vectors"
# Real datasets: $VSML_DATA, else the workspace's ../shared/datasets next to the checkout. The suite exports it
# (pytest_configure) so that the library and the CLI subprocesses find the data without guessing where the
# source tree is.
DATASETS_DIR = Path(os.environ.get("VSML_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


@pytest.fixture(autouse=True)
def keep_xla_flags():
    """Undo what a test does to $XLA_FLAGS: the CLI, called in-process, adds one XLA device per core
    (`--cpu-devices`), which the benchmark and CLI subprocesses of later tests would otherwise inherit."""
    flags = os.environ.get("XLA_FLAGS")
    yield
    if flags is None:
        os.environ.pop("XLA_FLAGS", None)
    else:
        os.environ["XLA_FLAGS"] = flags


@pytest.fixture
def key() -> jax.Array:
    return jax.random.PRNGKey(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled XLA program after each test module. Each CPU executable holds its own memory
    mappings; the whole suite in one process reached ~50,000 of Linux's 65,530 (vm.max_map_count) by two
    thirds and then segfaulted inside the compiler. Tests only reuse compilations within a module."""
    yield
    jax.clear_caches()
    gc.collect()


def offset_problem() -> tuple[np.ndarray, np.ndarray]:
    """(X [1000, 2], y) of two informative features; + 1e8 leaves them nothing in float32 (its spacing there
    is 8): the estimator's and evaluate_arrays' standardisation must happen in float64, before the cast."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    return rng.normal(size=(1000, 2)) + 2.0 * y[:, None], y
