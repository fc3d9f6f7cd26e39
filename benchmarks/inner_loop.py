"""Inner-loop speed of VSML: the literal reference against the fast factored path, in the same run.

Prints JSON, one record per network: synapse-micro-ticks per second (one sub-RNN application per synapse per
micro tick) of
  - `reference`: the literal per-synapse formulation (reference.py), episodes vmapped;
  - `fast_vmap`: the learner's fast path, episodes vmapped (what a GPU wants: one big batch);
  - `fast_map`: the fast path, episodes run `--episode-batch` at a time by `lax.map` (what the ES trainer's
    `es.members_at_once` does: each episode's state stays in cache on a CPU);
  - `fast_exact_tanh`: `fast_map` with `rational_tanh=False` (how much the rational tanh gives);
  - `fast_pallas` (on a GPU, or with `--pallas`): `fast_vmap` with the dense layers' micro ticks in the fused
    Pallas kernel (`VSML.dense_kernel="pallas"`; off a GPU it runs in Pallas' interpreter: slow, checks only);
and the ratios to the reference. Networks: dense 784→10 forward-only (the paper's Fig. 6 layer), 784→32→10 with
the backward pass, and the conv config (3×3 stride-2 conv VSML layer, 8 channels, then dense, backward pass,
LayerNorm). Every variant is checked against the reference before it is timed; the variants' calls are
interleaved (best of R rounds each), so a slow period of the machine hits all of them. Absolute figures depend on
the machine and its load; the ratios are the numbers to compare.

    python benchmarks/inner_loop.py [--networks dense,deep,conv] [--episodes 8] [--steps 10] [--repeats 5]
        [--episode-batch 1] [--image-side 28] [--pallas]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
from timing import best_times, machine_fields

from vsml.learners.base import TaskSpec, map_in_batches, run_episode_from_state
from vsml.learners.vsml import VSML
from vsml.learners.vsml.reference import vsml_reference_episode

NETWORKS = ("dense", "deep", "conv")


def network(name: str, side: int) -> tuple[str, VSML, tuple[int, ...]]:
    """(label, model, input shape) of a benchmark network on side×side images (28: MNIST)."""
    pixels, half = side * side, -(-side // 2)
    if name == "dense":
        return f"dense {pixels}->10, forward-only", VSML(), (pixels,)
    if name == "deep":
        return (
            f"dense {pixels}->32->10, backward pass",
            VSML(hidden_sizes=(32,), backward_pass=True),
            (pixels,),
        )
    conv = VSML(conv_layers=((8, 3, 2),), backward_pass=True, feed_label=True, layer_norm=True)
    label = f"conv {side}x{side}x1 -(3x3/2, 8 ch)-> {half}x{half}x8, dense {half * half * 8}->10, backward pass, LN"
    return label, conv, (side, side, 1)


@dataclass(frozen=True)
class Setup:
    """One `bench_network` run: episodes of `steps` online steps on image_side² inputs, `episode_batch` at a time
    in `fast_map`, best of `repeats`; `pallas`: time the fused kernel off a GPU too."""

    episodes: int = 8
    steps: int = 10
    classes: int = 10
    image_side: int = 28
    episode_batch: int = 1
    repeats: int = 5
    pallas: bool = False


def bench_network(name: str, setup: Setup) -> dict:
    label, model, input_shape = network(name, setup.image_side)
    N, T, C = setup.episodes, setup.steps, setup.classes
    spec = TaskSpec(input_shape, C)
    key = jax.random.PRNGKey(0)
    meta = model.init_meta(key)
    xs = jax.random.normal(jax.random.PRNGKey(1), (N, T, *input_shape))
    ys = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (N, T), 0, C), C)
    states = jax.vmap(lambda k: model.init_state(meta, k, spec))(jax.random.split(key, N))

    def fast_episode(m: VSML):
        return lambda s, x, y: run_episode_from_state(m, meta, s, x, y)[0]

    def mapped(fn):
        return jax.jit(lambda s, x, y: map_in_batches(fn, (s, x, y), setup.episode_batch))

    variants = {
        # The reference loops over steps in Python; jit traces that loop once (T steps unrolled).
        "reference": jax.jit(jax.vmap(lambda s, x, y: vsml_reference_episode(model, meta, x, y, list(s.c)))),
        "fast_vmap": jax.jit(jax.vmap(fast_episode(model))),
        "fast_map": mapped(fast_episode(model)),
        "fast_exact_tanh": mapped(fast_episode(replace(model, rational_tanh=False))),
    }
    if setup.pallas or jax.default_backend() == "gpu":
        variants["fast_pallas"] = jax.jit(jax.vmap(fast_episode(replace(model, dense_kernel="pallas"))))
    ref_logits = variants["reference"](states, xs, ys)
    scale = max(1.0, float(jnp.max(jnp.abs(ref_logits))))
    differences = {}
    for variant, fn in variants.items():
        differences[variant] = float(jnp.max(jnp.abs(fn(states, xs, ys) - ref_logits)))
        if differences[variant] > 1e-5 * scale:
            raise SystemExit(f"{name}/{variant} disagrees with the reference by {differences[variant]}")

    work = N * T * model.sub_rnn_applications_per_step(spec)
    seconds = best_times({v: partial(fn, states, xs, ys) for v, fn in variants.items()}, setup.repeats)
    record = {
        "network": label,
        "episodes": N,
        "steps": T,
        "episode_batch": setup.episode_batch,
        "synapse_micro_ticks_per_call": work,
        "seconds": seconds,
        "synapse_micro_ticks_per_s": {v: work / t for v, t in seconds.items()},
        "us_per_episode_step": {v: 1e6 * t / (N * T) for v, t in seconds.items()},
        "speedup_over_reference": {
            v: seconds["reference"] / t for v, t in seconds.items() if v != "reference"
        },
        "max_abs_logit_difference": differences,
    }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="dense,deep,conv", help=f"comma-separated, of {NETWORKS}")
    default = Setup()  # the flags' defaults
    parser.add_argument(
        "--image-side", type=int, default=default.image_side, help="side×side images (28: MNIST)"
    )
    parser.add_argument("--episodes", type=int, default=default.episodes, help="episodes per call")
    parser.add_argument(
        "--episode-batch", type=int, default=default.episode_batch, help="episodes at once in fast_map"
    )
    parser.add_argument("--steps", type=int, default=default.steps, help="online steps per episode")
    parser.add_argument("--repeats", type=int, default=default.repeats)
    parser.add_argument("--classes", type=int, default=default.classes)
    parser.add_argument(
        "--pallas", action="store_true", help="time the fused Pallas kernel off a GPU too (interpreted: slow)"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f"unknown network(s) {unknown}; choose from {NETWORKS}")
    setup = Setup(
        episodes=args.episodes,
        steps=args.steps,
        classes=args.classes,
        image_side=args.image_side,
        episode_batch=args.episode_batch,
        repeats=args.repeats,
        pallas=args.pallas,
    )
    print(
        json.dumps(
            {
                "benchmark": "vsml_inner_loop",
                "results": [bench_network(n, setup) for n in names],
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
