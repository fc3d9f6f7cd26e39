"""Issue 9's GPU measurements in one prepared call: every benchmark that needs a GPU, within a time budget.

A GPU is lent to a session rarely and briefly (the `device` tool: ~15 minutes in all, a few of them spent
starting the machine), so this script runs the plan in one command, most important first, each benchmark in its
own process with a time limit, and skips what no longer fits the budget. After every step it rewrites one JSON
file (atomically: a timed-out call still returns what finished), `$OUT/gpu_suite.json` or `--out`:
{"steps": [{name, command, seconds, returncode, result (the benchmark's JSON) or error (its stderr's end)}]}.

The plan (the first figures ever taken on a GPU; spec vsml.md §7 puts the floor at ~0.6 s per ES iteration of
1,024 pairs on an H100, the issue's target is ≤ 1 s):
  0. kernel_tests: tests/learners/test_vsml_pallas.py, which on a GPU runs the compiled Triton kernel (not the
     interpreter) against the XLA form;
  1. pallas_kernel: the fused kernel against the XLA form, 2,048 episodes of 784 × 10 (does the kernel compile,
     agree and pay?), rows per program 32/64/128, float32 and tf32 products, rational and exact tanh;
  2. es_xla / es_pallas: seconds per ES iteration, Fig. 6 config, 1,024 pairs, T = 500, all members at once;
  3. es_pallas_tf32: the same with TF32 recurrent products;
  4. inner_loop: reference against the fast path (and the kernel) at 256 episodes;
  5. scale / scale_pallas: 784 → 128 → 10 (101k synapses) learning MNIST online, examples/s, without and
     with the kernel;
  6. bptt_memory: peak memory and time of a gradient meta-step at T = 100 and 500;
  7. blur_step: BLUR's step at 512 hidden units against plain SGD.

On the device machine the code runs under that image's python3 and JAX, from this source tree (PYTHONPATH); its
data are `$VSML_DATA`, or `.gpu_data/` in the tree if there is one (carry it: `mkdir -p .gpu_data && cp -r
../shared/datasets/mnist .gpu_data/`, then `run(..., carry=[".gpu_data"])`), else the benchmarks fall back to
scikit-learn's digits and say so in their JSON.

    python3 benchmarks/gpu_suite.py [--budget 540] [--only pallas_kernel,es_xla] [--out FILE] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ES = ["benchmarks/es_iteration.py", "--pairs", "1024", "--length", "500", "--repeats", "2"]
ES += ["--members-at-once", "all"]
# (name, time limit in s, arguments after the interpreter), most important first. Steps that print no JSON
# (kernel_tests) are recorded by their return code and the end of their output.
PLAN: list[tuple[str, int, list[str]]] = [
    (
        "kernel_tests",
        120,
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/learners/test_vsml_pallas.py"],
    ),
    ("pallas_kernel", 120, ["benchmarks/pallas_kernel.py", "--exact-tanh", "--repeats", "20"]),
    ("es_xla", 150, ES),
    ("es_pallas", 150, [*ES, "--set", "learner.dense_kernel=pallas"]),
    (
        "es_pallas_tf32",
        120,
        [*ES, "--set", "learner.dense_kernel=pallas", "--set", "learner.recurrent_matmul=tf32"],
    ),
    ("inner_loop", 120, ["benchmarks/inner_loop.py", "--episodes", "256", "--repeats", "3"]),
    ("scale", 90, ["benchmarks/scale.py", "--steps", "2000", "--test-examples", "2000"]),
    (
        "scale_pallas",
        90,
        ["benchmarks/scale.py", "--steps", "2000", "--test-examples", "2000"] + ["--dense-kernel", "pallas"],
    ),
    ("bptt_memory", 120, ["benchmarks/bptt_memory.py"]),
    ("blur_step", 60, ["benchmarks/blur_step.py"]),
]
PLAIN_OUTPUT_STEPS = ("kernel_tests",)
MIN_STEP_SECONDS = 30  # a step with less time left than this is skipped, not started


def environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "benchmarks"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if not env.get("VSML_DATA") and (ROOT / ".gpu_data").is_dir():
        env["VSML_DATA"] = str(ROOT / ".gpu_data")
    return env


def write_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=1)
    os.replace(f.name, path)


def parse_json(stdout: str) -> dict | None:
    """A benchmark's JSON: its whole stdout, or (bptt_memory prints one line per length) its last line."""
    for text in (stdout, stdout.strip().splitlines()[-1] if stdout.strip() else ""):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            continue
    return None


def run_step(name: str, limit: float, args: list[str], env: dict[str, str]) -> dict:
    command = [sys.executable, *args]
    start = time.perf_counter()
    record: dict = {"name": name, "command": shlex.join(command), "limit_s": round(limit)}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as expired:
        record |= {
            "returncode": None,
            "error": f"timed out after {limit:.0f} s",
            "stderr": _tail(expired.stderr),
        }
    else:
        record["returncode"] = done.returncode
        result = parse_json(done.stdout) if done.returncode == 0 else None
        if result is not None:
            record["result"] = result
        elif done.returncode == 0 and name in PLAIN_OUTPUT_STEPS:
            record["result"] = {"output": _tail(done.stdout)}
        else:
            record |= {
                "error": "failed or printed no JSON",
                "stdout": _tail(done.stdout),
                "stderr": _tail(done.stderr),
            }
    record["seconds"] = time.perf_counter() - start
    return record


def _tail(text: str | bytes | None, chars: int = 3000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-chars:]


def gpu_description() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,clocks.max.sm,driver_version", "--format=csv"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return f"nvidia-smi: {error}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=540, help="seconds for all steps together")
    parser.add_argument("--only", default=None, help="comma-separated step names (default: the whole plan)")
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT/gpu_suite.json")
    parser.add_argument("--dry-run", action="store_true", help="print the plan's commands, run nothing")
    args = parser.parse_args()
    names = [n for n, _, _ in PLAN]
    chosen = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; the plan has {names}")
    plan = [step for step in PLAN if step[0] in chosen]
    if args.dry_run:
        for name, limit, step_args in plan:
            print(f"{name} (≤ {limit} s): {shlex.join([sys.executable, *step_args])}")
        return
    out = args.out or Path(os.environ.get("OUT", ".")) / "gpu_suite.json"

    env = environment()
    report: dict = {
        "gpu": gpu_description(),
        "budget_s": args.budget,
        "vsml_data": env.get("VSML_DATA"),
        "steps": [],
    }
    deadline = time.perf_counter() + args.budget
    for name, limit, step_args in plan:
        left = deadline - time.perf_counter()
        if left < MIN_STEP_SECONDS:
            report["steps"].append({"name": name, "skipped": f"{left:.0f} s of the budget left"})
            continue
        if name == "es_pallas_tf32" and not _succeeded(report, "es_pallas"):
            report["steps"].append({"name": name, "skipped": "es_pallas did not succeed"})
            continue
        record = run_step(name, min(limit, left), step_args, env)
        report["steps"].append(record)
        write_atomically(out, report)
        status = "ok" if "result" in record else record.get("error")
        print(f"{name}: {status} in {record['seconds']:.0f} s", flush=True)
    write_atomically(out, report)
    print(f"wrote {out}")


def _succeeded(report: dict, name: str) -> bool:
    return any(step["name"] == name and "result" in step for step in report["steps"])


if __name__ == "__main__":
    main()
