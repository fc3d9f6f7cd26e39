"""Issue 9's GPU measurements in one prepared call: every benchmark that needs a GPU, within a time budget.

A GPU is lent to a session rarely and briefly (the `device` tool: ~15 minutes in all, a few of them spent
starting the machine), so this script runs the plan in one command, most important first, each benchmark in its
own process with a time limit, and skips a step that no longer fits the budget (less than half its limit left)
or whose prerequisite failed. After every step it rewrites one JSON file (atomically: a call cut short still
returns what finished), `$OUT/gpu_suite.json` or `--out`: {"gpu", "budget_s", "dataset", "steps": [{name,
command, seconds, returncode, result (the benchmark's JSON) or error with the ends of stdout and stderr}]}.

The plan (the first figures ever taken on a GPU; spec vsml.md §7 puts the floor at ~0.6 s per ES iteration of
1,024 pairs on an H100, the issue's target is ≤ 1 s):
  kernel_tests     tests/learners/vsml/test_pallas.py, which on a GPU runs the compiled Triton kernel (not the
                   interpreter) against the XLA form;
  pallas_kernel    the kernel against the XLA form on 2,048 episodes of 784 × 10: does it compile, agree, pay?
                   (tiles 32x4 64x4 64x8 128x8; float32, tf32x3 and tf32 products);
  es_xla           seconds per ES iteration, Fig. 6 config, 1,024 pairs, T = 500, all members at once;
  es_pallas        the same with the kernel, then es_pallas_tf32 / _tf32x3 with one / three TF32 products;
  inner_loop       reference against the fast path (and the kernel) at 256 episodes;
  scale            784 → 128 → 10 (101k synapses) learning MNIST online, examples/s; scale_pallas with the kernel;
  es_xla_tf32      XLA with TF32 products (the baseline of es_pallas_tf32);
  bptt_memory      peak memory and time of a gradient meta-step at T = 100 and 500;
  blur_step        BLUR's step at 512 hidden units against plain SGD.

On the device machine the code runs under that image's python3 and JAX, from this source tree (PYTHONPATH). The
ES and scale steps need MNIST (`--dataset mnist`, the default; the suite stops before starting if it is missing,
rather than time the 64-input digits): `$VSML_DATA`, or `.gpu_data/` in the tree — carry it: `mkdir -p
.gpu_data && cp -r ../shared/datasets/mnist .gpu_data/`, then `run(..., carry=[".gpu_data"])`. `--dataset
digits` runs them on scikit-learn's digits instead.

    python3 benchmarks/gpu_suite.py [--budget 480] [--only pallas_kernel,es_xla] [--dataset mnist]
        [--out FILE] [--dry-run]
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
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Step(NamedTuple):
    name: str
    limit_s: int  # its own time limit; not started with less than half of it left in the budget
    args: list[str]  # after the interpreter; "{dataset}" is replaced by --dataset
    needs: tuple[str, ...] = ()  # skipped unless these succeeded (those of them in the plan)


# One timed call after the warm-up (a dedicated GPU is not the shared CPU VM) leaves time for the other steps.
ES = ["benchmarks/es_iteration.py", "--pairs", "1024", "--length", "500", "--repeats", "1"]
ES += ["--members-at-once", "all", "--dataset", "{dataset}"]
SCALE = ["benchmarks/scale.py", "--steps", "2000", "--test-examples", "2000", "--dataset", "{dataset}"]
KERNEL, TF32 = "learner.dense_kernel=pallas", "learner.recurrent_matmul=tf32"
TF32X3 = "learner.recurrent_matmul=tf32x3"  # three TF32 products: tensor cores at about float32's accuracy
TESTS = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/learners/vsml/test_pallas.py"]
PLAN = [  # most important first
    Step("kernel_tests", 120, TESTS),
    Step("pallas_kernel", 180, ["benchmarks/pallas_kernel.py"]),
    Step("es_xla", 150, ES),
    Step("es_pallas", 150, [*ES, "--set", KERNEL], needs=("kernel_tests",)),
    Step("es_pallas_tf32", 120, [*ES, "--set", KERNEL, "--set", TF32], needs=("es_pallas",)),
    Step("es_pallas_tf32x3", 120, [*ES, "--set", KERNEL, "--set", TF32X3], needs=("es_pallas",)),
    Step("inner_loop", 120, ["benchmarks/inner_loop.py", "--episodes", "256", "--repeats", "3"]),
    Step("scale", 90, SCALE),
    Step("scale_pallas", 90, [*SCALE, "--dense-kernel", "pallas"], needs=("kernel_tests",)),
    Step("es_xla_tf32", 120, [*ES, "--set", TF32]),
    Step("bptt_memory", 120, ["benchmarks/bptt_memory.py"]),
    Step("blur_step", 60, ["benchmarks/blur_step.py"]),
]
PLAIN_OUTPUT_STEPS = ("kernel_tests",)  # print no JSON: recorded by return code and output


def environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "benchmarks"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if not env.get("VSML_DATA") and (ROOT / ".gpu_data").is_dir():
        env["VSML_DATA"] = str(ROOT / ".gpu_data")
    env["PYTHONUNBUFFERED"] = "1"  # a step killed at its limit still leaves what it printed
    return env


def mnist_problem(env: dict[str, str]) -> str | None:
    """Why the ES and scale steps could not load MNIST here, or None."""
    sys.path.insert(0, str(ROOT / "src"))
    from vsml.tasks.datasets import resolve_data_dir

    try:
        folder = resolve_data_dir(env.get("VSML_DATA") or None)
    except OSError as error:
        return str(error)
    return None if (folder / "mnist").is_dir() else f"no mnist/ folder in {folder}"


def write_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=1)
    os.replace(f.name, path)


def parse_json(stdout: str) -> dict | None:
    """A benchmark's JSON: its whole stdout, or (bptt_memory prints one line per length before its summary of
    all of them) its last line."""
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
        record |= {"returncode": None, "error": f"timed out after {limit:.0f} s"}
        record |= {"stdout": _tail(expired.stdout), "stderr": _tail(expired.stderr)}
    else:
        record["returncode"] = done.returncode
        result = parse_json(done.stdout) if done.returncode == 0 else None
        if result is not None:
            record["result"] = result
        elif done.returncode == 0 and name in PLAIN_OUTPUT_STEPS:
            record["result"] = {"output": _tail(done.stdout)}
        else:
            record |= {"error": "failed or printed no JSON"}
            record |= {"stdout": _tail(done.stdout), "stderr": _tail(done.stderr)}
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


def why_skip(step: Step, left: float, report: dict, planned: set[str]) -> str | None:
    if left < step.limit_s / 2:
        return f"{left:.0f} s of the budget left, under half its limit of {step.limit_s} s"
    succeeded = {s["name"] for s in report["steps"] if "result" in s}
    missing = [n for n in step.needs if n in planned and n not in succeeded]
    return f"{', '.join(missing)} did not succeed" if missing else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480, help="seconds for all steps together")
    parser.add_argument("--only", default=None, help="comma-separated step names (default: the whole plan)")
    parser.add_argument(
        "--dataset", default="mnist", help="of the ES and scale steps (digits: no MNIST needed)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT/gpu_suite.json")
    parser.add_argument("--dry-run", action="store_true", help="print the plan's commands, run nothing")
    args = parser.parse_args()
    names = [step.name for step in PLAN]
    chosen = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; the plan has {names}")
    plan = [
        step._replace(args=[a.replace("{dataset}", args.dataset) for a in step.args])
        for step in PLAN
        if step.name in chosen
    ]
    if args.dry_run:
        for step in plan:
            print(f"{step.name} (≤ {step.limit_s} s): {shlex.join([sys.executable, *step.args])}")
        return
    out = args.out or Path(os.environ.get("OUT", ".")) / "gpu_suite.json"

    env = environment()
    needs_data = any("{dataset}" in a for step in PLAN if step.name in chosen for a in step.args)
    if args.dataset == "mnist" and needs_data and (problem := mnist_problem(env)):
        raise SystemExit(
            f"MNIST is not here ({problem}); carry .gpu_data/ (see --help) or pass --dataset digits"
        )
    report: dict = {"gpu": gpu_description(), "budget_s": args.budget, "dataset": args.dataset}
    report |= {"vsml_data": env.get("VSML_DATA"), "steps": []}
    deadline = time.perf_counter() + args.budget
    for step in plan:
        reason = why_skip(step, deadline - time.perf_counter(), report, {s.name for s in plan})
        if reason:
            report["steps"].append({"name": step.name, "skipped": reason})
            print(f"{step.name}: skipped ({reason})", flush=True)
            continue
        record = run_step(step.name, min(step.limit_s, deadline - time.perf_counter()), step.args, env)
        report["steps"].append(record)
        write_atomically(out, report)
        status = "ok" if "result" in record else record.get("error")
        print(f"{step.name}: {status} in {record['seconds']:.0f} s", flush=True)
    write_atomically(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
