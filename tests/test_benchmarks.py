"""Smoke tests of the scripts in benchmarks/: each runs at a tiny size (in this process, as its `__main__`) and
prints JSON with finite numbers.

Nothing here asserts a speed (the machine is shared and noisy); these only keep the scripts running.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import jax
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TIMEOUT_S = 180  # the GPU plan runner (a subprocess): ~5-15 s on 2 idle cores, mostly compilation

# script: (tiny-size arguments, keys whose values must be finite and > 0, keys that must be finite and >= 0)
CASES = {
    "blur_step.py": (
        ["--steps", "2", "--repeats", "1", "--inputs", "16", "--hidden", "16", "--batch", "8"],
        ["blur_seconds", "sgd_seconds", "blur_steps_per_s", "sgd_steps_per_s", "blur_over_sgd_time"],
        ["check_backprop_genome_vs_sgd_max_abs_diff", "check_fast_vs_reference_max_abs_diff"],
    ),
    "es_iteration.py": (
        [
            "--pairs",
            "6",
            "--length",
            "3",
            "--repeats",
            "1",
            "--dataset",
            "digits",
            "--config",
            "configs/deep.yaml",
        ]
        # One population slice (deep.yaml has two): each compiled step is half the program, the keys the same.
        + ["--members-at-once", "1", "--compare", "all,auto", "--set", "population=[]"],
        [
            "noise_seconds",
            "episodes_seconds",
            "inner_loop_seconds",
            "update_seconds",
            "parts_seconds",
            "fused_seconds",
            "parts_over_fused_time",
            "iterations_per_s",
            "member_steps_per_s",
            "mean_loss_parts",
            "mean_loss_fused",
            "compare_over_fused_time",
            "all_at_once_over_fused_time",
        ],
        [],
    ),
    "inner_loop.py": (  # one record per network; nested dicts hold one number per variant
        ["--episodes", "2", "--steps", "2", "--image-side", "6", "--repeats", "1"],
        ["seconds", "synapse_micro_ticks_per_s", "speedup_over_reference", "us_per_episode_step"],
        ["max_abs_logit_difference"],
    ),
    "roofline.py": (  # rates, then one record per dense network
        ["--networks", "dense", "--episodes", "2", "--steps", "2", "--image-side", "6"]
        + ["--repeats", "1", "--peak-size", "64"],
        ["fma_peak", "tanh_rate", "exact_tanh_rate", "dot_rate", "fast_floor_ns", "fast_efficiency"],
        ["speedup_bound_both_at_peak"],
    ),
    "scale.py": (
        ["--steps", "50", "--dataset", "digits", "--hidden", "8", "--test-examples", "50"],
        ["vsml_examples_per_s", "backprop_examples_per_s", "vsml_synapse_micro_ticks_per_s", "synapses"],
        ["vsml_test_accuracy", "backprop_test_accuracy", "vsml_online_accuracy"],
    ),
    "pallas_kernel.py": (  # nested dicts hold one number per variant; the interpreter, as there is no GPU
        ["--episodes", "2", "--inputs", "20", "--outputs", "3", "--tiles", "16x4", "--matmuls", "float32"]
        + ["--calls", "2", "--repeats", "1", "--interpret"],
        ["seconds", "synapse_micro_ticks_per_s", "state_gb_per_s", "xla_over_variant_time"],
        ["max_abs_difference_from_xla"],
    ),
    "meta_gradient.py": (  # one record per network (without and with LayerNorm)
        ["--episodes", "2", "--length", "3", "--inputs", "16", "--repeats", "1"],
        ["autodiff_over_custom_vjp_time", "custom_vjp_over_forward_time", "autodiff_over_forward_time"],
        ["max_abs_gradient_difference"],
    ),
    "episodes_at_once.py": (  # one record per mode; nested dicts hold one number per count
        [
            "--inputs",
            "8",
            "--hidden",
            "4",
            "--episodes",
            "3",
            "--length",
            "2",
            "--choices",
            "1",
            "--repeats",
            "1",
        ],
        ["seconds", "auto_over_fastest_time"],
        [],
    ),
    "estimator_fit.py": (
        ["--examples", "20", "--repeats", "1"],
        ["first_fit_seconds", "fit_seconds", "fit_examples_per_s", "sgd_online_seconds", "fit_over_sgd_online_time"],
        ["held_out_accuracy"],
    ),
    "bptt_memory.py": (
        ["--no-time", "--lengths", "5", "--inputs", "16", "--episodes", "1"],
        [
            "remat_temp_bytes",
            "no_remat_temp_bytes",
            "block_remat_temp_bytes",
            "memory_ratio_no_remat_over_remat",
        ],
        [],
    ),
}


def run_in_process(script: str, args: list[str]) -> str:
    """What `python benchmarks/<script> <args>` prints, run in this process: the same `main` without a new
    interpreter and JAX start (~2.5 s of CPU each) and with the suite's compilation cache. From the checkout's
    root, as the scripts are documented; the suite's strict rank promotion is lifted, as a script run alone has
    JAX's default."""
    argv, path, cwd = sys.argv, list(sys.path), os.getcwd()
    output = io.StringIO()
    try:
        sys.argv, sys.path[:0] = [str(BENCHMARKS / script), *args], [str(BENCHMARKS)]
        os.chdir(BENCHMARKS.parent)
        with contextlib.redirect_stdout(output), jax.numpy_rank_promotion("allow"):
            runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
        os.chdir(cwd)
    return output.getvalue()


