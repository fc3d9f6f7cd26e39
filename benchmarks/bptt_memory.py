"""Memory and time of one gradient meta-step (backprop through the unrolled inner loop, spec §3.2).

For T = 100 and 500, prints JSON with XLA's compiled memory analysis (temporary buffers = what backprop keeps
alive) with and without per-step rematerialisation, their ratio, and the measured wall time of one remat'ed
meta-step. The no-remat program is compiled, not run: at T = 500 it would not fit in this machine's memory.
Measured peak memory: on a GPU the device's `peak_bytes_in_use`; on a CPU the process's peak resident set
(`ru_maxrss`, which includes JAX itself and the compilers: an upper bound that only grows from row to row).

    python benchmarks/bptt_memory.py [--inputs 784] [--classes 10] [--episodes 4] [--lengths 100 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from functools import partial

import jax

from vsml.learners.vsml import VSML
from vsml.meta.grad import meta_batch_loss


def peak_memory_fields() -> dict[str, int]:
    """The measured peak so far: the device's allocator peak where it reports one (GPU), else the process's."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"device_peak_bytes": int(stats["peak_bytes_in_use"])}
    kilobytes = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {
        "process_peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 * kilobytes)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=784)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=4, help="meta-batch size")
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--no-time", action="store_true", help="only the memory analysis")
    args = parser.parse_args()

    model = VSML(layer_norm=True, feed_label=True)  # the backprop.yaml setting
    meta = model.init_meta(jax.random.PRNGKey(0))
    results = []
    for length in args.lengths:
        kx, ky = jax.random.split(jax.random.PRNGKey(length))
        xs = jax.random.normal(kx, (args.episodes, length, args.inputs))
        ys = jax.nn.one_hot(jax.random.randint(ky, (args.episodes, length), 0, args.classes), args.classes)
        keys = jax.random.split(jax.random.PRNGKey(1), args.episodes)
        row = {"T": length, "episodes": args.episodes, "layer": f"dense {args.inputs}->{args.classes}"}
        compiled = {}
        for remat in (True, False):
            step = jax.jit(jax.value_and_grad(partial(meta_batch_loss, model, "mean", remat)))
            start = time.perf_counter()
            compiled[remat] = step.lower(meta, xs, ys, keys).compile()
            memory = compiled[remat].memory_analysis()
            tag = "remat" if remat else "no_remat"
            row[f"{tag}_temp_bytes"] = int(memory.temp_size_in_bytes)
            row[f"{tag}_compile_seconds"] = round(time.perf_counter() - start, 2)
        row["memory_ratio_no_remat_over_remat"] = row["no_remat_temp_bytes"] / max(1, row["remat_temp_bytes"])
        row["carried_state_bytes_per_step"] = (
            2 * 4 * args.episodes * args.inputs * args.classes * model.state_size
        )
        if not args.no_time:
            jax.block_until_ready(compiled[True](meta, xs, ys, keys))  # warm-up
            start = time.perf_counter()
            loss, _ = jax.block_until_ready(compiled[True](meta, xs, ys, keys))
            row["remat_seconds_per_meta_step"] = round(time.perf_counter() - start, 3)
            row["loss"] = float(loss)
        row.update(peak_memory_fields())
        results.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"benchmark": "vsml_bptt_memory", "device": str(jax.devices()[0]), "results": results}))


if __name__ == "__main__":
    main()
