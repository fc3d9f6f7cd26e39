"""A slow, literal BLUR step in the authors' packed layout, kept only as a test oracle for `vsml.learners.blur.learner`.

Written from spec blur.md, not from the fast path: §2 (state, packed synapses, symmetry options), §3.1 (genome
fields and index conventions), §4 (one inner step, in the reference's exact order, with colnorm, the Oja term as
implemented, the recommended activation normalisation and the nonlinearities) and the corrections of §11
(§11.1 index conventions, §11.5 the initial sync, §11.6 the feedback, §11.10 the sync zeroes the unused blocks).

Per connection ℓ (n = n_ℓ, m = n_{ℓ+1}) the synapses are ONE packed tensor W ∈ R^{(n+1+m)×(n+1+m)×k} whose rows
and columns run over [pre neurons 0..n−1, bias at n, post neurons]. Only two blocks are read (spec §2.2):

    forward  F = W[0:n+1, n+1:]      ∈ R^{(n+1)×m×k}   (row n is the bias)
    backward G = W[n+1:, 0:n]        ∈ R^{m×n×k}       (no bias; column n of the lower-left block is never read)

and the generalised Hebbian update H is computed over the whole packed X = [pre, 1, post] and applied to the whole
packed W (the pre–pre and post–post blocks receive updates that nothing reads). Everything is an explicit Python
loop over layers and steps with the einsums written as the spec writes them; nothing is factored or fused.

Options interpreted (the `BLUR` dataclass of the fast path, the `BLURGenome` fields): activations (the table
`activate`, shared with the fast path), backward_update (additive / multiplicative / multiplicative_second_state),
symmetric_in_out, symmetric_states, per_layer_genome, feedback (label / mse / ce), label_encoding (pm1 / 01),
use_forward_activations_for_synapse_update, normalize_synapses, normalize_in_activations, rescale, oja (with
oja_extra_multiplier κ), saturation_type exp_update (with saturation_epsilon ε), activation_normalization with
activation_norm_axes. Static settings not part of a step (init_scale, genome_init, …) are not used here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vsml.learners.base import Array
from vsml.learners.blur.learner import BLUR, BLURGenome, BLURState, activate

COLNORM_EPSILON = 1e-9  # spec §4: colnorm(M) = M / sqrt(Σ_rows M² + 1e−9)
BATCHNORM_EPSILON = 1e-5  # spec §4, activation normalisation: x̂ = γ·(x − mean)/sqrt(var + 1e−5) + β


# ----- genome and layout ----------------------------------------------------------------------------------------


def layer_genome(blur: BLUR, genome: BLURGenome, layer: int) -> BLURGenome:
    """The genome of connection `layer`: with per_layer_genome every field has a leading [L] axis (spec §3.1)."""
    if not blur.per_layer_genome:
        return genome
    return BLURGenome(*[field[layer] for field in genome])


def layer_sizes(blur: BLUR, packed: list[Array], input_size: int | None = None) -> list[int]:
    """(n_0, …, n_L) from the packed shapes (n + 1 + m each) and the hidden sizes; n_0 is needed without hidden."""
    hidden = list(blur.hidden_sizes)
    if len(packed) != len(hidden) + 1:
        raise ValueError(
            f"expected {len(hidden) + 1} packed synapses for hidden sizes {hidden}, got {len(packed)}"
        )
    if input_size is None:
        if not hidden:
            raise ValueError(
                "without hidden layers the packed layout does not tell n_0 from n_1: pass input_size"
            )
        input_size = packed[0].shape[0] - 1 - hidden[0]
    sizes = [int(input_size)]
    for W in packed:
        sizes.append(W.shape[0] - 1 - sizes[-1])
    if sizes[1:-1] != hidden or min(sizes) < 1:
        raise ValueError(f"packed shapes {[W.shape for W in packed]} do not fit layer sizes {sizes}")
    return sizes


def forward_block(W: Array, n: int) -> Array:
    """F = W[0:n+1, n+1:, :]: rows = pre neurons and the bias, columns = post neurons (spec §2.2)."""
    return W[0 : n + 1, n + 1 :, :]


def backward_block(W: Array, n: int) -> Array:
    """G = W[n+1:, 0:n, :]: rows = post neurons, columns = pre neurons, no bias column (spec §2.2)."""
    return W[n + 1 :, 0:n, :]


def combine_blocks(upper_right: Array, lower_left: Array) -> Array:
    """The packed tensor with the given in→out block [n+1, m, k] and out→in block [m, n+1, k]; pre–pre and
    post–post blocks zero (what the authors' sync and normalisation write, spec §11.10)."""
    n_plus_1, m, k = upper_right.shape
    top = jnp.concatenate([jnp.zeros((n_plus_1, n_plus_1, k), upper_right.dtype), upper_right], axis=1)
    bottom = jnp.concatenate([lower_left, jnp.zeros((m, m, k), upper_right.dtype)], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def pack_state(blur: BLUR, state: BLURState) -> list[Array]:
    """BLURState (F_ℓ, G_ℓ) -> packed W_ℓ. The blocks nothing reads (pre–pre, post–post and the bias column of the
    lower-left block) are set to 0, as the authors' in/out sync leaves them (their values never reach F or G).
    BLURState is channel-first ([k, n+1, m], [k, m, n]); the packed layout keeps the states last, as the spec."""
    del blur
    packed = []
    for F, G in zip(state.forward, state.backward, strict=True):
        F, G = jnp.moveaxis(F, 0, -1), jnp.moveaxis(G, 0, -1)
        n = F.shape[0] - 1
        m, k = F.shape[1], F.shape[2]
        W = jnp.zeros((n + 1 + m, n + 1 + m, k), F.dtype)
        W = W.at[0 : n + 1, n + 1 :, :].set(F)
        W = W.at[n + 1 :, 0:n, :].set(G)
        packed.append(W)
    return packed


def unpack_state(blur: BLUR, packed: list[Array], input_size: int | None = None) -> BLURState:
    """Packed W_ℓ -> BLURState of the two read blocks (F_ℓ, G_ℓ), channel-first as BLURState stores them."""
    sizes = layer_sizes(blur, packed, input_size)
    forward = tuple(jnp.moveaxis(forward_block(W, sizes[layer]), -1, 0) for layer, W in enumerate(packed))
    backward = tuple(jnp.moveaxis(backward_block(W, sizes[layer]), -1, 0) for layer, W in enumerate(packed))
    return BLURState(forward, backward)


# ----- symmetry syncs (spec §2.2, §11.5, §11.10) ----------------------------------------------------------------


def sync_in_out(W: Array, n: int) -> Array:
    """The out→in block (bias column included) becomes the transpose of the in→out block; the rest is zeroed."""
    F = forward_block(W, n)
    return combine_blocks(F, jnp.transpose(F, (1, 0, 2)))


def sync_states(W: Array) -> Array:
    """Every channel becomes a copy of channel 0."""
    k = W.shape[-1]
    return jnp.stack([W[..., 0]] * k, axis=-1)


def sync(blur: BLUR, W: Array, n: int) -> Array:
    """The symmetry options in the authors' order: in/out first, then states (spec §2.2)."""
    if blur.symmetric_in_out:
        W = sync_in_out(W, n)
    if blur.symmetric_states:
        W = sync_states(W)
    return W


def init_sync(blur: BLUR, packed: list[Array], input_size: int | None = None) -> list[Array]:
    """What `init_first_state` does to freshly drawn synapses: the same syncs, per connection (spec §11.5)."""
    sizes = layer_sizes(blur, packed, input_size)
    return [sync(blur, W, sizes[layer]) for layer, W in enumerate(packed)]


# ----- synapse normalisation (spec §4 step 1, App. C.6) ---------------------------------------------------------


def colnorm(M: Array, rescale_to: Array | None = None) -> Array:
    """colnorm(M)[·,j,c] = M[·,j,c] / sqrt(Σ_rows M[row,j,c]² + 1e−9), the sum over the source axis (−3)."""
    squared = jnp.sum(M**2, axis=-3, keepdims=True)
    normed = M / jnp.sqrt(squared + COLNORM_EPSILON)
    if rescale_to is not None:
        normed = normed * rescale_to
    return normed


def _rescale_to(blur: BLUR, genome: BLURGenome) -> Array | None:
    return genome.rescale_to if blur.rescale else None


def normalize_packed(blur: BLUR, genome: BLURGenome, W: Array, n: int) -> Array:
    """`normalize_synapses`: colnorm of the in→out and out→in blocks, stored; the unused blocks drop to 0."""
    r = _rescale_to(blur, genome)
    return combine_blocks(colnorm(W[0 : n + 1, n + 1 :, :], r), colnorm(W[n + 1 :, 0 : n + 1, :], r))


# ----- neurons (spec §4 steps 0, 2, 5) --------------------------------------------------------------------------


def input_neurons(x: Array, num_states: int) -> Array:
    """A_0 = [x, 0, …, 0] for a batch x [B, d]."""
    zeros = jnp.zeros(x.shape + (num_states - 1,), x.dtype)
    return jnp.concatenate([x[:, :, None], zeros], axis=-1)


def with_bias_neuron(A: Array) -> Array:
    """Ā = concat(A, ones[B, 1, k]): the bias neuron is 1 in every state."""
    B, _, k = A.shape
    return jnp.concatenate([A, jnp.ones((B, 1, k), A.dtype)], axis=1)


def forward_signal(genome: BLURGenome, A_pre: Array, F_read: Array) -> Array:
    """U[b,j,c] = Σ_i Σ_d Ā[b,i,d]·ν[d,c]·F̂[i,j,c] (eq. 5)."""
    return jnp.einsum("bid,dc,ijc->bjc", with_bias_neuron(A_pre), genome.neuron_forward, F_read)


def backward_signal(genome: BLURGenome, A_post: Array, G_read: Array) -> Array:
    """V[b,i,c] = Σ_j Σ_d A_{ℓ+1}[b,j,d]·μ[d,c]·Ĝ[j,i,c] (eq. 6; no bias)."""
    return jnp.einsum("bjd,dc,jic->bic", A_post, genome.neuron_backward, G_read)


def normalise_activation(blur: BLUR, genome: BLURGenome, x: Array, direction: str) -> Array:
    """The recommended activation normalisation of spec §4 on the pre-nonlinearity argument, if switched on for
    this direction: per (neuron, state) over the batch, or per state over batch and neurons; gain γ, shift β."""
    if blur.activation_normalization not in (direction, "both"):
        return x
    axes = (0,) if blur.activation_norm_axes == "batch" else (0, 1)
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=axes, keepdims=True)
    return genome.norm_multiplier * (x - mean) / jnp.sqrt(var + BATCHNORM_EPSILON) + genome.norm_shift


def neuron_forward_update(blur: BLUR, genome: BLURGenome, A_old: Array, U: Array, activation: str) -> Array:
    """A_{ℓ+1} ← φ(f·A_{ℓ+1} + η·U) (always additive in the forward pass)."""
    x = genome.neuron_keep * A_old + genome.neuron_update * U
    return activate(activation, normalise_activation(blur, genome, x, "forward"))


def neuron_backward_update(blur: BLUR, genome: BLURGenome, A_old: Array, V: Array) -> Array:
    """A_ℓ ← ψ(·) with the additive, multiplicative or multiplicative_second_state rule (spec §4 step 5)."""
    if blur.backward_update == "additive":
        x = genome.neuron_keep * A_old + genome.neuron_update * V
    elif blur.backward_update == "multiplicative":
        x = genome.neuron_keep * A_old * V
    elif blur.backward_update == "multiplicative_second_state":
        x = genome.neuron_keep * jnp.concatenate([A_old[..., 0:1], A_old[..., 1:] * V[..., 1:]], axis=-1)
    else:
        raise ValueError(f"unknown backward_update {blur.backward_update!r}")
    return activate(blur.backward_activation, normalise_activation(blur, genome, x, "backward"))


def feedback_target(blur: BLUR, y: Array, dtype: jnp.dtype) -> Array:
    """The label as written into the network: ±1 (pm1) or {0, 1} (01) from the one-hot y (spec §2.1)."""
    y = y.astype(dtype)
    return 2.0 * y - 1.0 if blur.label_encoding == "pm1" else y


def inject_feedback(blur: BLUR, A_L: Array, y: Array) -> Array:
    """A_L ← [A_L[…,0], δ, 0, …]: δ = the label (spec §2.1) or ∂L/∂z_L of ½‖z − t‖² or softmax-CE (§11.6)."""
    z = A_L[..., 0]
    if blur.feedback == "label":
        delta = feedback_target(blur, y, z.dtype)
    elif blur.feedback == "mse":
        delta = z - feedback_target(blur, y, z.dtype)
    elif blur.feedback == "ce":  # against the {0, 1} one-hot whatever the label encoding
        delta = jax.nn.softmax(z, axis=-1) - y.astype(z.dtype)
    else:
        raise ValueError(f"unknown feedback {blur.feedback!r}")
    rest = jnp.zeros(z.shape + (A_L.shape[-1] - 2,), z.dtype)
    return jnp.concatenate([z[..., None], delta[..., None], rest], axis=-1)


# ----- synapses (spec §4 step 6) --------------------------------------------------------------------------------


def packed_activity(pre: Array, post: Array, bias: float = 1.0) -> Array:
    """X = concat(pre, bias·ones[B, 1, k], post): [B, n+1+m, k]."""
    B, _, k = pre.shape
    return jnp.concatenate([pre, jnp.full((B, 1, k), bias, pre.dtype), post], axis=1)


def hebbian(genome: BLURGenome, pre: Array, post: Array) -> Array:
    """H[i,j,c] = Σ_b P[b,i,c]·Q[b,j,c], P = X·ν̃, Q[b,j,c] = Σ_d μ̃[c,d]·X[b,j,d], over the whole packed X (eq. 7)."""
    X = packed_activity(pre, post)
    P = jnp.einsum("bid,dc->bic", X, genome.synapse_pre)
    Q = jnp.einsum("cd,bjd->bjc", genome.synapse_post, X)
    return jnp.einsum("bic,bjc->ijc", P, Q)


def oja_term(blur: BLUR, genome: BLURGenome, W: Array, pre: Array, post: Array) -> Array:
    """Code form: O[i,j,c] = −sign(η̃)·κ·|ρ|·W[i,j,c]·Σ_b y[b,j,c]², y[b,j,c] = Σ_l μ̃[c,l]·X₀[b,j,l], X₀ = X with
    bias 0. Paper form (eq. 8): O[i,j,c] = −sign(η̃)·κ·|ρ|·W[i,j,c]·Σ_r W[r,j,c]², r over the rows of i's group
    (pre + bias rows for the forward block, post rows for the backward block)."""
    scale = -jnp.sign(genome.synapse_update) * blur.oja_extra_multiplier * jnp.abs(genome.oja_multiplier)
    if blur.oja_form == "paper":
        n_pre = pre.shape[1] + 1  # pre neurons and the bias row
        column_norms = jnp.zeros_like(W)
        for i in range(W.shape[0]):
            group = slice(0, n_pre) if i < n_pre else slice(n_pre, W.shape[0])
            column_norms = column_norms.at[i].set(jnp.sum(W[group] ** 2, axis=0))
        return scale * W * column_norms
    X0 = packed_activity(pre, post, bias=0.0)
    y = jnp.einsum("cl,bjl->bjc", genome.synapse_post, X0)
    return scale * jnp.einsum("ijc,jc->ijc", W, jnp.sum(y**2, axis=0))


def apply_synapse_update(blur: BLUR, genome: BLURGenome, W: Array, delta: Array) -> Array:
    """W ← f̃·W + η̃·Δ, or the exp_update saturation; ζ = identity."""
    if blur.saturation_type == "exp_update":
        D = (genome.synapse_keep - 1.0) * W + genome.synapse_update * delta
        D = D * jnp.exp(-jnp.abs(W) * (blur.saturation_epsilon + jnp.abs(genome.saturation)))
        return W + D
    return genome.synapse_keep * W + genome.synapse_update * delta


def synapse_update(blur: BLUR, genome: BLURGenome, W: Array, pre: Array, post: Array, n: int) -> Array:
    """One connection's Hebbian step: H, the syncs, then (after them) the Oja term, then the gates."""
    delta = sync(blur, hebbian(genome, pre, post), n)
    if blur.oja:
        delta = delta + oja_term(blur, genome, W, pre, post)
    return apply_synapse_update(blur, genome, W, delta)


# ----- one step -------------------------------------------------------------------------------------------------


def _read(blur: BLUR, genome: BLURGenome, block: Array) -> Array:
    """F̂ or Ĝ: the stored block, or colnorm(·)·r? when normalize_in_activations."""
    return colnorm(block, _rescale_to(blur, genome)) if blur.normalize_in_activations else block


def _flat_batch(x: Array, batched: bool, dtype: jnp.dtype) -> Array:
    x = x if batched else x[None]
    return x.reshape((x.shape[0], -1)).astype(dtype)


def _normalised_synapses(
    blur: BLUR, genome: BLURGenome, packed: list[Array], sizes: list[int]
) -> list[Array]:
    if not blur.normalize_synapses:
        return list(packed)
    return [
        normalize_packed(blur, layer_genome(blur, genome, layer), W, sizes[layer])
        for layer, W in enumerate(packed)
    ]


def _forward_pass(
    blur: BLUR, genome: BLURGenome, packed: list[Array], x: Array, sizes: list[int]
) -> list[Array]:
    """Steps 0 and 2: neurons reset, the input injected, then ℓ = 0..L−1 in increasing order."""
    k = blur.num_states
    B = x.shape[0]
    A = [jnp.zeros((B, size, k), x.dtype) for size in sizes]
    A[0] = input_neurons(x, k)
    L = len(packed)
    for layer in range(L):
        g = layer_genome(blur, genome, layer)
        F = _read(blur, g, forward_block(packed[layer], sizes[layer]))
        U = forward_signal(g, A[layer], F)
        activation = blur.last_layer_activation if layer + 1 == L else blur.forward_activation
        A[layer + 1] = neuron_forward_update(blur, g, A[layer + 1], U, activation)
    return A


def reference_step(
    blur: BLUR, genome: BLURGenome, packed: list[Array], x: Array, y: Array
) -> tuple[Array, list[Array], list[Array], list[Array]]:
    """One inner step (spec §4, steps 0–6) on a batch x [B, …], one-hot y [B, C] (or one example x [d], y [C]).

    Returns (logits A_L[…,0] after the forward pass, the new packed synapses, the neurons A_ℓ after the forward
    pass (the output before the feedback injection), the neurons after the backward pass (the output carrying the
    feedback; what the Hebbian update reads)). The neurons keep their batch axis, B = 1 for one example.
    """
    batched = y.ndim == 2
    y = y if batched else y[None]
    x = _flat_batch(x, batched, packed[0].dtype)
    sizes = layer_sizes(blur, packed, x.shape[1])
    L = len(packed)
    # 1. synapse normalisation, persistent.
    packed = _normalised_synapses(blur, genome, packed, sizes)
    # 0. and 2. forward.
    after_forward = _forward_pass(blur, genome, packed, x, sizes)
    logits = after_forward[L][..., 0]
    # 5. feedback, then backward ℓ = L−1..0; the ℓ = 0 result is discarded (layer 0 is not updatable).
    A = list(after_forward)
    A[L] = inject_feedback(blur, A[L], y)
    for layer in reversed(range(L)):
        g = layer_genome(blur, genome, layer)
        G = _read(blur, g, backward_block(packed[layer], sizes[layer]))
        V = backward_signal(g, A[layer + 1], G)
        new = neuron_backward_update(blur, g, A[layer], V)
        if layer > 0:
            A[layer] = new
    after_backward = A
    # 6. synapses, every connection independently.
    pre_source = after_forward if blur.use_forward_activations_for_synapse_update else after_backward
    new_packed = []
    for layer in range(L):
        g = layer_genome(blur, genome, layer)
        new_packed.append(
            synapse_update(blur, g, packed[layer], pre_source[layer], after_backward[layer + 1], sizes[layer])
        )
    return (logits if batched else logits[0]), new_packed, after_forward, after_backward


def reference_predict(blur: BLUR, genome: BLURGenome, packed: list[Array], x: Array) -> Array:
    """A forward-only pass (steps 0–2; the normalisation is not stored): the logits A_L[…,0] of a batch x [B, …]
    (any x with ndim >= 2) or of one flat example x [d]."""
    batched = x.ndim >= 2
    xb = _flat_batch(x, batched, packed[0].dtype)
    sizes = layer_sizes(blur, packed, xb.shape[1])
    neurons = _forward_pass(blur, genome, _normalised_synapses(blur, genome, packed, sizes), xb, sizes)
    logits = neurons[-1][..., 0]
    return logits if batched else logits[0]


def reference_episode(
    blur: BLUR, genome: BLURGenome, packed: list[Array], xs: Array, ys: Array
) -> tuple[Array, list[Array]]:
    """T steps in a Python loop: logits [T, …] (each made before its label is seen) and the final packed synapses."""
    all_logits = []
    for t in range(ys.shape[0]):
        logits, packed, _, _ = reference_step(blur, genome, packed, xs[t], ys[t])
        all_logits.append(logits)
    return jnp.stack(all_logits), packed
