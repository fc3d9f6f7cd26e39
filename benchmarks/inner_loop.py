"""Inner-loop speed of VSML: the literal reference against the fast factored path, in the same run.

Prints JSON: synapse-micro-ticks per second of each (one sub-RNN application per synapse per micro tick) for
the default dense 784→10 layer, forward-only, and their ratio. Both are jitted; both run the same episodes
(T steps, N episodes vmapped) and both results are checked to agree before timing. Absolute figures depend on
the machine and its load; the ratio is the number to compare.

    python benchmarks/inner_loop.py [--episodes 8] [--steps 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
from timing import best_time, machine_fields

from vsml.learners.base import TaskSpec, run_episode_from_state
from vsml.learners.reference import vsml_reference_episode
from vsml.learners.vsml import VSML


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8, help="episodes run in parallel (vmapped)")
    parser.add_argument("--steps", type=int, default=10, help="online steps per episode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inputs", type=int, default=784)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()

    model = VSML()
    N, T, A, C = args.episodes, args.steps, args.inputs, args.classes
    key = jax.random.PRNGKey(0)
    meta = model.init_meta(key)
    xs = jax.random.normal(jax.random.PRNGKey(1), (N, T, A))
    ys = jax.nn.one_hot(jax.random.randint(jax.random.PRNGKey(2), (N, T), 0, C), C)
    states = jax.vmap(lambda k: model.init_state(meta, k, TaskSpec((A,), C)))(jax.random.split(key, N))

    fast = jax.jit(jax.vmap(lambda s, x, y: run_episode_from_state(model, meta, s, x, y)[0]))
    # The reference loops over steps in Python; jit traces that loop once (T steps unrolled).
    reference = jax.jit(jax.vmap(lambda s, x, y: vsml_reference_episode(model, meta, x, y, list(s.c))))

    fast_logits, ref_logits = fast(states, xs, ys), reference(states, xs, ys)
    max_diff = float(jnp.max(jnp.abs(fast_logits - ref_logits)))
    if max_diff > 1e-5 * max(1.0, float(jnp.max(jnp.abs(ref_logits)))):
        raise SystemExit(f"fast path and reference disagree by {max_diff}: refusing to time a wrong result")

    work = N * T * A * C * model.num_micro_ticks  # synapse-micro-ticks per call
    t_fast = best_time(lambda: fast(states, xs, ys), args.repeats)
    t_ref = best_time(lambda: reference(states, xs, ys), args.repeats)
    print(
        json.dumps(
            {
                "benchmark": "vsml_inner_loop",
                "layer": f"dense {A}->{C}, forward-only, {model.num_micro_ticks} micro ticks",
                "episodes": N,
                "steps": T,
                "synapse_micro_ticks_per_call": work,
                "reference_seconds": t_ref,
                "fast_seconds": t_fast,
                "reference_synapse_micro_ticks_per_s": work / t_ref,
                "fast_synapse_micro_ticks_per_s": work / t_fast,
                "fast_us_per_episode_step": 1e6 * t_fast / (N * T),
                "speedup_fast_over_reference": t_ref / t_fast,
                "max_abs_logit_difference": max_diff,
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
