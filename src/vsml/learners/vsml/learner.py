"""VSML: Variable Shared Meta Learning (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905).

Every weight of a dense network is a tiny LSTM ("sub-RNN"); all of them share one parameter set V_M (the
meta-parameters, 2,384 numbers by default) and their states V_L are the weights that learn. Learning is only the
forward dynamics of this RNN (spec vsml.md §1).

Sub-RNN (spec §1.3), gate order (i, g, f, o), rows of W in the order (u, v, h):

    z = [u; v; h] W + β,   f = σ(z_f + 5),  i = σ(z_i − 5)
    c' = f ⊙ c + i ⊙ tanh(z_g),   h' = σ(z_o) ⊙ tanh(c')
    m_fwd = h' F + φ,   m_bwd = h' G + γ           (then LayerNorm over the 8 channels if `layer_norm`)

A dense layer (§1.4) applies it to every synapse (a, b) with u = U[a], v = V[b]; the outgoing forward message of
output b is the mean over a, the backward message of input a the mean over b. One time step (§1.6): x goes into
forward channel 0 of layer 1, the feedback e = [softmax(ŷ) − y, y·feed_label] into backward channels 0 and 1 of
the last layer; layers run in order, each `num_micro_ticks` times on the same incoming messages; the logit is
forward channel `output_idx` of the last layer, bounded by tanh_bound·tanh(·/tanh_bound). In forward-only mode a
layer's backward message reaches the layer below at the next step. With `backward_pass` a reverse tick runs
right after, top layer first, and the feedback is then zeroed.

This module is the fast path, in the factored form of spec §7 (checked against `reference.py` and the authors'
golden episodes in tests):
  1. the input part of the gates, U_a W_u and V_b W_v + β, is computed once per unit and step, not per synapse
     and micro tick (on layer 1 only channel 0 of U is non-zero, so it is a rank-1 outer product);
  2. messengers are affine, so without LayerNorm the mean over synapses is taken before the projection;
  3. messages are computed only after the last micro tick, and only those that are read (dead writes skipped);
  4. σ(z) = ½ + ½·tanh(z/2), with the ½ folded into the weights, so all four gates cost one tanh over 64
     channels (markedly faster than `logistic` on XLA:CPU);
  5. with `rational_tanh` (default) that tanh is float32's rational approximation written out (`fast_tanh`,
     ≤ 5e-7 from jnp.tanh); the dense step measured 1.7× (784 → 10) and 1.4× (784 → 32 → 10) faster on
     XLA:CPU (reports/speed_cpu); the conv network ~1.1× (3.5 vs 3.85 ms per episode-step, interleaved in
     one process, episodes one at a time; an earlier session measured it ~2× slower with episodes vmapped);
  6. LayerNorm's mean over synapses is folded (`mean_layer_norm_message`): one rsqrt per synapse, no
     normalised messages formed;
  7. on a CPU, a large dense layer runs its micro ticks in blocks of rows (`dense_block_synapses`), so a
     block's gate pre-activations stay in cache (784 → 128 → 10: 1.33×);
  8. opt-in for GPUs (`dense_kernel="pallas"`), a dense layer's micro ticks as one fused Pallas kernel that keeps
     the gate pre-activations in registers (`pallas.py`; not yet measured on a GPU).

The cell math these share with the conv layer and the kernel (gate folding, micro ticks, message means) is in
`cell.py`; this module holds the network: its settings, layer shapes, state, step and the dense layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vsml.learners.base import Array, TaskSpec, check_count_or_auto
from vsml.learners.modules import haiku_truncated_normal, sub_rnn_tanh
from vsml.learners.vsml.cell import (
    RECURRENT_MATMULS,
    LayerPlan,
    SubRNNParams,
    VSMLMeta,
    dense_micro_ticks,
    exact_matmul,
    gate_weights_for_tanh,
    mean_layer_norm_message,
    recurrent_product,
)
from vsml.learners.vsml.conv import conv_layer

DENSE_KERNELS = ("xla", "pallas")
# dense_block_synapses="auto" (CPU): measured with the backward pass on 784 → n → 10, one episode, 2 cores
# (M sub-RNN applications/s, whole layer vs blocks of ~12.5k synapses): n = 64 (50k synapses) 26.5 vs 27.5;
# n = 128 (100k) 19.4–19.6 vs 24.8–25.4; n = 256 (200k) 18.2 vs 23.9. Below ~50k the whole layer is as fast.
AUTO_BLOCKED_LAYER = 65_536
AUTO_BLOCK_SYNAPSES = 12_288


class VSMLState(NamedTuple):
    """V_L and the messages in flight for one episode (L = number of layers, C = number of classes)."""

    h: tuple[Array, ...]  # per layer k: [A_k, B_k, H] LSTM hidden state of every synapse
    c: tuple[Array, ...]  # per layer k: [A_k, B_k, H] LSTM cell state
    fwd_in: tuple[Array, ...]  # U_k for k = 1..L-1: [A_k, M] (U_0 is always x)
    bwd_in: tuple[Array, ...]  # V_k for k = 0..L-2: [B_k, M] (V_{L-1} is always the feedback)
    feedback: Array  # [C, 2] error and label channels for the next step


@dataclass(frozen=True)
class VSML:
    """Static settings of a VSML network (spec §1.7 switches; defaults are the authors' `default.yaml`)."""

    hidden_sizes: tuple[int, ...] = ()  # () = one dense layer input -> classes
    # Conv VSML layers before the dense ones (spec §1.5), each (channels, kernel, stride); inputs [H, W, C].
    conv_layers: tuple[tuple[int, int, int], ...] = ()
    # The authors' stride-2 backward mask ("p·s < in // s"), for exact parity only; the correct mask by default.
    authors_stride_mask_bug: bool = False
    msg_size: int = 8
    state_size: int = 16
    num_micro_ticks: int = 2
    output_idx: int = 1
    tanh_bound: float = 100.0
    init_rand_proportion: float = 0.5
    feed_label: bool = False
    layer_norm: bool = False
    backward_pass: bool = False
    layerwise_rnns: bool = False
    separate_backward_rnn: bool = False
    inner_batch: int = 1  # > 1: x [B, ...], y [B, C]; the first half of the state is shared (spec §1.8)
    # Speed only (not in the authors' code): the sub-RNNs' tanh as one rational function (modules.fast_tanh).
    rational_tanh: bool = True
    # The recurrent product h·W_h per synapse and micro tick: "float32" (exact on every backend), "tf32x3"
    # (three TF32 products on GPU tensor cores, about float32's accuracy; float32 elsewhere), "tf32" (one TF32
    # product, ~1e-3 relative; float32 on CPU) or "bfloat16" (bf16 inputs, float32 sums; ~1e-2 relative). The
    # cell state stays float32, and the other, smaller products are full float32 (`exact_matmul`) whatever
    # this says (tests/learners/vsml/test_vsml.py).
    recurrent_matmul: str = "float32"
    # Speed only: a dense layer's micro ticks in blocks of about this many synapses (a lax.map over rows of
    # synapses), so each block's gate pre-activations stay in cache; null: the whole layer at once. "auto": on
    # a CPU, layers of more than AUTO_BLOCKED_LAYER synapses in blocks of AUTO_BLOCK_SYNAPSES; never on GPUs.
    dense_block_synapses: int | str | None = "auto"
    # Speed only: "xla", or "pallas": a dense layer's micro ticks as one fused kernel (`pallas.py`; GPU, run
    # by Pallas' interpreter elsewhere, which is slow: for tests only). float32 states; blocks do not apply. For
    # ES and evaluation: its gradient recomputes the XLA form, so backprop meta-training is faster with "xla".
    dense_kernel: str = "xla"

    def __post_init__(self) -> None:
        if self.inner_batch < 1:
            raise ValueError(f"VSML.inner_batch must be >= 1, got {self.inner_batch}")
        if self.msg_size < 2:
            raise ValueError(f"VSML.msg_size must be >= 2 (error and label channels), got {self.msg_size}")
        if not 0 <= self.output_idx < self.msg_size:
            raise ValueError(f"VSML.output_idx must be in [0, msg_size), got {self.output_idx}")
        if self.num_micro_ticks < 1:
            raise ValueError(f"VSML.num_micro_ticks must be >= 1, got {self.num_micro_ticks}")
        if not 0.0 <= self.init_rand_proportion <= 1.0:
            raise ValueError(f"VSML.init_rand_proportion must be in [0, 1], got {self.init_rand_proportion}")
        if self.recurrent_matmul not in RECURRENT_MATMULS:
            raise ValueError(
                f"VSML.recurrent_matmul must be one of {RECURRENT_MATMULS}, got {self.recurrent_matmul!r}"
            )
        check_count_or_auto(self.dense_block_synapses, "VSML.dense_block_synapses")
        if self.dense_kernel not in DENSE_KERNELS:
            raise ValueError(f"VSML.dense_kernel must be one of {DENSE_KERNELS}, got {self.dense_kernel!r}")
        if self.tanh_bound <= 0:
            raise ValueError(f"VSML.tanh_bound must be positive, got {self.tanh_bound}")
        if any(int(s) < 1 for s in self.hidden_sizes):
            raise ValueError(f"VSML.hidden_sizes must be positive, got {self.hidden_sizes}")
        object.__setattr__(self, "hidden_sizes", tuple(int(s) for s in self.hidden_sizes))
        conv = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)
        for layer in conv:
            if len(layer) != 3 or layer[0] < 1 or layer[1] < 1 or layer[1] % 2 == 0 or layer[2] < 1:
                raise ValueError(
                    f"VSML.conv_layers entries are (channels >= 1, odd kernel, stride >= 1), got {layer}"
                )
        object.__setattr__(self, "conv_layers", conv)

    # ----- structure -----------------------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.conv_layers) + len(self.hidden_sizes) + 1

    @property
    def num_param_sets(self) -> int:
        per_direction = self.num_layers if self.layerwise_rnns else 1
        return per_direction * (2 if self.separate_backward_rnn else 1)

    def param_set_index(self, layer: int, reverse: bool) -> int:
        """Which parameter set the forward (or reverse) tick uses at `layer` (the golden files' f{k}/r{k})."""
        index = layer if self.layerwise_rnns else 0
        if reverse and self.separate_backward_rnn:
            index += self.num_layers if self.layerwise_rnns else 1
        return index

    def layer_plans(self, spec: TaskSpec) -> list[LayerPlan]:
        """Shapes of every layer for `spec`: conv layers on [H, W, C] inputs, then dense layers on the flat
        units (the last conv layer's output flattened in C order)."""
        plans = []
        shape = tuple(spec.input_shape)
        if self.conv_layers and len(shape) != 3:
            raise ValueError(f"VSML conv layers need inputs [H, W, C], got input shape {shape}")
        for channels, kernel, stride in self.conv_layers:
            out = (-(-shape[0] // stride), -(-shape[1] // stride), channels)  # SAME: ⌈in / s⌉
            plans.append(LayerPlan("conv", shape, out, (kernel, kernel, shape[2], channels), stride))
            shape = out
        sizes = [int(np.prod(shape)), *self.hidden_sizes, spec.num_classes]
        for A, B in zip(sizes[:-1], sizes[1:], strict=True):
            plans.append(LayerPlan("dense", (A,), (B,), (A, B)))
        return plans

    def sub_rnn_applications(self, spec: TaskSpec) -> int:
        """Sub-RNN applications of one micro tick of one example over all layers: every dense synapse once, a
        conv layer's state entries once per output position (its per-position updates, §1.5)."""
        total = 0
        for plan in self.layer_plans(spec):
            positions = plan.out_shape[0] * plan.out_shape[1] if plan.kind == "conv" else 1
            total += positions * math.prod(plan.state_shape)
        return total * self.inner_batch

    def sub_rnn_applications_per_step(self, spec: TaskSpec) -> int:
        """Sub-RNN applications per online step: every micro tick of the forward tick, and of the reverse
        tick with a backward pass (benchmarks count speed in these)."""
        ticks = self.num_micro_ticks * (2 if self.backward_pass else 1)
        return self.sub_rnn_applications(spec) * ticks

    # ----- the Learner interface -------------------------------------------------------------------------------

    def init_meta(self, key: Array) -> VSMLMeta:
        """Haiku-default initialisation (spec §1.3): truncated-normal weights (no variance correction), zero bias."""
        keys = jax.random.split(key, self.num_param_sets)
        return VSMLMeta(tuple(self._init_param_set(k) for k in keys))

    def _init_param_set(self, key: Array) -> SubRNNParams:
        M, H = self.msg_size, self.state_size
        k_lstm, k_fwd, k_bwd = jax.random.split(key, 3)

        ln = {}
        if self.layer_norm:
            ones, zeros = jnp.ones((M,), jnp.float32), jnp.zeros((M,), jnp.float32)
            ln = dict(fwd_ln_scale=ones, fwd_ln_offset=zeros, bwd_ln_scale=ones, bwd_ln_offset=zeros)
        return SubRNNParams(
            lstm_W=haiku_truncated_normal(k_lstm, (2 * M + H, 4 * H), 2 * M + H),
            lstm_b=jnp.zeros((4 * H,), jnp.float32),
            fwd_W=haiku_truncated_normal(k_fwd, (H, M), H),
            fwd_b=jnp.zeros((M,), jnp.float32),
            bwd_W=haiku_truncated_normal(k_bwd, (H, M), H),
            bwd_b=jnp.zeros((M,), jnp.float32),
            **ln,
        )

    def init_state(self, meta: VSMLMeta, key: Array, spec: TaskSpec) -> VSMLState:
        """Per-episode state; with an inner batch, B identical copies along a leading axis (spec §1.8, §1.9)."""
        state = self._init_example_state(meta, key, spec)
        if self.inner_batch == 1:
            return state
        return jax.tree.map(lambda s: jnp.broadcast_to(s, (self.inner_batch, *s.shape)), state)

    def _init_example_state(self, meta: VSMLMeta, key: Array, spec: TaskSpec) -> VSMLState:
        """Per-episode state (spec §1.9): h = 0, the first half of c truncated-normal with std 1/√A, rest 0.

        The state takes V_M's dtype (float32 normally, float64 for the high-precision parity checks).
        """
        dtype = meta.sets[0].lstm_W.dtype
        H, M = self.state_size, self.msg_size
        num_random = int(self.init_rand_proportion * H)
        plans = self.layer_plans(spec)
        keys = jax.random.split(key, len(plans))
        hs, cs = [], []
        for plan, k in zip(plans, keys, strict=True):
            # std 1/√(first state dimension): A for a dense layer, the kernel size for a conv layer (§1.9).
            shape, first = plan.state_shape, plan.state_shape[0]
            random_part = haiku_truncated_normal(k, (*shape, num_random), first, dtype)
            cs.append(jnp.concatenate([random_part, jnp.zeros((*shape, H - num_random), dtype)], axis=-1))
            hs.append(jnp.zeros((*shape, H), dtype))
        return VSMLState(
            h=tuple(hs),
            c=tuple(cs),
            fwd_in=tuple(jnp.zeros((*plan.in_shape, M), dtype) for plan in plans[1:]),
            bwd_in=tuple(jnp.zeros((*plan.out_shape, M), dtype) for plan in plans[:-1]),
            feedback=jnp.zeros((spec.num_classes, 2), dtype),
        )

    def step(self, meta: VSMLMeta, state: VSMLState, x: Array, y: Array) -> tuple[Array, VSMLState]:
        """One online step (spec §1.10): predict x with a forward tick, then turn y into the next feedback.

        With `inner_batch` B > 1: x [B, ...], y [B, C] -> logits [B, C]. First the first H/2 units of h and c
        are replaced by their batch mean (shared, "weight-like"; the rest stays per example), then every
        example steps on its own copy; the error feedback is divided by B (the CE is a batch mean, §1.8).
        """
        if self.inner_batch == 1:
            return self._example_step(meta, state, x, y)
        if x.shape[0] != self.inner_batch or y.shape[:1] != (self.inner_batch,):
            raise ValueError(
                f"VSML with inner_batch={self.inner_batch} needs x [{self.inner_batch}, ...] and "
                f"y [{self.inner_batch}, C], got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        half = self.state_size // 2

        def merge(s: Array) -> Array:
            shared = jnp.broadcast_to(jnp.mean(s[..., :half], axis=0, keepdims=True), s[..., :half].shape)
            return jnp.concatenate([shared, s[..., half:]], axis=-1)

        state = state._replace(h=tuple(map(merge, state.h)), c=tuple(map(merge, state.c)))
        return jax.vmap(self._example_step, in_axes=(None, 0, 0, 0))(meta, state, x, y)

    def predict(self, meta: VSMLMeta, state: VSMLState, x: Array) -> Array:
        """The logits of a forward tick on x without learning from it: the state the tick would leave (it
        reads the weights but, in forward-only mode, also updates them) is discarded. Inner batch: x [B, ...]."""
        if self.inner_batch == 1:
            return self._forward_tick(meta, state, x, self._check_example(state, x, None, "predict"))[0]
        return jax.vmap(self.predict, in_axes=(None, 0, 0))(meta, state, x)

    def _check_example(self, state: VSMLState, x: Array, y: Array | None, what: str) -> list[LayerPlan]:
        """The layer plans of one example, or a clear error if x (or y) does not fit the state."""
        C = state.feedback.shape[0]
        plans = self.layer_plans(TaskSpec(tuple(x.shape), C)) if x.ndim else []
        state_shapes = [tuple(h.shape[:-1]) for h in state.h]
        if [p.state_shape for p in plans] != state_shapes or (y is not None and y.shape != (C,)):
            got_y = "" if y is None else f" and y of shape {tuple(y.shape)}"
            raise ValueError(
                f"VSML.{what} got x of shape {tuple(x.shape)} ({x.size} values){got_y}, "
                f"but the state was built for layers of shapes {state_shapes} and {C} classes (one-hot y). "
                "Build the state with init_state(meta, key, TaskSpec(input_shape, num_classes)) for this "
                "task's shapes."
            )
        return plans

    def _example_step(self, meta: VSMLMeta, state: VSMLState, x: Array, y: Array) -> tuple[Array, VSMLState]:
        L = self.num_layers
        plans = self._check_example(state, x, y, "step")
        logits, hs, cs, fwd_in, bwd_in = self._forward_tick(meta, state, x, plans)

        feedback = self._feedback(logits, y)
        if self.backward_pass:
            x_in = self._input_message(x, plans[0], state.feedback.dtype)
            for k in reversed(range(L)):
                _, bwd_out, hs[k], cs[k] = self._apply_layer(
                    plans[k],
                    meta.sets[self.param_set_index(k, reverse=True)],
                    self._incoming_fwd(k, x_in, fwd_in),
                    self._incoming_bwd(k, feedback, bwd_in),
                    hs[k],
                    cs[k],
                    want_fwd=False,  # the reverse tick's forward messages are overwritten before being read
                    want_bwd=k > 0,
                    fwd_channels=None,
                )
                if k > 0:
                    bwd_in[k - 1] = jnp.reshape(bwd_out, bwd_in[k - 1].shape)  # consumed at once below
            feedback = jnp.zeros_like(feedback)  # §1.6 step 5: the next forward tick sees no feedback

        new_state = VSMLState(tuple(hs), tuple(cs), tuple(fwd_in), tuple(bwd_in), feedback)
        return logits, new_state

    # ----- internals -------------------------------------------------------------------------------------------

    def _forward_tick(
        self, meta: VSMLMeta, state: VSMLState, x: Array, plans: list[LayerPlan]
    ) -> tuple[Array, list[Array], list[Array], list[Array], list[Array]]:
        """Layers 1..L in order (spec §1.6 step 3): the logits and the new states and messages."""
        L = self.num_layers
        hs, cs = list(state.h), list(state.c)
        fwd_in, bwd_in = list(state.fwd_in), list(state.bwd_in)
        x_in = self._input_message(x, plans[0], state.feedback.dtype)
        logits = None
        for k in range(L):
            fwd_out, bwd_out, hs[k], cs[k] = self._apply_layer(
                plans[k],
                meta.sets[self.param_set_index(k, reverse=False)],
                self._incoming_fwd(k, x_in, fwd_in),
                self._incoming_bwd(k, state.feedback, bwd_in),
                hs[k],
                cs[k],
                want_fwd=True,
                # With a backward pass the forward tick's backward messages are always overwritten (dead).
                want_bwd=k > 0 and not self.backward_pass,
                fwd_channels=None if k < L - 1 else self.output_idx,
            )
            if k > 0 and not self.backward_pass:
                # consumed by layer k-1 at the next step (§1.6 delay)
                bwd_in[k - 1] = jnp.reshape(bwd_out, bwd_in[k - 1].shape)
            if k < L - 1:
                fwd_in[k] = jnp.reshape(fwd_out, fwd_in[k].shape)
            else:
                logits = self.tanh_bound * jnp.tanh(fwd_out / self.tanh_bound)
        return logits, hs, cs, fwd_in, bwd_in

    def _input_message(self, x: Array, plan: LayerPlan, dtype: jnp.dtype) -> Array:
        """x as layer 1's forward input: [A] (channel 0 only, dense) or [H, W, C, 1] (conv)."""
        x_in = jnp.reshape(x, plan.in_shape).astype(dtype)
        return x_in[..., None] if plan.kind == "conv" else x_in

    def _incoming_fwd(self, k: int, x_in: Array, fwd_in: list[Array]) -> Array:
        """Layer 0 gets x in channel 0 only ([A] dense, rank-1 shortcut, or [H, W, C, 1] conv); deeper layers
        all M channels."""
        return x_in if k == 0 else fwd_in[k - 1]

    def _incoming_bwd(self, k: int, feedback: Array, bwd_in: list[Array]) -> Array:
        """The last layer gets the feedback in channels 0, 1 ([B, 2]); others all M channels [B, M]."""
        return feedback if k == self.num_layers - 1 else bwd_in[k]

    def _feedback(self, logits: Array, y: Array) -> Array:
        """e = [∂CE/∂ŷ, y·feed_label] (spec §1.6 step 4); the gradient is w.r.t. the bounded logit."""
        error = (jax.nn.softmax(logits) - y.astype(logits.dtype)) / self.inner_batch
        label = y if self.feed_label else jnp.zeros_like(y)
        return jnp.stack([error, label.astype(error.dtype)], axis=-1)

    def _apply_layer(
        self,
        plan: LayerPlan,
        p: SubRNNParams,
        u: Array,
        v: Array,
        h: Array,
        c: Array,
        *,
        want_fwd: bool,
        want_bwd: bool,
        fwd_channels: int | None,
    ) -> tuple[Array | None, Array | None, Array, Array]:
        if plan.kind == "dense":
            return self.dense_layer(
                p, u, v, h, c, want_fwd=want_fwd, want_bwd=want_bwd, fwd_channels=fwd_channels
            )
        return conv_layer(
            p, u, v, h, c,
            stride=plan.stride,
            num_micro_ticks=self.num_micro_ticks,
            layer_norm=self.layer_norm,
            authors_stride_mask_bug=self.authors_stride_mask_bug,
            recurrent=self._recurrent,
            tanh=sub_rnn_tanh(self.rational_tanh),
            want_fwd=want_fwd,
            want_bwd=want_bwd,
        )  # fmt: skip

    def dense_layer(
        self,
        p: SubRNNParams,
        u: Array,
        v: Array,
        h: Array,
        c: Array,
        *,
        want_fwd: bool,
        want_bwd: bool,
        fwd_channels: int | None,
    ) -> tuple[Array | None, Array | None, Array, Array]:
        """`num_micro_ticks` applications of the dense layer op (spec §1.4) in factored form (spec §7).

        u: [A] (channel 0 only) or [A, M]; v: [B, 2] (channels 0, 1) or [B, M]; h, c: [A, B, H].
        Returns (fwd [B, M] or [B] if `fwd_channels` is an index, bwd [A, M], h, c).
        """
        M = self.msg_size
        W, b = gate_weights_for_tanh(p.lstm_W, p.lstm_b)
        W_u, W_v, W_h = W[:M], W[M : 2 * M], W[2 * M :]
        gate_u = (
            u[:, None] * W_u[0][None, :] if u.ndim == 1 else exact_matmul(u, W_u[: u.shape[-1]])
        )  # [A, 4H]
        gate_v = exact_matmul(v, W_v[: v.shape[-1]]) + b[None, :]  # [B, 4H]
        tanh = sub_rnn_tanh(self.rational_tanh)

        def micro_ticks(gate_u: Array, h: Array, c: Array) -> tuple[Array, Array]:
            """Every micro tick of rows `gate_u` [r, 4H], h, c [r, B, H]: synapses do not interact here."""
            return dense_micro_ticks(
                gate_u,
                gate_v,
                W_h,
                h,
                c,
                num_micro_ticks=self.num_micro_ticks,
                tanh=tanh,
                recurrent=self._recurrent,
            )

        h_sum = None  # h summed over inputs a, where the kernel gives it
        if self.dense_kernel == "pallas":
            # Imported on demand: loading Pallas and its Triton backend adds ~0.2 s to every `import vsml`.
            from vsml.learners.vsml.pallas import KernelSettings, fused_dense_micro_ticks

            settings = KernelSettings(self.num_micro_ticks, self.rational_tanh, self.recurrent_matmul)
            h, c, h_sum = fused_dense_micro_ticks(gate_u, gate_v, W_h, h, c, settings)
        elif (rows := self._block_rows(*h.shape[:2])) is not None:
            h, c = _in_row_blocks(micro_ticks, rows, gate_u, h, c)
        else:
            h, c = micro_ticks(gate_u, h, c)

        fwd = bwd = None
        if want_fwd and h_sum is not None and not self.layer_norm:
            fwd = exact_matmul(h_sum / h.shape[0], p.fwd_W) + p.fwd_b[None, :]
        elif want_fwd:
            fwd = self._aggregate(h, p.fwd_W, p.fwd_b, p.fwd_ln_scale, p.fwd_ln_offset, axis=0)
        if fwd is not None and fwd_channels is not None:
            fwd = fwd[:, fwd_channels]
        if want_bwd:
            bwd = self._aggregate(h, p.bwd_W, p.bwd_b, p.bwd_ln_scale, p.bwd_ln_offset, axis=1)
        return fwd, bwd, h, c

    def _block_rows(self, A: int, B: int) -> int | None:
        """Rows per block for an A × B dense layer's micro ticks (`dense_block_synapses`), or None: whole."""
        block = self.dense_block_synapses
        if block == "auto":
            if jax.default_backend() != "cpu" or A * B <= AUTO_BLOCKED_LAYER:
                return None
            block = AUTO_BLOCK_SYNAPSES
        if block is None or block >= A * B:
            return None
        return max(1, block // B)

    def _recurrent(self, h: Array, W_h: Array) -> Array:
        return recurrent_product(self.recurrent_matmul, h, W_h)

    def _aggregate(
        self, h: Array, W: Array, b: Array, scale: Array | None, offset: Array | None, axis: int
    ) -> Array:
        """Mean over synapses of the messenger output. Affine, so mean first unless LayerNorm intervenes."""
        if not self.layer_norm:
            return exact_matmul(jnp.mean(h, axis=axis), W) + b[None, :]
        return mean_layer_norm_message(h, W, b, scale, offset, axis)


def _in_row_blocks(
    fn: Callable[[Array, Array, Array], tuple[Array, Array]], rows: int, *arrays: Array
) -> tuple[Array, Array]:
    """fn over blocks of `rows` leading rows of `arrays` (a lax.map, the remainder as one more call), the results
    concatenated: the same as fn on everything when rows do not interact."""
    A = arrays[0].shape[0]
    count, rest = divmod(A, rows)
    main = [jnp.reshape(a[: count * rows], (count, rows, *a.shape[1:])) for a in arrays]
    outputs = jax.lax.map(lambda block: fn(*block), tuple(main))
    outputs = [jnp.reshape(o, (count * rows, *o.shape[2:])) for o in outputs]
    if rest:
        tail = fn(*(a[count * rows :] for a in arrays))
        outputs = [jnp.concatenate([o, t]) for o, t in zip(outputs, tail, strict=True)]
    return tuple(outputs)  # type: ignore[return-value]
