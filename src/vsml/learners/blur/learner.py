"""BLUR: Bidirectional Learned Update Rules (Sandler et al., ICML 2021, arXiv 2104.04657).

Neurons carry k states, synapses k channels. One inner step on a batch (x, y) (spec blur.md §4):

    A_ℓ ← 0;  A_0 ← [x, 0, …, 0]                                         (neurons reset every step)
    forward,  ℓ = 0..L−1:  U[b,j,c] = Σ_i Σ_d [A_ℓ, 1][b,i,d]·ν[d,c]·F_ℓ[i,j,c]
                           A_{ℓ+1} ← φ(f·A_{ℓ+1} + η·U)                  (eq. 5; A_{ℓ+1} = 0 here)
    feedback:              A_L ← [A_L[…,0], δ, 0, …]                       (δ = ±1 label by default)
    backward, ℓ = L−1..1:  V[b,i,c] = Σ_j Σ_d A_{ℓ+1}[b,j,d]·μ[d,c]·G_ℓ[j,i,c]
                           A_ℓ ← ψ(f·A_ℓ + η·V)                          (eq. 6; or a multiplicative form)
    synapses, every ℓ:     P = X·ν̃,  Q = X·μ̃ᵀ  with X = [pre, 1, post]
                           ΔF[i,j,c] = Σ_b P_pre[b,i,c]·Q_post[b,j,c],  ΔG[j,i,c] = Σ_b P_post[b,j,c]·Q_pre[b,i,c]
                           F ← f̃·F + η̃·(ΔF + Oja),  G likewise          (eq. 7–8)

The prediction is the output's state 0 after the forward pass, made before the label is injected, so BLUR is an
online learner under the common interface (`step` = predict the batch, then learn from it); `predict` is the
forward-only pass the paper's held-out evaluation uses.

Faithful to the authors' step (`blur.py`): the order above; the batch *sum* in the Hebbian term; bias neurons of
1 in every state on both sides; ν, μ, ν̃ indexed T[source, target] and μ̃ indexed μ̃[channel, post state] (spec
§11.1); the symmetry syncs (in/out first, then states) after each Hebbian update and at initialisation; the Oja
term of the code (−sign(η̃)·|ρ|·W·Σ_b y², added after the syncs); synapse normalisation by columns; no constraint
on any gene. F and G are stored apart (the authors' packed tensor has blocks nothing reads; `reference.py`
keeps the packed layout and the tests check that the two agree). Synapses and neurons are stored channel-first
(the k states lead: F_ℓ [k, n+1, m], A_ℓ [k, B, n] inside the step), so every pass and every Hebbian update is k
plain matrix products that XLA runs on the stored arrays; with the states last it transposed the synapses inside
every product, and the step took ~1.7x as long (benchmarks/blur_step.py, 196 → 512 → 10, batch 128, on a CPU).

Documented choices where the paper and the code disagree or are silent (spec §10):
- Labels enter as a ±1 one-hot (`label_encoding="pm1"`, inferred from the authors' accuracy helpers); "01" is
  an option. `feedback="mse"` / `"ce"` write ∂L/∂z_L instead (what makes the backprop genome exactly SGD, §8).
- Activation normalisation is the paper's (§3.4), not in the code: batch-norm-like over the batch (optionally
  also the neurons) of the pre-activation, with the genome's γ, β. The learner's default is the code's (off:
  batch statistics are degenerate for one online example); the paper configs (configs/blur) turn it on.
- Oja: the paper's eq. (8) weight-norm decay by default (`oja_form="paper"`); the code's activity form
  (`oja_form="code"`, the only one the authors' code runs) is an option. Meta-losses: the paper's cross-entropy
  (`query_ce`) or CMA-ES's error rate; the code's L2 against ±1 targets is `query_l2` (meta/objectives.py).
  Meta-optimiser settings in configs follow the paper (Adam 5e−4, clip 10), not the colab (1e−3, no clip).
- Neurons are always reset at the start of a step (`zero_out_neurons=True`, the default); the optional Hebbian
  update after the forward pass and `supervised_every` are not implemented.
- With `per_layer_genome`, genome arrays get a leading [L] axis; connection ℓ's genome drives the forward update
  into layer ℓ+1, the backward update into layer ℓ and the synapses of connection ℓ.
- Initial synapses: U(−1, 1)·`init_scale` (divided by √(n+1+m) with `scale_by_channels`, as the code), drawn from
  the episode key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vsml.learners.base import Array, PyTree, TaskSpec

ACTIVATIONS = (
    "identity",
    "tanh",
    "relu",
    "relu_tanh",
    "sigmoid",
    # Per-state (σ(x₀), σ'(x₁)): what the exact-backprop configuration needs (spec §4, §8.2).
    "sigmoid_with_grad",
    "tanh_with_grad",
    "linear_with_grad",
)
BACKWARD_UPDATES = ("additive", "multiplicative", "multiplicative_second_state")
FEEDBACKS = ("label", "mse", "ce")
LABEL_ENCODINGS = ("pm1", "01")
NORMALISATIONS = ("none", "forward", "backward", "both")
NORM_AXES = ("batch", "batch_neurons")
GENOME_INITS = ("random", "backprop")
SATURATIONS = ("none", "exp_update")
OJA_FORMS = ("paper", "code")
COLNORM_EPS = 1e-9  # spec §4
ACTIVATION_NORM_EPS = 1e-5


class BLURGenome(NamedTuple):
    """The meta-parameters (spec §3.1); matrices [k, k] (or [L, k, k] per layer), scalars [] (or [L])."""

    neuron_forward: Array  # ν [k, k], ν[source state, target state]
    neuron_backward: Array  # μ [k, k]
    synapse_pre: Array  # ν̃ [k, k], ν̃[state, channel]
    synapse_post: Array  # μ̃ [k, k], μ̃[channel, state]
    neuron_keep: Array  # f []
    neuron_update: Array  # η []
    synapse_keep: Array  # f̃ []
    synapse_update: Array  # η̃ [] (learning rate and sign)
    oja_multiplier: Array  # ρ [] (used as |ρ|)
    saturation: Array  # s [] (used as |s|)
    rescale_to: Array  # r [] (after synapse normalisation, with `rescale`)
    norm_multiplier: Array  # γ [] (activation normalisation)
    norm_shift: Array  # β []


class BLURState(NamedTuple):
    """The synapses of one network (the inner-loop weights): per connection ℓ, n = n_ℓ, m = n_{ℓ+1}.

    Channel-first: `forward[ℓ][c]` is channel c of F_ℓ, an [n + 1, m] matrix (the spec's F_ℓ[i, j, c] is
    `forward[ℓ][c, i, j]`), so each channel is a plain weight matrix and the passes are batched matmuls over c.
    """

    forward: tuple[Array, ...]  # F_ℓ [k, n + 1, m]; row n is the bias
    backward: tuple[Array, ...]  # G_ℓ [k, m, n]


class Activity(NamedTuple):
    """The neurons of every layer after one step (for tests and introspection): A_ℓ [B, n_ℓ, k] (states last,
    as the spec writes them; the step itself keeps them channel-first, [k, B, n_ℓ])."""

    forward: tuple[Array, ...]  # after the forward pass (and the feedback injection for the output)
    backward: tuple[Array, ...]  # after the backward pass (what the Hebbian update reads)


@dataclass(frozen=True)
class BLUR:
    """Static settings of a BLUR network; defaults are the authors' `default_network_spec` (spec §4), except
    the Oja form, where the paper's eq. (8) is the default."""

    hidden_sizes: tuple[int, ...] = (512,)
    num_states: int = 2  # k
    forward_activation: str = "relu_tanh"  # φ of hidden layers
    last_layer_activation: str = "tanh"  # φ of the output layer
    backward_activation: str = "relu_tanh"  # ψ
    backward_update: str = "additive"
    symmetric_in_out: bool = False  # G = Fᵀ ("symmetric" synapses)
    symmetric_states: bool = False  # every channel a copy of channel 0 ("single-state" synapses)
    per_layer_genome: bool = False
    feedback: str = "label"  # what the output's state 1 gets: the label, or ∂L/∂z_L of MSE or CE
    label_encoding: str = "pm1"
    use_forward_activations_for_synapse_update: bool = False
    normalize_synapses: bool = False  # colnorm the stored synapses at the start of each step
    normalize_in_activations: bool = False  # colnorm only when computing U and V
    rescale: bool = False  # multiply normalised synapses by the genome's r
    oja: bool = False
    # "paper": eq. (8)'s weight-norm decay −|ρ|·w_ij·Σ_r w_rj² (the rows feeding column j); "code": the authors'
    # implementation −|ρ|·w_ij·Σ_b y_bj² with y = X₀·μ̃ᵀ (spec §4, §10.5). Both made a decay by −sign(η̃).
    oja_form: str = "paper"
    oja_extra_multiplier: float = 1.0  # κ of spec §4
    saturation_type: str = "none"
    saturation_epsilon: float = 0.0  # ε of exp_update; unknown in the spec, 0 by our choice
    # The paper's normalisation (§3.4, Fig. 8) is off by default only because statistics over the batch are
    # degenerate for a single online example; every BLUR config in configs/blur turns it on ("both").
    activation_normalization: str = "none"
    activation_norm_axes: str = "batch"
    init_scale: float = 1.0
    init_bias: float = 0.0
    scale_by_channels: bool = False
    genome_init: str = "random"
    genome_init_std: float = 1.0  # neuron_transform_std = synapse_transform_std = 1 (spec §3.1)
    # η̃ of the initial genome: the authors' random genome starts at −1e−3; the backprop genome at +λ (it must be
    # positive with label feedback, negative with mse/ce feedback: spec §11.2; `init_meta` picks the sign).
    init_synapse_update: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        choices = {
            "forward_activation": ACTIVATIONS,
            "last_layer_activation": ACTIVATIONS,
            "backward_activation": ACTIVATIONS,
            "backward_update": BACKWARD_UPDATES,
            "feedback": FEEDBACKS,
            "label_encoding": LABEL_ENCODINGS,
            "activation_normalization": NORMALISATIONS,
            "activation_norm_axes": NORM_AXES,
            "genome_init": GENOME_INITS,
            "saturation_type": SATURATIONS,
            "oja_form": OJA_FORMS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"BLUR.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.num_states < 2:
            raise ValueError(
                f"BLUR.num_states must be >= 2 (forward and feedback states), got {self.num_states}"
            )
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"BLUR.hidden_sizes must be positive, got {list(self.hidden_sizes)}")
        if self.init_scale <= 0:
            raise ValueError(f"BLUR.init_scale must be > 0, got {self.init_scale}")

    @property
    def num_connections(self) -> int:
        return len(self.hidden_sizes) + 1

    def layer_sizes(self, spec: TaskSpec) -> tuple[int, ...]:
        return (spec.input_size, *self.hidden_sizes, spec.num_classes)

    # ----- the interface ---------------------------------------------------------------------------------------

    def init_meta(self, key: Array) -> BLURGenome:
        """A random genome as the authors' `create_random_genome`, or the backprop genome (spec §3.1–3.2)."""
        if self.genome_init == "backprop":
            rate = abs(self.init_synapse_update)
            genome = backprop_genome(self.num_states, rate if self.feedback == "label" else -rate)
        else:
            genome = random_genome(key, self.num_states, self.genome_init_std)
        if self.per_layer_genome:
            genome = jax.tree.map(lambda g: jnp.stack([g] * self.num_connections), genome)
        return genome

    def init_state(self, meta: BLURGenome, key: Array, spec: TaskSpec) -> BLURState:
        del meta  # initial synapses are not genome-controlled (spec §2.2)
        sizes = self.layer_sizes(spec)
        keys = jax.random.split(key, 2 * self.num_connections)
        forward, backward = [], []
        for layer, (n, m) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            scale = self.init_scale / (jnp.sqrt(n + 1 + m) if self.scale_by_channels else 1.0)
            k = self.num_states
            # Drawn states-last, as before the layout became channel-first: a key gives the same synapses.
            f = (
                jax.random.uniform(keys[2 * layer], (n + 1, m, k), minval=-1.0, maxval=1.0) * scale
                + self.init_bias
            )
            g = (
                jax.random.uniform(keys[2 * layer + 1], (m, n, k), minval=-1.0, maxval=1.0) * scale
                + self.init_bias
            )
            f, g = self._sync(jnp.moveaxis(f, -1, 0), jnp.moveaxis(g, -1, 0))
            forward.append(f)
            backward.append(g)
        return BLURState(tuple(forward), tuple(backward))

    def step(self, meta: BLURGenome, state: BLURState, x: Array, y: Array) -> tuple[Array, BLURState]:
        """Predict the batch `x: [B, *input_shape]` (or one example), then learn from its one-hot labels `y`."""
        logits, state, _ = self.step_with_activity(meta, state, x, y)
        return logits, state

    def predict(self, meta: BLURGenome, state: BLURState, x: Array) -> Array:
        """Forward-only pass: the logits A_L[…,0] for `x: [B, *input_shape]` (or one example); nothing learns."""
        unbatched = self._is_single_example(state, x)
        inputs = self._input_neurons(x[None] if unbatched else x, state.forward[0].dtype)
        if self.normalize_synapses:
            state = self._normalised(meta, state)
        logits = self._forward(meta, state, inputs)[-1][0]
        return logits[0] if unbatched else logits

    def step_with_activity(
        self, meta: BLURGenome, state: BLURState, x: Array, y: Array
    ) -> tuple[Array, BLURState, Activity]:
        """`step`, also returning every layer's neurons after the forward and the backward pass."""
        unbatched = y.ndim == 1
        if unbatched:
            x, y = x[None], y[None]
        if self.normalize_synapses:  # spec §4 step 1: persistent
            state = self._normalised(meta, state)
        forward = self._forward(meta, state, self._input_neurons(x, state.forward[0].dtype))
        logits = forward[-1][0]
        output = self._inject_feedback(forward[-1], y)
        backward = self._backward(meta, state, (*forward[:-1], output))
        pre_source = (*forward[:-1], output) if self.use_forward_activations_for_synapse_update else backward
        new_forward, new_backward = [], []
        for layer in range(self.num_connections):
            f, g = self._update_synapses(
                self._genome(meta, layer),
                state.forward[layer],
                state.backward[layer],
                pre_source[layer],
                backward[layer + 1],
            )
            new_forward.append(f)
            new_backward.append(g)
        activity = Activity(  # states last, as the spec writes neurons (dead code when only `step` is used)
            tuple(jnp.moveaxis(a, 0, -1) for a in (*forward[:-1], output)),
            tuple(jnp.moveaxis(a, 0, -1) for a in backward),
        )
        return (
            (logits[0] if unbatched else logits),
            BLURState(tuple(new_forward), tuple(new_backward)),
            activity,
        )

    # ----- the passes -------------------------------------------------------------------------------------------

    def _is_single_example(self, state: BLURState, x: Array) -> bool:
        # Inputs are flattened, so any shape with the network's input size works: [B, *shape] or one [*shape].
        size = state.forward[0].shape[1] - 1
        if x.ndim >= 1 and math.prod(x.shape[1:]) == size:
            return False
        if math.prod(x.shape) == size:
            return True
        raise ValueError(f"BLUR.predict: x of shape {tuple(x.shape)} does not hold inputs of size {size}")

    def _input_neurons(self, x: Array, dtype: jnp.dtype) -> Array:
        flat = x.reshape((x.shape[0], -1)).astype(dtype)
        zeros = jnp.zeros((self.num_states - 1, *flat.shape), flat.dtype)
        return jnp.concatenate([flat[None], zeros])  # [k, B, n_0]: A_0 = [x, 0, …]

    def _genome(self, meta: BLURGenome, layer: int) -> BLURGenome:
        return jax.tree.map(lambda g: g[layer], meta) if self.per_layer_genome else meta

    def _forward(self, meta: BLURGenome, state: BLURState, inputs: Array) -> list[Array]:
        layers = [inputs]
        for layer in range(self.num_connections):
            genome = self._genome(meta, layer)
            f = self._read_weights(genome, state.forward[layer])
            source = _mix_states(_with_bias(layers[-1]), genome.neuron_forward)  # Σ_d Ā[b,i,d] ν[d,c]
            u = jnp.einsum("cbi,cij->cbj", source, f)
            # Neurons were reset to 0, so f·A_{ℓ+1} vanishes (spec §4 step 2).
            pre = self._normalise_activity(genome, genome.neuron_update * u, "forward")
            last = layer == self.num_connections - 1
            activation = self.last_layer_activation if last else self.forward_activation
            layers.append(activate(activation, pre, axis=0))  # the states on axis 0
        return layers

    def _inject_feedback(self, output: Array, y: Array) -> Array:
        """Spec §2.1: state 0 keeps the prediction, state 1 gets the label (or ∂L/∂z_L), the rest 0."""
        z = output[0]
        labels = y.astype(z.dtype)
        if self.feedback == "label":
            delta = 2.0 * labels - 1.0 if self.label_encoding == "pm1" else labels
        elif self.feedback == "mse":  # L_b = ½‖z_b − t_b‖², t in the label encoding
            target = 2.0 * labels - 1.0 if self.label_encoding == "pm1" else labels
            delta = z - target
        else:  # softmax cross-entropy against the {0, 1} one-hot (spec §11.6)
            delta = jax.nn.softmax(z, axis=-1) - labels
        rest = jnp.zeros((self.num_states - 2, *z.shape), z.dtype)
        return jnp.concatenate([z[None], delta[None], rest])

    def _backward(self, meta: BLURGenome, state: BLURState, layers: tuple[Array, ...]) -> tuple[Array, ...]:
        layers = list(layers)
        for layer in range(self.num_connections - 1, 0, -1):  # ℓ = 0 would write the frozen inputs
            genome = self._genome(meta, layer)
            g = self._read_weights(genome, state.backward[layer])
            source = _mix_states(layers[layer + 1], genome.neuron_backward)  # Σ_d A_{ℓ+1}[b,j,d] μ[d,c]
            v = jnp.einsum("cbj,cji->cbi", source, g)
            own = layers[layer]
            if self.backward_update == "additive":
                pre = genome.neuron_keep * own + genome.neuron_update * v
            elif self.backward_update == "multiplicative":
                pre = genome.neuron_keep * own * v
            else:  # state 0 passes through (scaled by f), the others are gated by V; no η (spec §4)
                pre = genome.neuron_keep * jnp.concatenate([own[:1], own[1:] * v[1:]])
            pre = self._normalise_activity(genome, pre, "backward")
            layers[layer] = activate(self.backward_activation, pre, axis=0)
        return tuple(layers)

    # ----- synapses ---------------------------------------------------------------------------------------------

    def _update_synapses(
        self, genome: BLURGenome, f: Array, g: Array, pre: Array, post: Array
    ) -> tuple[Array, Array]:
        """Spec §4 step 6 for one connection: the generalised Hebbian update (eq. 7), syncs, Oja, gates."""
        pre_bias = _with_bias(pre)  # [k, B, n+1]
        p_pre = _mix_states(pre_bias, genome.synapse_pre)  # P = X·ν̃
        p_post = _mix_states(post, genome.synapse_pre)
        q_post = _mix_states(post, genome.synapse_post.T)  # Q = X·μ̃ᵀ
        q_pre = _mix_states(pre, genome.synapse_post.T)  # the bias column of G is never read (spec §2.2)
        delta_f = jnp.einsum("cbi,cbj->cij", p_pre, q_post)  # a batch sum, not a mean (spec §10.7)
        delta_g = jnp.einsum("cbj,cbi->cji", p_post, q_pre)
        delta_f, delta_g = self._sync(delta_f, delta_g)
        if self.oja:  # added after the syncs (spec §4)
            decay = (
                -jnp.sign(genome.synapse_update) * self.oja_extra_multiplier * jnp.abs(genome.oja_multiplier)
            )
            if self.oja_form == "paper":  # Σ_r w_rj² over the rows feeding column j: axis 1 of F and of G
                delta_f = delta_f + decay * f * jnp.sum(f**2, axis=1, keepdims=True)
                delta_g = delta_g + decay * g * jnp.sum(g**2, axis=1, keepdims=True)
            else:  # y = X₀·μ̃ᵀ with the bias set to 0, i.e. q without its bias row; Σ over the batch (axis 1)
                delta_f = delta_f + decay * f * jnp.sum(q_post**2, axis=1, keepdims=True)
                delta_g = delta_g + decay * g * jnp.sum(q_pre**2, axis=1, keepdims=True)
        return self._apply_update(genome, f, delta_f), self._apply_update(genome, g, delta_g)

    def _apply_update(self, genome: BLURGenome, w: Array, delta: Array) -> Array:
        if self.saturation_type == "exp_update":
            change = (genome.synapse_keep - 1.0) * w + genome.synapse_update * delta
            change = change * jnp.exp(-jnp.abs(w) * (self.saturation_epsilon + jnp.abs(genome.saturation)))
            return w + change
        return genome.synapse_keep * w + genome.synapse_update * delta

    def _sync(self, f: Array, g: Array) -> tuple[Array, Array]:
        """The symmetry options of spec §2.2, in the authors' order: in/out first, then states."""
        if self.symmetric_in_out:
            g = jnp.transpose(f[:, :-1], (0, 2, 1))
        if self.symmetric_states:
            f = jnp.broadcast_to(f[:1], f.shape)
            g = jnp.broadcast_to(g[:1], g.shape)
        return f, g

    def _read_weights(self, genome: BLURGenome, w: Array) -> Array:
        return self._colnorm(genome, w) if self.normalize_in_activations else w

    def _colnorm(self, genome: BLURGenome, w: Array) -> Array:
        """colnorm(M)[c,·,j] = M[c,·,j] / √(Σ_rows M² + 1e−9), times r with `rescale` (spec §4, App. C.6)."""
        normed = w / jnp.sqrt(jnp.sum(w**2, axis=1, keepdims=True) + COLNORM_EPS)
        return normed * genome.rescale_to if self.rescale else normed

    def _normalised(self, meta: BLURGenome, state: BLURState) -> BLURState:
        forward = tuple(self._colnorm(self._genome(meta, i), f) for i, f in enumerate(state.forward))
        backward = tuple(self._colnorm(self._genome(meta, i), g) for i, g in enumerate(state.backward))
        return BLURState(forward, backward)

    def _normalise_activity(self, genome: BLURGenome, pre: Array, direction: str) -> Array:
        """The paper's per-channel, batch-norm-like normalisation (§3.4; not in the code, spec §4)."""
        if self.activation_normalization not in (direction, "both"):
            return pre
        axes = (1,) if self.activation_norm_axes == "batch" else (1, 2)  # of [k, B, n]
        mean = jnp.mean(pre, axis=axes, keepdims=True)
        var = jnp.var(pre, axis=axes, keepdims=True)
        return genome.norm_multiplier * (pre - mean) / jnp.sqrt(var + ACTIVATION_NORM_EPS) + genome.norm_shift


