"""A dense VSML layer's micro ticks: the fused Pallas kernel against the XLA form, in the same run.

For E episodes (vmapped, as the ES trainer runs its population on a GPU) of one A × B dense layer (default
784 × 10, the Fig. 6 layer), times the micro ticks alone and the sum of the new h over the inputs a that the
forward message takes: the XLA form (`vsml.dense_micro_ticks`, then a sum) against
`vsml_pallas.fused_dense_micro_ticks` at each kernel setting asked for (rows per program, warps, recurrent
precision, rational or exact tanh). Every variant is checked against the XLA form first (float32 to 1e-5; tf32
and bf16 products to 2e-2, their own precision) and the script refuses to time one that disagrees. The calls of
all variants are interleaved (best of R rounds each). Prints JSON: per variant seconds, synapse-micro-ticks/s,
the state bandwidth it implies (h, c read and written once per call: 4·A·B·H·4 bytes per episode), and the
XLA form's time over the variant's. Absolute figures depend on the machine; the ratios are the numbers to
compare.

The kernel is written for GPUs (Triton). Elsewhere it only runs in Pallas' interpreter, which is slow and says
nothing about speed: the script refuses to run off a GPU unless `--interpret` (used by the smoke test).

    python benchmarks/pallas_kernel.py [--episodes 2048] [--inputs 784] [--outputs 10] [--ticks 2]
        [--block-rows 32,64,128] [--warps 2,4,8] [--matmuls float32,tf32] [--repeats 20] [--interpret]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json

import jax
import jax.numpy as jnp
from timing import best_times, machine_fields

from vsml.learners.modules import fast_tanh
from vsml.learners.vsml import dense_micro_ticks
from vsml.learners.vsml_pallas import KernelSettings, fused_dense_micro_ticks, recurrent_product

H = 16
# max abs difference of h, c (|c| ~ 1) and of the sums over A inputs, relative to max(1, their largest value)
TOLERANCE = {"float32": 1e-5, "tf32": 2e-2, "bfloat16": 2e-2}


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


def xla_form(ticks: int, rational: bool, matmul: str):
    """The XLA path's micro ticks and the sum over inputs a that its forward message then takes (the kernel
    returns both)."""

    def form(*layer: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        h, c = dense_micro_ticks(
            *layer,
            num_micro_ticks=ticks,
            tanh=fast_tanh if rational else jnp.tanh,
            recurrent=functools.partial(recurrent_product, matmul),
        )
        return h, c, jnp.sum(h, axis=0)

    return form


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2048, help="E, vmapped (ES at 1,024 pairs: 2,048)")
    parser.add_argument("--inputs", type=int, default=784, help="A")
    parser.add_argument("--outputs", type=int, default=10, help="B")
    parser.add_argument("--ticks", type=int, default=2, help="micro ticks per call")
    parser.add_argument("--block-rows", type=integers, default=[32, 64, 128], help="comma-separated")
    parser.add_argument("--warps", type=integers, default=[4], help="comma-separated")
    parser.add_argument("--matmuls", type=names, default=["float32", "tf32"], help="comma-separated")
    parser.add_argument(
        "--exact-tanh", action="store_true", help="also time jnp.tanh instead of the rational one"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--interpret", action="store_true", help="run off a GPU in Pallas' interpreter (tests)"
    )
    args = parser.parse_args()
    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not args.interpret:
        raise SystemExit(
            f"the Pallas kernel is a GPU kernel; JAX's backend here is {jax.default_backend()!r}. "
            "Run on a GPU, or pass --interpret (Pallas' interpreter: for checking the script, not for timing)."
        )

    E, A, B, T = args.episodes, args.inputs, args.outputs, args.ticks
    layers = random_layers(E, A, B)
    tanhs = (True, False) if args.exact_tanh else (True,)
    variants, forms = {}, {}
    for matmul, rational in itertools.product(args.matmuls, tanhs):
        tag = f"{matmul}{'' if rational else '_exact_tanh'}"
        forms[tag] = jax.jit(jax.vmap(xla_form(T, rational, matmul)))
        variants[f"xla_{tag}"] = (tag, forms[tag])
        for rows, warps in itertools.product(args.block_rows, args.warps):
            settings = KernelSettings(T, rational, matmul, rows, warps, interpret=not on_gpu)
            kernel = jax.jit(jax.vmap(lambda *a, s=settings: fused_dense_micro_ticks(*a, s)))
            variants[f"pallas_{tag}_rows{rows}_warps{warps}"] = (tag, kernel)

    reference = {tag: form(*layers) for tag, form in forms.items()}
    differences = {}
    for name, (tag, fn) in variants.items():
        got, want = fn(*layers), reference[tag]
        differences[name] = max(
            float(jnp.max(jnp.abs(g - w))) / max(1.0, float(jnp.max(jnp.abs(w))))
            for g, w in zip(got, want, strict=True)
        )
        if not differences[name] <= TOLERANCE[tag.split("_")[0]]:  # NaN fails too
            raise SystemExit(f"{name} differs from the XLA form by {differences[name]}: refusing to time")

    seconds = best_times({n: functools.partial(fn, *layers) for n, (_, fn) in variants.items()}, args.repeats)
    work = E * A * B * T  # sub-RNN applications per call
    state_bytes = 4 * E * A * B * H * 4  # h and c, read and written once
    print(
        json.dumps(
            {
                "benchmark": "pallas_dense_micro_ticks",
                "episodes": E,
                "layer": [A, B],
                "micro_ticks": T,
                "interpreted": not on_gpu,
                "seconds": seconds,
                "synapse_micro_ticks_per_s": {n: work / t for n, t in seconds.items()},
                "state_gb_per_s": {n: state_bytes / t / 1e9 for n, t in seconds.items()},
                "xla_over_variant_time": {
                    n: seconds[f"xla_{tag}"] / seconds[n] for n, (tag, _) in variants.items()
                },
                "max_abs_difference_from_xla": differences,
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
