"""A dense VSML layer's micro ticks: the fused Pallas kernel against the XLA form, in the same run.

For E episodes (vmapped, as the ES trainer runs its population on a GPU) of one A × B dense layer (default
784 × 10, the Fig. 6 layer), times the micro ticks alone and the sum of the new h over the inputs a that the
forward message takes: the XLA form (`cell.dense_micro_ticks`, then a sum) against
`pallas.fused_dense_micro_ticks` at each kernel setting asked for (rows per program and warps, recurrent
precision, rational or exact tanh). Every variant is checked against the XLA form first (float32 to 1e-5,
three TF32 products to 1e-4, tf32 and bf16 products to 2e-2: their own precision); one that disagrees or fails
to compile is reported (on stderr at once, under "errors" in the JSON) and not timed, and the others go on. Each
variant is timed as C calls in a `fori_loop` carrying (h, c), as the inner loop runs it; the variants' calls are
interleaved (best of R rounds each). Prints JSON: per variant seconds per call, synapse-micro-ticks/s, the
state bandwidth it implies (h, c read and written once per call: 4·A·B·H·4 bytes per episode), and the XLA
form's time over the variant's. Absolute figures depend on the machine; the ratios are the numbers to compare.

The kernel is written for GPUs (Triton). Elsewhere it only runs in Pallas' interpreter, which is slow and says
nothing about speed: the script refuses to run off a GPU unless `--interpret` (used by the smoke test).

    python benchmarks/pallas_kernel.py [--episodes 2048] [--inputs 784] [--outputs 10] [--ticks 2]
        [--tiles 32x4,64x4,64x8,128x8] [--matmuls float32,tf32x3,tf32] [--exact-tanh] [--calls 10] [--repeats 10]
        [--interpret]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import sys

import jax
import jax.numpy as jnp
from timing import best_times, machine_fields

from vsml.learners.vsml.pallas import KernelSettings, fused_dense_micro_ticks, xla_dense_micro_ticks

H = 16
# max abs difference of h, c (|c| ~ 1) and of the sums over A inputs, relative to max(1, their largest value)
TOLERANCE = {"float32": 1e-5, "tf32x3": 1e-4, "tf32": 2e-2, "bfloat16": 2e-2}


def integers(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def random_layers(episodes: int, A: int, B: int) -> tuple[jax.Array, ...]:
    """(gate_u, gate_v, W_h, h, c) of E random layers, the scales of a trained VSML's (|z| ~ 1, |c| ~ 1)."""
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    return (
        jax.random.normal(k[0], (episodes, A, 4 * H)),
        jax.random.normal(k[1], (episodes, B, 4 * H)),
        0.3 * jax.random.normal(k[2], (episodes, H, 4 * H)),
        0.5 * jax.random.normal(k[3], (episodes, A, B, H)),
        jax.random.normal(k[4], (episodes, A, B, H)),
    )