def _with_bias(neurons: Array) -> Array:
    """[k, B, n] -> [k, B, n + 1]: the bias neuron is 1 in every state (spec §4)."""
    ones = jnp.ones(neurons.shape[:-1] + (1,), neurons.dtype)
    return jnp.concatenate([neurons, ones], axis=-1)


def _mix_states(neurons: Array, matrix: Array) -> Array:
    """out[c] = Σ_d neurons[d]·matrix[d, c] for channel-first neurons [k, B, n]: the spec's A·T over states."""
    return jnp.tensordot(matrix, neurons, axes=(0, 0))


def activate(name: str, x: Array, axis: int = -1) -> Array:
    """The nonlinearities of spec §4; the `*_with_grad` ones act per state (the states on `axis`):
    (φ(x₀), φ'(x₁), x₂, …)."""
    if name == "identity":
        return x
    if name == "tanh":
        return jnp.tanh(x)
    if name == "relu":
        return jax.nn.relu(x)
    if name == "relu_tanh":
        return jax.nn.relu(jnp.tanh(x))
    if name == "sigmoid":
        return jax.nn.sigmoid(x)
    if name not in ("sigmoid_with_grad", "tanh_with_grad", "linear_with_grad"):
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    x0, x1, rest = (jax.lax.slice_in_dim(x, a, b, axis=axis) for a, b in ((0, 1), (1, 2), (2, None)))
    if name == "sigmoid_with_grad":
        s1 = jax.nn.sigmoid(x1)
        return jnp.concatenate([jax.nn.sigmoid(x0), s1 * (1.0 - s1), rest], axis=axis)
    if name == "tanh_with_grad":
        return jnp.concatenate([jnp.tanh(x0), 1.0 - jnp.tanh(x1) ** 2, rest], axis=axis)
    return jnp.concatenate([x0, jnp.ones_like(x1), rest], axis=axis)  # linear_with_grad


