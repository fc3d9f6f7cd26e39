"""Inner-step speed of BLUR against a plain-JAX SGD step of the same network, in the same run.

BLUR's step (configs/blur/mnist_cmaes.yaml: 196 → 512 → 10, k = 2 states, batch 128, activation normalisation,
normalised synapses in the activations) does two k-channel passes and a Hebbian update of forward and backward
synapses; the baseline is one SGD step of an ordinary tanh MLP of the same sizes (forward, softmax
cross-entropy summed over the batch, `jax.grad`, w ← w − λ·g), hand-written here. Both are jitted as a
`lax.scan` over S steps of fresh batches; the best of R calls is kept, the two's calls interleaved. Prints JSON:
steps/s of each and the ratio of their times. Absolute figures depend on the machine and its load; the ratio is
the number to compare.

Two checks run first, at a tiny size, and the script refuses to time if either fails (wrong fast code is not
worth timing): the backprop genome (`backprop_blur`, tanh, CE feedback, η̃ = −λ) must make one BLUR step equal
one step of the baseline's SGD function (logits and new weights); and the timed configuration's fast step must
match the literal packed-layout oracle `blur.reference.reference_step` (logits and synapses after one step).

    python benchmarks/blur_step.py [--steps 20] [--repeats 5] [--inputs 196] [--hidden 512] [--batch 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from timing import best_times, machine_fields

from vsml.learners import build_learner
from vsml.learners.base import TaskSpec
from vsml.learners.blur import reference as ref
from vsml.learners.blur.learner import BLUR, BLURGenome, BLURState, backprop_blur, random_genome
from vsml.run.experiment import load_experiment

CONFIG = Path(__file__).resolve().parents[1] / "src" / "vsml" / "configs" / "blur" / "mnist_cmaes.yaml"
LEARNING_RATE = 0.01
CHECK_SIZES = (6, 8, 3)  # inputs, hidden, classes of the correctness checks
CHECK_BATCH = 5
# XLA's cheapest optimisation level for the checks: they run once, so compile time is all they cost.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
CHECK_TOLERANCE = 1e-4  # times max(1, the largest compared value); float32, one step

MLPParams = list[tuple[jax.Array, jax.Array]]  # (w [n, m], b [m]) per layer


def mlp_logits(params: MLPParams, x: jax.Array) -> jax.Array:
    h = x
    for layer, (w, b) in enumerate(params):
        z = h @ w + b
        h = jnp.tanh(z) if layer + 1 < len(params) else z
    return h


def sgd_step(
    params: MLPParams, x: jax.Array, y: jax.Array, learning_rate: float
) -> tuple[jax.Array, MLPParams]:
    """The baseline: logits of the batch before learning, then w ← w − λ·∇ Σ_b CE(x_b, y_b)."""

    def loss(p: MLPParams) -> tuple[jax.Array, jax.Array]:
        logits = mlp_logits(p, x)
        return -jnp.sum(y * jax.nn.log_softmax(logits, axis=-1)), logits

    # One forward pass gives both the prediction and the gradient (the baseline must not do it twice).
    grads, logits = jax.grad(loss, has_aux=True)(params)
    return logits, jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def mlp_init(key: jax.Array, sizes: tuple[int, ...]) -> MLPParams:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (n, m)) / np.sqrt(n), jnp.zeros((m,)))
        for k, n, m in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def blur_state_of(params: MLPParams) -> BLURState:
    """The BLUR synapses equal to an MLP's weights (spec blur.md §8.3): F = [W; b], G = Wᵀ, in both channels
    (BLURState is channel-first: [k, n+1, m] and [k, m, n])."""
    forward = tuple(jnp.stack([jnp.concatenate([w, b[None]])] * 2) for w, b in params)
    backward = tuple(jnp.stack([w.T] * 2) for w, _ in params)
    return BLURState(forward, backward)


def max_difference(actual, expected) -> tuple[jax.Array, jax.Array]:
    """(max |actual − expected| over all leaves, max(1, max |expected|)): the error and the scale it is judged at."""
    actual, expected = jax.tree.leaves(actual), jax.tree.leaves(expected)
    diff = jnp.max(jnp.stack([jnp.max(jnp.abs(a - e)) for a, e in zip(actual, expected, strict=True)]))
    return diff, jnp.maximum(1.0, jnp.max(jnp.stack([jnp.max(jnp.abs(e)) for e in expected])))


def check_batch(seed: int) -> tuple[jax.Array, jax.Array]:
    """A tiny batch (x [B, n], one-hot y [B, c]) from numpy: no jax.random compilation for these shapes."""
    rng = np.random.default_rng(seed)
    n, _, c = CHECK_SIZES
    x = rng.normal(size=(CHECK_BATCH, n)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(np.eye(c, dtype=np.float32)[rng.integers(0, c, CHECK_BATCH)])


def check_backprop_genome_is_sgd() -> tuple[float, float]:
    """One step of the backprop genome against `sgd_step`: logits and every weight (spec blur.md §8.2)."""
    blur = backprop_blur(CHECK_SIZES[1:-1], activation="tanh", feedback="ce")
    genome = blur.init_meta(None)._replace(synapse_update=np.float32(-LEARNING_RATE))
    rng = np.random.default_rng(1)
    params = [
        (
            jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32),
            jnp.asarray(rng.normal(size=b), jnp.float32),
        )
        for a, b in zip(CHECK_SIZES[:-1], CHECK_SIZES[1:], strict=True)
    ]

    def compare(params: MLPParams, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        sgd_logits, new_params = sgd_step(params, x, y, LEARNING_RATE)
        blur_logits, new_state = blur.step(genome, blur_state_of(params), x, y)
        return max_difference((blur_logits, new_state), (sgd_logits, blur_state_of(new_params)))

    diff, scale = jax.jit(compare, compiler_options=FAST_COMPILE)(params, *check_batch(2))
    return float(diff), float(scale)


def check_fast_matches_reference(blur: BLUR) -> tuple[float, float]:
    """One step of the timed settings, fast path against the packed oracle: logits and synapses. The genome is
    random with a large η̃ (every genome matrix matters and the synapses move visibly); speed does not depend
    on its values."""
    n, h, c = CHECK_SIZES
    tiny = dataclasses.replace(blur, hidden_sizes=(h,))

    def compare(key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        genome = random_genome(key, tiny.num_states)._replace(synapse_update=jnp.float32(0.1))
        state = tiny.init_state(genome, key, TaskSpec((n,), c))
        fast_logits, fast_state = tiny.step(genome, state, x, y)
        ref_logits, packed, _, _ = ref.reference_step(tiny, genome, ref.pack_state(tiny, state), x, y)
        return max_difference((fast_logits, fast_state), (ref_logits, ref.unpack_state(tiny, packed)))

    diff, scale = jax.jit(compare, compiler_options=FAST_COMPILE)(jax.random.PRNGKey(3), *check_batch(4))
    return float(diff), float(scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="inner steps per timed call (one lax.scan)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inputs", type=int, default=196, help="14x14 MNIST, as the config")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    key = jax.random.PRNGKey(0)
    sgd_error, scale = check_backprop_genome_is_sgd()
    if not sgd_error <= CHECK_TOLERANCE * scale:
        raise SystemExit(f"backprop genome and plain SGD disagree by {sgd_error}: refusing to time")
    blur = dataclasses.replace(build_learner(load_experiment(CONFIG).learner), hidden_sizes=(args.hidden,))
    reference_error, scale = check_fast_matches_reference(blur)
    if not reference_error <= CHECK_TOLERANCE * scale:
        raise SystemExit(
            f"BLUR fast path and packed reference disagree by {reference_error}: refusing to time"
        )

    S, B, A, H, C = args.steps, args.batch, args.inputs, args.hidden, args.classes
    kx, ky, kp = jax.random.split(jax.random.PRNGKey(1), 3)
    xs = jax.random.normal(kx, (S, B, A))
    ys = jax.nn.one_hot(jax.random.randint(ky, (S, B), 0, C), C)
    genome = blur.init_meta(key)
    state = blur.init_state(genome, key, TaskSpec((A,), C))
    params = mlp_init(kp, (A, H, C))

    @jax.jit
    def blur_steps(genome: BLURGenome, state: BLURState, xs: jax.Array, ys: jax.Array) -> BLURState:
        # The genome is an argument, as under CMA-ES: XLA cannot fold its identity and 0/1 entries away.
        return jax.lax.scan(lambda s, xy: (blur.step(genome, s, *xy)[1], None), state, (xs, ys))[0]

    @jax.jit
    def sgd_steps(params: MLPParams, xs: jax.Array, ys: jax.Array) -> MLPParams:
        return jax.lax.scan(lambda p, xy: (sgd_step(p, *xy, LEARNING_RATE)[1], None), params, (xs, ys))[0]

    seconds = best_times(  # interleaved: a slow period of the machine hits both
        {"blur": lambda: blur_steps(genome, state, xs, ys), "sgd": lambda: sgd_steps(params, xs, ys)},
        args.repeats,
    )
    t_blur, t_sgd = seconds["blur"], seconds["sgd"]
    print(
        json.dumps(
            {
                "benchmark": "blur_step",
                "network": f"{A}->{H}->{C}, k={blur.num_states}, batch {B}",
                "blur_settings": f"{CONFIG.relative_to(CONFIG.parents[2])} learner, hidden {H}",
                "steps_per_call": S,
                "repeats": args.repeats,
                "blur_seconds": t_blur,
                "sgd_seconds": t_sgd,
                "blur_steps_per_s": S / t_blur,
                "sgd_steps_per_s": S / t_sgd,
                "blur_over_sgd_time": t_blur / t_sgd,
                "check_backprop_genome_vs_sgd_max_abs_diff": sgd_error,
                "check_fast_vs_reference_max_abs_diff": reference_error,
                "check_sizes": f"{'->'.join(map(str, CHECK_SIZES))}, batch {CHECK_BATCH}, one step",
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
