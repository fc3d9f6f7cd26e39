"""Is a learned update a gradient? BLUR (Sandler et al., ICML 2021, arXiv 2104.04657), §3.5, Fig. 2, App. A
(spec blur.md §9).

An update rule that is gradient descent on some loss has a symmetric Jacobian ∂Δw_k/∂w_m (it is −λ times a
Hessian). The paper finds |∂Δw_k/∂w_m − ∂Δw_m/∂w_k| far above numerical noise for meta-learned genomes.
`gradient_asymmetry` measures it for one layer and compares it with BLUR's backprop genome, which is exactly
SGD (spec blur.md §8.2, §11). BLUR's Jacobian is taken on batches of the run's own size.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml.evaluation.baselines import same_unroll_sgd
from vsml.learners.base import run_episode_from_state, spec_of_episode
from vsml.learners.blur.learner import BLUR, BLURGenome, BLURState, backprop_genome

Array = jax.Array
ASYMMETRY_MAX_SYNAPSES = 256  # Jacobian block of at most this many synapses per layer (one JVP each)
JVP_BATCH = 32  # JVPs evaluated together when building a Jacobian
REFERENCE_RATE = 0.1  # λ of the plain-SGD reference per example (BLUR sums its update over the batch)


@partial(jax.jit, static_argnames=("learner", "layer"))
def update_jacobian(
    learner: BLUR,
    genome: BLURGenome,
    state: BLURState,
    x: Array,
    y: Array,
    layer: int = 0,
    indices: Array | None = None,
) -> Array:
    """J[a, b] = ∂Δw_a/∂w_b of one BLUR step on (x, y) from `state`, w = channel 0 of the forward synapses F_ℓ of
    `layer` (`state.forward[layer][0]`), flattened ([n+1, m] row-major; the bias row last); only the synapses
    `indices` if given ([s, s]).

    Δw = F'_ℓ[…, 0] − F_ℓ[…, 0]. The perturbation is tied as the learner ties its synapses (its symmetry syncs):
    with `symmetric_states` all channels follow w, with `symmetric_in_out` G_ℓ = F_ℓ[:n]ᵀ follows too; so for
    the backprop configuration w is the weight W̄_ℓ = [W_ℓ; b_ℓ] of the MLP and J = −λ·∂²L/∂w² (spec §8.2).
    """
    forward = state.forward[layer]  # [k, n+1, m]
    shape = forward.shape[1:]
    w = forward[0].reshape(-1)

    def update(w: Array) -> Array:
        # The learner's own sync (spec blur.md §2.2) makes the tied channels and G follow the perturbation.
        f, g = learner._sync(forward.at[0].set(w.reshape(shape)), state.backward[layer])
        perturbed = BLURState(
            tuple(f if i == layer else s for i, s in enumerate(state.forward)),
            tuple(g if i == layer else s for i, s in enumerate(state.backward)),
        )
        _, new_state = learner.step(genome, perturbed, x, y)
        return new_state.forward[layer][0].reshape(-1) - w

    chosen = jnp.arange(w.shape[0]) if indices is None else indices

    def column(i: Array) -> Array:  # J[chosen, i]: one forward-mode pass per synapse
        tangent = jax.nn.one_hot(i, w.shape[0], dtype=w.dtype)
        return jax.jvp(update, (w,), (tangent,))[1][chosen]

    # In batches of JVPs: vmapping all of them at once would hold one copy of every synapse per JVP.
    return jax.lax.map(column, chosen, batch_size=JVP_BATCH).T


def asymmetry_of(jacobian: Array) -> dict[str, float | None]:
    """How far a square J is from symmetric: max and mean |J − Jᵀ| (mean over all entries), both also divided
    by max |J|, and the antisymmetric fraction ‖(J − Jᵀ)/2‖_F / ‖J‖_F (0: symmetric, 1: antisymmetric);
    also max |J| and the largest off-diagonal |J|. The relative values are None when J = 0."""
    j = np.asarray(jacobian, np.float64)
    difference = np.abs(j - j.T)
    scale = float(np.abs(j).max(initial=0.0))
    norm = float(np.linalg.norm(j))
    return {
        "max_abs_asymmetry": float(difference.max(initial=0.0)),
        "mean_abs_asymmetry": float(difference.mean()),
        "max_abs_jacobian": scale,
        # 0 means J is diagonal (e.g. only the keep gate f̃ acts, dead units): symmetric, but trivially so.
        "max_abs_offdiagonal": float(np.abs(j - np.diag(np.diag(j))).max(initial=0.0)),
        "relative_max_asymmetry": float(difference.max(initial=0.0)) / scale if scale > 0 else None,
        "relative_mean_asymmetry": float(difference.mean()) / scale if scale > 0 else None,
        "antisymmetric_fraction": float(np.linalg.norm(j - j.T)) / (2.0 * norm) if norm > 0 else None,
    }


@partial(jax.jit, static_argnames=("learner", "layers"))
def _jacobians_after_warmup(
    learner: BLUR,
    genome: BLURGenome,
    key: Array,
    xs: Array,
    ys: Array,
    layers: tuple[int, ...],
    indices: tuple[Array | None, ...],
) -> tuple[Array, ...]:
    # One compilation for all layers: on a CPU, compiling dominates the cost of these small Jacobians.
    state = learner.init_state(genome, key, spec_of_episode(xs, ys))
    # The genome in the synapses' precision: under float64 (jax.enable_x64) nothing is rounded to float32.
    genome = jax.tree.map(lambda g: jnp.asarray(g, state.forward[0].dtype), genome)
    if xs.shape[0] > 1:
        _, state = run_episode_from_state(learner, genome, state, xs[:-1], ys[:-1])
    return tuple(
        update_jacobian(learner, genome, state, xs[-1], ys[-1], layer, chosen)
        for layer, chosen in zip(layers, indices, strict=True)
    )


def gradient_asymmetry(
    learner: BLUR,
    genome: BLURGenome,
    key: Array,
    xs: Array,
    ys: Array,
    layer: int = 0,
    max_synapses: int | None = None,
    reference: bool = True,
    reference_rate: float | None = None,
) -> dict[str, Any]:
    """BLUR's "not gradient descent" check (BLUR §3.5, Fig. 2, App. A; spec blur.md §9): the asymmetry of
    J = ∂Δw/∂w (`update_jacobian`, `asymmetry_of`) for the forward synapses of `layer`.

    The synapses start from `learner.init_state(genome, key)`; the first T − 1 steps of `xs: [T, ...]`,
    `ys: [T, C]` (or with an inner batch, [T, B, ...]) move them, J is taken at the last step. `max_synapses`
    restricts J to the synapses between random pre and post units, at most that many (a principal block of
    a symmetric matrix is symmetric).

    With `reference`, "sgd_reference" is the same measurement for plain SGD on the same MLP, data and initial
    synapse distribution: `baselines.same_unroll_sgd` (`backprop_blur(hidden, "tanh", "ce")`) with
    `backprop_genome(2, −λ)`, λ = `reference_rate` (default `REFERENCE_RATE` / the inner batch). That update
    is Δw = −λ·∂L/∂w with L the batch-summed softmax cross-entropy, so J = −λ·∂²L/∂w², a Hessian: symmetric
    up to rounding (≈1e−7 relative in float32, ≈1e−15 under `jax.enable_x64`).

    This needs every setting of `backprop_blur` (spec §8.2, §11.3): per-state (φ, φ′) forward activation,
    identity output and backward activations, `multiplicative_second_state`, both symmetry syncs (without
    the state sync the channel-1 copy of w that computes φ′ would not follow w; without the in/out sync G
    would not), no normalisation, no Oja, f = η = f̃ = 1, ν[0, 1] = 1. The feedback may be "ce", "mse" or
    the ±1 "label" (with η̃ = +λ: L = −Σ y·z_L, still a gradient); all were checked in float64 for tanh,
    sigmoid and linear hidden units (≤ 5e−16 relative). With the label feedback L is linear in the last
    layer's w (and, for a linear net, in every layer's), so there J = 0 and the relative values are None.
    """
    return gradient_asymmetry_by_layer(
        learner, genome, key, xs, ys, (layer,), max_synapses, reference, reference_rate
    )[0]


def gradient_asymmetry_by_layer(
    learner: BLUR,
    genome: BLURGenome,
    key: Array,
    xs: Array,
    ys: Array,
    layers: tuple[int, ...] | None = None,
    max_synapses: int | None = None,
    reference: bool = True,
    reference_rate: float | None = None,
) -> list[dict[str, Any]]:
    """`gradient_asymmetry` of each of `layers` (default: every connection), computed together."""
    layers = tuple(range(learner.num_connections)) if layers is None else tuple(int(i) for i in layers)
    sizes = learner.layer_sizes(spec_of_episode(xs, ys))
    results, indices = [], []
    for layer in layers:
        if not 0 <= layer < learner.num_connections:
            raise ValueError(f"layer must be in [0, {learner.num_connections}), got {layer}")
        rows, columns = sizes[layer] + 1, sizes[layer + 1]
        chosen = None
        if max_synapses is not None and max_synapses < rows * columns:
            chosen = _synapse_grid(jax.random.fold_in(key, layer), rows, columns, max_synapses)
        indices.append(chosen)
        results.append(
            {
                "layer": layer,
                "synapses": rows * columns,
                "measured_synapses": rows * columns if chosen is None else int(chosen.shape[0]),
                "warmup_steps": int(xs.shape[0]) - 1,
            }
        )
    indices = tuple(indices)
    for result, jacobian in zip(
        results, _jacobians_after_warmup(learner, genome, key, xs, ys, layers, indices), strict=True
    ):
        result.update(asymmetry_of(jacobian))
    if reference:
        # λ per example: the update sums over an inner batch, and too large a step saturates the softmax
        # (its Hessian, and so J, then vanishes in float32).
        batch = math.prod(ys.shape[1:-1])
        rate = REFERENCE_RATE / batch if reference_rate is None else reference_rate
        sgd, sgd_genome = same_unroll_sgd(learner), backprop_genome(2, -rate)
        for result, jacobian in zip(
            results, _jacobians_after_warmup(sgd, sgd_genome, key, xs, ys, layers, indices), strict=True
        ):
            result["sgd_reference"] = {"learning_rate": rate, **asymmetry_of(jacobian)}
    return results


def _synapse_grid(key: Array, rows: int, columns: int, max_synapses: int) -> Array:
    """Flat indices (sorted) of every synapse between random pre units (rows, the bias included) and random
    post units (columns), at most `max_synapses` of them. A grid, not scattered synapses: the cross terms of
    a Hebbian update (and of a Hessian) link synapses that share a unit, and a scattered sample of a large
    layer would hold almost no such pairs."""
    num_columns = min(columns, max(1, math.isqrt(max_synapses)))
    num_rows = min(rows, max(1, max_synapses // num_columns))
    row_key, column_key = jax.random.split(key)
    chosen_rows = jax.random.choice(row_key, rows, (num_rows,), replace=False)
    chosen_columns = jax.random.choice(column_key, columns, (num_columns,), replace=False)
    return jnp.sort((chosen_rows[:, None] * columns + chosen_columns[None, :]).reshape(-1))