def random_genome(key: Array, num_states: int, std: float = 1.0) -> BLURGenome:
    """The authors' `create_random_genome` (spec §3.1): N(0, std²) matrices, scalars at their defaults."""
    keys = jax.random.split(key, 4)
    k = num_states

    def matrix(i: int) -> Array:
        return std * jax.random.normal(keys[i], (k, k))

    one, zero = jnp.float32(1.0), jnp.float32(0.0)
    return BLURGenome(
        neuron_forward=matrix(0),
        neuron_backward=matrix(1),
        synapse_pre=matrix(2),
        synapse_post=matrix(3),
        neuron_keep=one,
        neuron_update=one,
        synapse_keep=one,
        synapse_update=jnp.float32(-1e-3),
        oja_multiplier=one,
        saturation=one,
        rescale_to=one,
        norm_multiplier=one,
        norm_shift=zero,
    )


def backprop_genome(num_states: int = 2, synapse_update: float = -0.1) -> BLURGenome:
    """The published gradient genome (spec §3.2, paper §4.5) with f = η = f̃ = 1 and η̃ = `synapse_update`.

    ν = (1 1; 0 0), μ = I, ν̃ = I, μ̃ = (0 1; 1 0); for k > 2 the extra states are identities (our choice).
    With ∂L/∂z_L feedback, η̃ = −λ is SGD with rate λ on the batch-summed loss; with the label feedback, η̃ = +λ
    (spec §11.2).
    """
    k = num_states
    nu = jnp.eye(k).at[0, :2].set(1.0).at[1, 1].set(0.0)
    swap = jnp.eye(k).at[:2, :2].set(jnp.array([[0.0, 1.0], [1.0, 0.0]]))
    one, zero = jnp.float32(1.0), jnp.float32(0.0)
    return BLURGenome(
        neuron_forward=nu,
        neuron_backward=jnp.eye(k),
        synapse_pre=jnp.eye(k),
        synapse_post=swap,
        neuron_keep=one,
        neuron_update=one,
        synapse_keep=one,
        synapse_update=jnp.float32(synapse_update),
        oja_multiplier=one,
        saturation=one,
        rescale_to=one,
        norm_multiplier=one,
        norm_shift=zero,
    )


def backprop_blur(
    hidden_sizes: tuple[int, ...], activation: str = "sigmoid", feedback: str = "mse", **settings
) -> BLUR:
    """The configuration under which the backprop genome is exactly SGD (spec §8.2, §11.3): per-state (σ, σ′)
    forward activations, identity output and backward activations, symmetric in/out and states,
    `multiplicative_second_state`, no normalisation, no Oja."""
    per_state = {"sigmoid": "sigmoid_with_grad", "tanh": "tanh_with_grad", "identity": "linear_with_grad"}
    if activation not in per_state:
        raise ValueError(f"backprop_blur: activation must be one of {sorted(per_state)}, got {activation!r}")
    return BLUR(
        hidden_sizes=tuple(hidden_sizes),
        num_states=2,
        forward_activation=per_state[activation],
        last_layer_activation="identity",
        backward_activation="identity",
        backward_update="multiplicative_second_state",
        symmetric_in_out=True,
        symmetric_states=True,
        feedback=feedback,
        activation_normalization="none",
        genome_init="backprop",
        **settings,
    )


def count_genome_parameters(genome: PyTree) -> int:
    return sum(int(leaf.size) for leaf in jax.tree.leaves(genome))
