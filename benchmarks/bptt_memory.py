"""Memory and time of one gradient meta-step (backprop through the unrolled inner loop, spec §3.2).

For T = 100 and 500, prints JSON with XLA's compiled memory analysis (temporary buffers = what backprop keeps
alive) without rematerialisation, with per-step rematerialisation (`remat: true`) and with blocks of ≈√T steps
checkpointed as well (`remat: k`), and the measured wall time of one meta-step of the last two. The no-remat
program is compiled, not run: at T = 500 it would not fit in this machine's memory. Each (T, policy) runs in
its own process, so each measured peak is its own.
Measured peak memory: on a GPU the device's `peak_bytes_in_use`; on a CPU the process's peak resident set
(`ru_maxrss`, which includes JAX itself and the compilers: an upper bound that only grows from row to row).

    python benchmarks/bptt_memory.py [--inputs 784] [--classes 10] [--episodes 4] [--lengths 100 500]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from functools import partial

import jax

from vsml.learners.vsml import VSML
from vsml.meta.problem import meta_batch_loss


def peak_memory_fields() -> dict[str, int]:
    """The measured peak so far: the device's allocator peak where it reports one (GPU), else the process's."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"device_peak_bytes": int(stats["peak_bytes_in_use"])}
    kilobytes = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {
        "process_peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 * kilobytes)
    }


POLICIES = ("no_remat", "remat", "block_remat")


def remat_setting(policy: str, length: int) -> bool | int:
    """`run_episode`'s remat argument for a policy: none, every step, or blocks of ≈√T steps as well."""
    return {"no_remat": False, "remat": True, "block_remat": max(2, round(math.sqrt(length)))}[policy]


def measure(args: argparse.Namespace, length: int, policy: str) -> dict:
    """One policy at one T, in this process: compiled memory, and (unless no_remat or --no-time) one timed
    meta-step and the measured peak."""
    model = VSML(layer_norm=True, feed_label=True)  # the backprop.yaml setting
    meta = model.init_meta(jax.random.PRNGKey(0))
    kx, ky = jax.random.split(jax.random.PRNGKey(length))
    xs = jax.random.normal(kx, (args.episodes, length, args.inputs))
    ys = jax.nn.one_hot(jax.random.randint(ky, (args.episodes, length), 0, args.classes), args.classes)
    keys = jax.random.split(jax.random.PRNGKey(1), args.episodes)
    remat = remat_setting(policy, length)
    # All episodes at once (episodes_at_once=None), as in the stored figures: the memory of the remat policies
    # is compared, not grad.episodes_at_once (whose "auto" runs 784 -> 10 episodes one at a time on a CPU).
    loss = partial(meta_batch_loss, model, "mean", remat, episodes_at_once=None)
    step = jax.jit(jax.value_and_grad(loss))
    start = time.perf_counter()
    compiled = step.lower(meta, xs, ys, keys).compile()
    row = {
        "policy": policy,
        "setting": remat,
        "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes),
        "compile_seconds": round(time.perf_counter() - start, 2),
    }
    if policy != "no_remat" and not args.no_time:
        start = time.perf_counter()  # compiled already: one call is one meta-step
        loss, _ = jax.block_until_ready(compiled(meta, xs, ys, keys))
        row["seconds_per_meta_step"] = round(time.perf_counter() - start, 3)
        row["loss"] = float(loss)
        row.update(peak_memory_fields())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=784)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=4, help="meta-batch size")
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--no-time", action="store_true", help="only the memory analysis")
    parser.add_argument("--one", nargs=2, metavar=("T", "POLICY"), help=argparse.SUPPRESS)  # a child's task
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args, int(args.one[0]), args.one[1])))
        return

    results = []
    for length in args.lengths:
        row = {"T": length, "episodes": args.episodes, "layer": f"dense {args.inputs}->{args.classes}"}
        for policy in POLICIES:  # each in its own process, so each peak is its own
            child = subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--one", str(length), policy],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if child.returncode:
                raise SystemExit(f"T={length} {policy} failed:\n{child.stderr[-3000:]}")
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            row.update({f"{policy}_{k}": v for k, v in measured.items() if k != "policy"})
        row["memory_ratio_no_remat_over_remat"] = row["no_remat_temp_bytes"] / max(1, row["remat_temp_bytes"])
        row["memory_ratio_remat_over_block_remat"] = row["remat_temp_bytes"] / max(
            1, row["block_remat_temp_bytes"]
        )
        row["carried_state_bytes_per_step"] = 2 * 4 * args.episodes * args.inputs * args.classes * 16
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"benchmark": "vsml_bptt_memory", "device": str(jax.devices()[0]), "results": results}))


if __name__ == "__main__":
    main()
