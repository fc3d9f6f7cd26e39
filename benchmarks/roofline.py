"""How close VSML's dense fast step comes to this machine's arithmetic limit, all measured in one run.

One synapse-micro-tick (one sub-RNN application) of the dense fast path (spec §7) needs the recurrent product
h·W_h (H·4H = 1,024 multiply-adds at H = 16) and 4H + H = 80 tanh (σ is a tanh there); the rest is O(H) adds.
The literal reference needs [u; v; h]·W (3 × 1,024), the two messengers (2·H·M = 256) and the same 80
nonlinearities (σ and tanh). Measured in this process:

  fma_peak     multiply-adds/s of a large float32 matmul (2048³, XLA's own): the practical arithmetic peak
  dot_rate     multiply-adds/s of the step's own product, [A·B, 16] × [16, 64] on the network's largest layer
               (each with one elementwise add to feed the next: a lower bound of the product's own rate)
  tanh_rate    fast_tanh values/s over a large array (the polynomial's elementwise throughput);
               exact_tanh_rate the same for jnp.tanh (the reference's nonlinearity)
  fast, reference   synapse-micro-ticks/s of the network (benchmarks/inner_loop.py's `fast_map` and reference)

and from them a floor per synapse-micro-tick, 1,024 / fma_peak + 80 / tanh_rate (the fast path's arithmetic at
the peak rates), the fraction of it reached (`fast_efficiency` = floor / measured time), and the speed-up that
the arithmetic allows if both ran at these peak rates (`speedup_bound_both_at_peak`, reference floor / fast
floor); the literal reference runs far below its floor (memory traffic, per-tick messages), so the measured
speed-up can exceed it. Dense networks only: the conv layer's recurrent product is per shared state entry, not
per application.

    python benchmarks/roofline.py [--networks dense,deep] [--episodes 8] [--steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
from inner_loop import Setup, bench_network, network
from timing import best_time, machine_fields

from vsml.learners.base import TaskSpec
from vsml.learners.modules import fast_tanh

NETWORKS = ("dense", "deep")
PEAK_SIZE = 2048  # the peak matmul: PEAK_SIZE³ multiply-adds
ELEMENTWISE_SIZE = 1 << 18  # values in the tanh-throughput loop (1 MB, within a core's L2)
NESTED = 8  # tanh applications per value and pass
LOOP = 10  # passes (products) per timed call, so one call's dispatch is negligible


def matmul_rate(a: jax.Array, b: jax.Array, repeats: int) -> float:
    """Multiply-adds/s of x @ b for x like `a`, LOOP products in a jitted loop; each product feeds the next, so
    XLA can neither hoist nor skip one (the time per row measured the same whatever slice of it is kept)."""
    rows, inner, cols = a.shape[0], a.shape[1], b.shape[1]

    def body(_, x):
        return x + 1e-6 * jnp.matmul(x, b, precision=jax.lax.Precision.HIGHEST)[:, :inner]

    fn = jax.jit(lambda x: jax.lax.fori_loop(0, LOOP, body, x))
    seconds = best_time(lambda: fn(a), repeats)
    return LOOP * rows * inner * cols / seconds


def elementwise_rate(fn, repeats: int) -> float:
    """Values/s of fn on ELEMENTWISE_SIZE float32 values, NESTED evaluations per value and pass (one fused
    loop that keeps them in registers: the arithmetic, not the memory, is timed), LOOP passes in a jitted loop."""
    x = jax.random.normal(jax.random.PRNGKey(0), (ELEMENTWISE_SIZE // 64, 64))

    def nested(y):  # independent evaluations (a chain of them would time the latency instead)
        return sum(fn(y + 0.01 * k) for k in range(NESTED))

    loop = jax.jit(lambda x: jax.lax.fori_loop(0, LOOP, lambda _, y: nested(y), x))
    return LOOP * NESTED * x.size / best_time(lambda: loop(x), repeats)


def roofline(name: str, args: argparse.Namespace, rates: dict[str, float]) -> dict:
    # One episode at a time (inner_loop's fast_map default); the kernel is not part of the CPU roofline.
    setup = Setup(
        episodes=args.episodes,
        steps=args.steps,
        classes=args.classes,
        image_side=args.image_side,
        episode_batch=1,
        repeats=args.repeats,
    )
    record = bench_network(name, setup)
    _, model, input_shape = network(name, args.image_side)
    H, M = model.state_size, model.msg_size
    largest = max(model.layer_plans(TaskSpec(input_shape, args.classes)), key=lambda p: p.state_shape[0])
    rows = largest.state_shape[0] * largest.state_shape[1]
    key = jax.random.PRNGKey(1)
    dot_rate = matmul_rate(
        jax.random.normal(key, (rows, H)), jax.random.normal(key, (H, 4 * H)), args.repeats
    )

    fast_fmas, nonlinear = H * 4 * H, 4 * H + H
    reference_fmas = 3 * H * 4 * H + 2 * H * M
    fast_floor = fast_fmas / rates["fma_peak"] + nonlinear / rates["tanh_rate"]
    reference_floor = reference_fmas / rates["fma_peak"] + nonlinear / rates["exact_tanh_rate"]
    measured = record["synapse_micro_ticks_per_s"]
    fast = measured["fast_map"]
    return {
        "network": record["network"],
        "largest_layer_synapses": rows,
        "dot_rate": dot_rate,
        "dot_fraction_of_peak": dot_rate / rates["fma_peak"],
        "fast_synapse_micro_ticks_per_s": fast,
        "reference_synapse_micro_ticks_per_s": measured["reference"],
        "fast_floor_ns": 1e9 * fast_floor,
        "fast_measured_ns": 1e9 / fast,
        "fast_efficiency": fast_floor * fast,
        "measured_speedup_over_reference": record["speedup_over_reference"]["fast_map"],
        "speedup_bound_both_at_peak": reference_floor / fast_floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="dense,deep", help=f"comma-separated, of {NETWORKS}")
    parser.add_argument("--image-side", type=int, default=28, help="inputs are side×side images (28: MNIST)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--peak-size", type=int, default=PEAK_SIZE, help="side of the peak matmul")
    args = parser.parse_args()
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f"unknown network(s) {unknown}; roofline covers the dense networks {NETWORKS}")

    square = jax.random.normal(jax.random.PRNGKey(0), (args.peak_size, args.peak_size))
    rates = {
        "fma_peak": matmul_rate(square, square, args.repeats),
        "tanh_rate": elementwise_rate(fast_tanh, args.repeats),
        "exact_tanh_rate": elementwise_rate(jnp.tanh, args.repeats),
    }
    print(
        json.dumps(
            {
                "benchmark": "vsml_roofline",
                **rates,
                "results": [roofline(n, args, rates) for n in names],
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