def tiles(text: str) -> list[tuple[int, int]]:
    """--tiles 64x4,128x8: (rows per program, warps) pairs."""
    pairs = []
    for item in names(text):
        rows, _, warps = item.partition("x")
        try:
            pairs.append((int(rows), int(warps)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected ROWSxWARPS like 64x4, got {item!r}") from None
    return pairs


def looped(step, calls: int):
    """`calls` applications of `step` carrying (h, c), as the inner loop does (a scan carry: the kernel's in-place
    aliasing costs no copy there, while a lone jitted call would copy h and c to alias them); the sums over
    inputs are accumulated so they stay live."""

    def run(gate_u, gate_v, W_h, h, c):
        def body(_, carry):
            h, c, total = carry
            h, c, h_sum = step(gate_u, gate_v, W_h, h, c)
            return h, c, total + h_sum

        return jax.lax.fori_loop(0, calls, body, (h, c, jnp.zeros(h.shape[:-3] + h.shape[-2:], h.dtype)))

    return jax.jit(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2048, help="E, vmapped (ES at 1,024 pairs: 2,048)")
    parser.add_argument("--inputs", type=int, default=784, help="A")
    parser.add_argument("--outputs", type=int, default=10, help="B")
    parser.add_argument("--ticks", type=int, default=2, help="micro ticks per call")
    parser.add_argument(
        "--tiles",
        type=tiles,
        default=[(32, 4), (64, 4), (64, 8), (128, 8)],
        help="kernel (rows per program)x(warps) pairs, comma-separated (default 32x4,64x4,64x8,128x8: a review "
        "saw 128x4 and 64x2 spill registers in float32)",
    )
    parser.add_argument(
        "--matmuls",
        type=names,
        default=["float32", "tf32x3", "tf32"],
        help=f"comma-separated, of {list(TOLERANCE)}",
    )
    parser.add_argument(
        "--exact-tanh", action="store_true", help="also time jnp.tanh instead of the rational one"
    )
    parser.add_argument("--calls", type=int, default=10, help="calls per timed program (a fori_loop)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--interpret", action="store_true", help="run off a GPU in Pallas' interpreter (tests)"
    )
    args = parser.parse_args()
    if unknown := [m for m in args.matmuls if m not in TOLERANCE]:
        parser.error(f"unknown --matmuls {unknown}; choose from {list(TOLERANCE)}")
    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not args.interpret:
        raise SystemExit(
            f"the Pallas kernel is a GPU kernel; JAX's backend here is {jax.default_backend()!r}. "
            "Run on a GPU, or pass --interpret (Pallas' interpreter: for checking the script, not for timing)."
        )

    E, A, B, T = args.episodes, args.inputs, args.outputs, args.ticks
    layers = random_layers(E, A, B)
    tanhs = (True, False) if args.exact_tanh else (True,)
    steps = {}  # name: (tag of its XLA form, one vmapped call)
    for matmul, rational in itertools.product(args.matmuls, tanhs):
        tag = f"{matmul}{'' if rational else '_exact_tanh'}"
        xla_form = functools.partial(xla_dense_micro_ticks, KernelSettings(T, rational, matmul))
        steps[f"xla_{tag}"] = (tag, jax.vmap(xla_form))
        for rows, warps in args.tiles:
            settings = KernelSettings(T, rational, matmul, rows, warps, interpret=not on_gpu)
            kernel = jax.vmap(lambda *a, s=settings: fused_dense_micro_ticks(*a, s))
            steps[f"pallas_{tag}_rows{rows}_warps{warps}"] = (tag, kernel)

    # Check every variant (one call) against its XLA form; one that fails to compile or disagrees is recorded
    # and left out of the timing, and the others go on (progress on stderr, which a timed-out run keeps).
    reference = {tag: jax.jit(steps[f"xla_{tag}"][1])(*layers) for tag in {t for t, _ in steps.values()}}
    differences, errors, timed = {}, {}, {}
    for name, (tag, step) in steps.items():
        try:
            got = jax.jit(step)(*layers)
            difference = max(
                float(jnp.max(jnp.abs(g - w))) / max(1.0, float(jnp.max(jnp.abs(w))))
                for g, w in zip(got, reference[tag], strict=True)
            )
        except Exception as error:  # a kernel that Triton cannot compile must not lose the other figures
            errors[name] = f"{type(error).__name__}: {error}"[:1000]
            print(f"{name}: failed: {errors[name][:300]}", file=sys.stderr, flush=True)
            continue
        differences[name] = difference
        agrees = difference <= TOLERANCE[tag.split("_")[0]]  # NaN fails too
        print(
            f"{name}: {'agrees' if agrees else 'DISAGREES'}, max difference {difference:.3g}", file=sys.stderr
        )
        if agrees:
            timed[name] = (tag, looped(step, args.calls))
        else:
            errors[name] = (
                f"differs from the XLA form by {difference} (tolerance {TOLERANCE[tag.split('_')[0]]})"
            )

    programs = {n: functools.partial(fn, *layers) for n, (_, fn) in timed.items()}
    seconds = {n: t / args.calls for n, t in best_times(programs, args.repeats).items()}
    work = E * A * B * T  # sub-RNN applications per call
    state_bytes = 4 * E * A * B * H * 4  # h and c, read and written once
    print(
        json.dumps(
            {
                "benchmark": "pallas_dense_micro_ticks",
                "episodes": E,
                "layer": [A, B],
                "micro_ticks": T,
                "calls_per_program": args.calls,
                "interpreted": not on_gpu,
                "seconds": seconds,
                "synapse_micro_ticks_per_s": {n: work / t for n, t in seconds.items()},
                "state_gb_per_s": {n: state_bytes / t / 1e9 for n, t in seconds.items()},
                "xla_over_variant_time": {
                    n: seconds[f"xla_{tag}"] / seconds[n]
                    for n, (tag, _) in timed.items()
                    if f"xla_{tag}" in seconds
                },
                "max_abs_difference_from_xla": differences,
                "errors": errors,
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