def run_benchmark(script: str, args: list[str]) -> dict:
    stdout = run_in_process(script, args)
    if (
        script == "bptt_memory.py"
    ):  # one JSON line per length, then the summary; check the row of the one length
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert summary["benchmark"] == "vsml_bptt_memory"
        (row,) = summary["results"]
        return row
    output = json.loads(stdout)
    if script == "inner_loop.py":  # every network's record must hold every number
        records = output["results"]
        assert [r["network"].split()[0] for r in records] == ["dense", "dense", "conv"]
        merged = {}  # per number, the smallest over networks and variants (NaN if any is not finite)
        for name in ("seconds", "synapse_micro_ticks_per_s", "speedup_over_reference", "us_per_episode_step",
                     "max_abs_logit_difference"):  # fmt: skip
            values = [v for record in records for v in record[name].values()]
            merged[name] = min(values) if all(math.isfinite(v) for v in values) else math.nan
        return merged
    if script == "roofline.py":  # the machine's rates, and the numbers of the one network's record
        records = output["results"]
        assert [r["network"].split()[0] for r in records] == ["dense"]
        return {k: v for k, v in output.items() if k != "results"} | {
            name: min(r[name] for r in records) for name in records[0] if name != "network"
        }
    if script == "meta_gradient.py":  # per number, the smallest over the two records
        records = output["results"]
        assert len(records) == 2 and all(
            set(r["seconds"]) == {"forward", "custom_vjp", "autodiff"} for r in records
        )
        return {
            name: min(r[name] for r in records) for name in records[0] if isinstance(records[0][name], float)
        }
    if script == "episodes_at_once.py":  # both modes, each timing 1 and all at once (auto: all, so tiny)
        records = output["results"]
        assert [r["sub_rnn_applications_per_micro_tick"] for r in records] == [8 * 4 + 4 * 10] * 2
        assert [(r["network"], r["mode"], set(r["seconds"]), r["auto"]) for r in records] == [
            ("dense 8->4->10", "forward", {"1", "all"}, "all"),
            ("dense 8->4->10, LayerNorm", "gradient", {"1", "all"}, "all"),
        ]
        return {
            "seconds": min(v for r in records for v in r["seconds"].values()),
            "auto_over_fastest_time": min(r["auto_over_fastest_time"] for r in records),
        }
    if script == "es_iteration.py":  # the compared settings: each one timed, and resolved on a device's share
        assert output["config"] == "configs/deep.yaml" and output["learner"]["hidden_sizes"] == [32]
        # 6 pairs in the one slice: 12 members on the one device; 64 -> 32 -> 10 is 2,368 applications, so
        # "auto" takes 4 at a time (16,384 // 2,368 = 6 -> 4).
        assert output["members_per_device_first_slice"] == 12 and output["members_at_once_resolved"] == 1
        compared = output["compare"]
        assert {k: v["members_at_once_resolved"] for k, v in compared.items()} == {"all": None, "auto": 4}
        output["compare_over_fused_time"] = min(v["over_fused_time"] for v in compared.values())
        return output
    if script == "pallas_kernel.py":  # per number, the smallest over the variants (NaN if any is not finite)
        assert output["interpreted"] and len(output["seconds"]) == 2  # the XLA form and one kernel setting
        assert output["errors"] == {}
        numbers = [k for k, v in output.items() if isinstance(v, dict) and k != "errors"]
        return {
            name: min(output[name].values()) if all(map(math.isfinite, output[name].values())) else math.nan
            for name in numbers
        }
    return output


@pytest.mark.parametrize("script", list(CASES))
def test_benchmark_prints_finite_json(script):
    args, positive, nonnegative = CASES[script]
    output = run_benchmark(script, args)
    for name in positive + nonnegative:
        assert name in output, f"{script}: no {name!r} in {sorted(output)}"
        value = output[name]
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{script}: {name} = {value!r}"
        assert value > 0 if name in positive else value >= 0, f"{script}: {name} = {value!r}"


def test_gpu_suite_records_each_step_and_keeps_going(tmp_path):
    """The GPU plan's runner off a GPU: the kernel benchmark refuses (no GPU) and the runner records that
    failure, its command and stderr in the JSON file instead of stopping; --dry-run lists the whole plan."""
    plan = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    steps = [line.split()[0] for line in plan.stdout.splitlines()]
    assert steps[:4] == ["kernel_tests", "pallas_kernel", "es_xla", "es_pallas"]
    out = tmp_path / "suite.json"
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--only", "pallas_kernel", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    (step,) = json.loads(out.read_text())["steps"]
    assert step["name"] == "pallas_kernel" and step["returncode"] == 1 and "result" not in step
    assert "GPU" in step["stderr"] and "pallas_kernel.py" in step["command"]


def test_device_scaling_times_a_config_on_each_layout():
    """device_scaling.py with --config and --set: each layout's processes load that config with the overrides
    (here: 2 forced CPU devices, members one at a time) and report finite iterations/s; --set alone is refused."""
    args = ["--layouts", "1x1,1x2", "--pairs", "2", "--length", "3", "--iterations", "1", "--rounds", "1"]
    args += ["--config", "configs/demo_digits.yaml", "--set", "es.members_at_once=1"]
    output = run_benchmark("device_scaling.py", args)
    records = output["layouts"].values()
    loaded = [(r["devices"], r["processes"], r["config_name"], r["members_at_once"]) for r in records]
    assert loaded == [(1, 1, "demo_digits", 1), (2, 1, "demo_digits", 1)]  # what the child processes loaded
    for record in output["layouts"].values():
        assert math.isfinite(record["iterations_per_s"]) and record["iterations_per_s"] > 0
        assert math.isfinite(record["last_loss"])
    refused = subprocess.run(
        [sys.executable, str(BENCHMARKS / "device_scaling.py"), "--set", "es.members_at_once=1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert refused.returncode == 2 and "--set changes a --config" in refused.stderr
