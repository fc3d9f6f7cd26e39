"""One meta-gradient of VSML (backprop through the unrolled inner loop): the hand-written VJP of the dense micro
ticks against JAX's autodiff of the same forward ops, in the same run.

The gradient meta-optimiser's step (`vsml.meta.problem.meta_batch_loss`, differentiated; per-step remat as
`grad.remat: true`; episodes one at a time as `grad.episodes_at_once: auto` picks on a CPU for these sizes, or
`--episodes-at-once`) on
N episodes of T steps of a dense 784 → 10 VSML (`feed_label`, with and without LayerNorm: the backprop.yaml
setting has it). Variants: `custom_vjp` (the learner as it is: `cell.dense_micro_ticks` with its VJP) and
`autodiff` (the same forward, `cell._ticks_with_residuals`, differentiated by JAX), plus the forward meta-loss
alone for scale. The two gradients are compared first (float32, 1e-4 relative) and the script refuses to time
them if they differ; calls are interleaved (best of R rounds each). Prints JSON: seconds per meta-gradient,
their ratio, and each over the forward. Absolute figures depend on the machine; the ratios are the numbers to
compare.

    python benchmarks/meta_gradient.py [--episodes 4] [--length 50] [--inputs 784] [--repeats 5]
        [--episodes-at-once 1|N|all]
"""

from __future__ import annotations

import argparse
import json
from unittest import mock

import jax
from timing import best_times, machine_fields, random_episodes, tree_difference

from vsml.learners.vsml import VSML
from vsml.learners.vsml import cell as vsml_cell
from vsml.learners.vsml.cell import _ticks_with_residuals
from vsml.meta.problem import meta_batch_loss

TOLERANCE = 1e-4  # relative to the largest gradient entry


def autodiff_micro_ticks(num_micro_ticks, tanh, recurrent, *layer):  # noqa: ANN001, ANN201
    """`cell._micro_ticks` without its custom VJP: JAX differentiates the forward ops themselves."""
    return _ticks_with_residuals(num_micro_ticks, tanh, recurrent, *layer)[0]


def bench(layer_norm: bool, args: argparse.Namespace) -> dict:
    model = VSML(layer_norm=layer_norm, feed_label=True)
    N, T, A = args.episodes, args.length, args.inputs
    xs, ys, keys = random_episodes(N, T, A)
    meta = model.init_meta(jax.random.PRNGKey(0))

    def loss(m):
        return meta_batch_loss(model, "mean", True, m, xs, ys, keys, args.at_once)

    forward = jax.jit(loss)
    custom = jax.jit(jax.grad(loss))
    with mock.patch.object(vsml_cell, "_micro_ticks", autodiff_micro_ticks):  # in effect while tracing
        autodiff = jax.jit(jax.grad(loss)).lower(meta).compile()
    difference, scale = tree_difference(custom(meta), autodiff(meta))
    if not difference <= TOLERANCE * scale:
        raise SystemExit(
            f"the two meta-gradients differ by {difference} (largest entry {scale}): refusing to time"
        )
    seconds = best_times(
        {
            "forward": lambda: forward(meta),
            "custom_vjp": lambda: custom(meta),
            "autodiff": lambda: autodiff(meta),
        },
        args.repeats,
    )
    return {
        "network": f"dense {A}->10, feed_label" + (", LayerNorm" if layer_norm else ""),
        "episodes": N,
        "length": T,
        "episodes_at_once": "all" if args.at_once is None else args.at_once,
        "seconds": seconds,
        "autodiff_over_custom_vjp_time": seconds["autodiff"] / seconds["custom_vjp"],
        "custom_vjp_over_forward_time": seconds["custom_vjp"] / seconds["forward"],
        "autodiff_over_forward_time": seconds["autodiff"] / seconds["forward"],
        "max_abs_gradient_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=784)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--episodes-at-once",
        dest="at_once",
        type=lambda text: None if text == "all" else int(text),
        default=1,
        help="grad.episodes_at_once: a count or 'all' (bptt_memory.py runs all at once)",
    )
    args = parser.parse_args()
    results = [bench(layer_norm, args) for layer_norm in (False, True)]
    print(json.dumps({"benchmark": "vsml_meta_gradient", "results": results, **machine_fields()}, indent=1))


if __name__ == "__main__":
    main()
