"""A dense VSML layer's micro ticks as one fused Pallas kernel (GPU, Triton backend).

Why (spec vsml.md §7): on a GPU the XLA form of a micro tick writes the gate pre-activations h·W_h [A, B, 64]
to memory and reads them back in the LSTM update, and the state (h, c) round-trips memory once per micro tick:
≈ 768 bytes per synapse and micro tick in float32. The kernel keeps the pre-activations in registers and runs
every micro tick on (h, c) loaded once: 256 bytes per synapse and *step* (h, c read and written once), the
"fused micro ticks" line of §7's table, whose memory floor is ≈ 0.6 s per ES iteration of 1,024 pairs on an
H100. That the kernel beats XLA there is the hypothesis `benchmarks/pallas_kernel.py` measures on a GPU; until
a GPU run has confirmed it, the kernel is opt-in (`VSML.dense_kernel = "pallas"`).

Work split: program (i, b) of the grid takes rows a ∈ [i·r, i·r + r) of synapse column b, tiles of
(r, H) = (64, 16) floats, powers of two as Triton needs; rows past A are masked. The four gates are four
(r, 16) × (16, 16) products, so no tensor is ever sliced in registers. The inputs are rearranged gate-major
outside the kernel (per unit or per parameter, a few kB): gate_u [4, A, H], gate_v [4, B, H], W_h [4, H, H].

Everywhere else (CPU tests) the same kernel runs through Pallas' interpreter, and `tests/learners/
vsml/test_pallas.py` checks it against the XLA form, also under vmap, and lowers it for CUDA to Triton IR
(which JAX can do without a GPU), so the Triton lowering's constraints are checked on every CI run.

Precision and the floor: with `recurrent_matmul: float32` the products are IEEE float32 on the CUDA cores, not
the tensor cores. Compiled without a GPU (this kernel lowered by JAX 0.11.2 for CUDA, its Triton IR compiled by
pip Triton 3.6.0 for sm_90, ptxas -v): at (64 rows, 4 warps) float32 gives 1,810 FP32 FMAs per thread and 236
registers (2 blocks per SM: likely compute-bound above §7's memory floor); `tf32` gives 16 wgmma (tensor-core)
instructions and 80 registers, the setting that can approach the floor. A review saw (128 rows, 4 warps) and
(64 rows, 2 warps) spill in float32.
The backward pass has no kernel: it is the VJP of the XLA form (`dense_micro_ticks`), recomputed from the
inputs, so differentiated the forward runs twice and gradient meta-training is faster with `dense_kernel: xla`.

JAX 0.11 deprecated Pallas' Triton backend in favour of Mosaic GPU; 0.11.2 (the lent GPU machines' version)
and 0.12 still have it, and the tests pass under both (checked in a Python 3.12 venv). A Mosaic GPU port is
the next step once a GPU can test it.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

try:  # JAX 0.11 deprecated Pallas' Triton backend (in favour of Mosaic GPU); a later JAX may lack it
    from jax.experimental.pallas import triton as pl_triton
except ImportError:  # pragma: no cover - only with such a JAX
    pl_triton = None

from vsml.learners.base import Array
from vsml.learners.modules import sub_rnn_tanh
from vsml.learners.vsml.cell import dense_micro_ticks, recurrent_product

BLOCK_ROWS = 64  # rows a per program; a power of two ≥ 16 (Triton's smallest product tile)
NUM_WARPS = 4


class KernelSettings(NamedTuple):
    """The static choices a kernel is compiled for (hashable: a custom_vjp non-differentiable argument)."""

    num_micro_ticks: int
    rational_tanh: bool
    recurrent_matmul: str  # as VSML.recurrent_matmul: "float32" | "tf32x3" | "tf32" | "bfloat16"
    block_rows: int = BLOCK_ROWS
    num_warps: int = NUM_WARPS  # Triton's warps per program
    interpret: bool | None = None  # None: interpret unless the default backend is a GPU


def fused_dense_micro_ticks(
    gate_u: Array, gate_v: Array, W_h: Array, h: Array, c: Array, settings: KernelSettings
) -> tuple[Array, Array, Array]:
    """Every micro tick of a dense layer, one fused kernel: (h, c) as `cell.dense_micro_ticks` returns them,
    and the new h summed over inputs a, [B, H] (what the forward message needs: the kernel sums its tile's rows
    while they are in registers, so nothing reads h back for it).

    gate_u [A, 4H] (input part of the gates per input unit), gate_v [B, 4H] (per output unit, bias included),
    W_h [H, 4H] (all three with σ folded into tanh, `cell.gate_weights_for_tanh`), h, c [A, B, H] float32.
    """
    if pl_triton is None:
        raise RuntimeError(
            f"JAX {jax.__version__} has no Pallas Triton backend (jax.experimental.pallas.triton), which the "
            "fused dense kernel is written for; use VSML.dense_kernel='xla' (JAX 0.10.2, 0.11.2 and 0.12.0.1 have it)"
        )
    if h.dtype != jnp.float32:
        raise ValueError(
            f"the Pallas dense kernel runs float32 states only, got {h.dtype}; use dense_kernel='xla'"
        )
    block = settings.block_rows
    if block < 16 or block & (block - 1):
        raise ValueError(f"KernelSettings.block_rows must be a power of two >= 16, got {block}")
    if settings.interpret is None:
        interpret = jax.default_backend() != "gpu"
        if interpret:  # chosen, not asked for: say why it is slow (once per trace)
            warnings.warn(
                f"VSML.dense_kernel='pallas' on the {jax.default_backend()!r} backend runs the GPU kernel in Pallas' "
                "interpreter, which is for tests and far slower than dense_kernel='xla'",
                stacklevel=2,
            )
        settings = settings._replace(interpret=interpret)
    return _fused(settings, gate_u, gate_v, W_h, h, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(settings: KernelSettings, gate_u, gate_v, W_h, h, c):  # noqa: ANN001, ANN202
    return _pallas_micro_ticks(settings, gate_u, gate_v, W_h, h, c)


def _fused_forward(
    settings: KernelSettings, *inputs: Array
) -> tuple[tuple[Array, Array, Array], tuple[Array, ...]]:
    return _pallas_micro_ticks(settings, *inputs), inputs


def _fused_backward(
    settings: KernelSettings, inputs: tuple[Array, ...], cotangents: tuple[Array, Array, Array]
) -> tuple[Array, ...]:
    """The VJP of the XLA form, recomputed from the inputs (the same function, so the same gradient)."""
    _, vjp = jax.vjp(functools.partial(xla_dense_micro_ticks, settings), *inputs)
    return vjp(cotangents)


_fused.defvjp(_fused_forward, _fused_backward)


def xla_dense_micro_ticks(
    settings: KernelSettings, gate_u: Array, gate_v: Array, W_h: Array, h: Array, c: Array
) -> tuple[Array, Array, Array]:
    """What the kernel computes, in XLA ops (`cell.dense_micro_ticks`, then h summed over inputs a): its oracle
    and its VJP."""
    h, c = dense_micro_ticks(
        gate_u,
        gate_v,
        W_h,
        h,
        c,
        num_micro_ticks=settings.num_micro_ticks,
        tanh=sub_rnn_tanh(settings.rational_tanh),
        recurrent=functools.partial(recurrent_product, settings.recurrent_matmul),
    )
    return h, c, jnp.sum(h, axis=0)


def _pallas_micro_ticks(settings: KernelSettings, gate_u, gate_v, W_h, h, c):  # noqa: ANN001, ANN202
    A, B, H = h.shape
    rows = settings.block_rows
    by_gate = lambda x: jnp.moveaxis(jnp.reshape(x, (*x.shape[:-1], 4, H)), -2, 0)  # [..., 4H] -> [4, ..., H]
    # Padded to whole blocks (a few kB), so its tiles load unmasked; the state's last tile is masked instead.
    gate_u_padded = jnp.pad(gate_u, ((0, -A % rows), (0, 0)))
    state_spec = pl.BlockSpec((rows, pl.squeezed, H), lambda i, b: (i, b, 0))
    kernel = functools.partial(_kernel, settings=settings, num_rows=A)
    blocks = pl.cdiv(A, rows)
    h, c, block_sums = pl.pallas_call(
        kernel,
        out_shape=(
            jax.ShapeDtypeStruct(h.shape, h.dtype),
            jax.ShapeDtypeStruct(c.shape, c.dtype),
            jax.ShapeDtypeStruct((blocks, B, H), h.dtype),  # per row block, h summed over its rows
        ),
        grid=(blocks, B),
        in_specs=[
            pl.BlockSpec((4, rows, H), lambda i, b: (0, i, 0)),  # gate_u [4, A, H]
            pl.BlockSpec((4, pl.squeezed, H), lambda i, b: (0, b, 0)),  # gate_v [4, B, H]
            pl.BlockSpec((4, H, H), lambda i, b: (0, 0, 0)),  # W_h [4, H, H]
            state_spec,
            state_spec,
        ],
        out_specs=(
            state_spec,
            state_spec,
            pl.BlockSpec((pl.squeezed, pl.squeezed, H), lambda i, b: (i, b, 0)),
        ),
        input_output_aliases={3: 0, 4: 1},  # h, c updated in place
        compiler_params=pl_triton.CompilerParams(num_warps=settings.num_warps, num_stages=1),
        interpret=settings.interpret,
        name="vsml_dense_micro_ticks",
    )(by_gate(gate_u_padded), by_gate(gate_v), by_gate(W_h), h, c)
    return h, c, jnp.sum(block_sums, axis=0)


def _kernel(
    gate_u_ref, gate_v_ref, W_ref, h_ref, c_ref, h_out_ref, c_out_ref, sum_ref, *, settings, num_rows
):  # noqa: ANN001
    """One (rows, H) tile of synapse column b through every micro tick (see the module docstring)."""
    rows, H = h_ref.shape
    row = pl.program_id(0) * rows + jax.lax.broadcasted_iota(jnp.int32, (rows, H), 0)
    inside = row < num_rows  # the last row block may run past A
    load = lambda ref: pl_triton.load(ref, mask=inside, other=0.0)
    tanh = sub_rnn_tanh(settings.rational_tanh)
    product = functools.partial(recurrent_product, settings.recurrent_matmul, gpu=not settings.interpret)

    gate_in = [gate_u_ref[g] + gate_v_ref[g][None, :] for g in range(4)]  # [rows, H] each, (i, g, f, o)
    W = [W_ref[g] for g in range(4)]  # [H, H] each
    h, c = load(h_ref), load(c_ref)
    for _ in range(settings.num_micro_ticks):
        z = [product(h, W[g]) + gate_in[g] for g in range(4)]
        c = (0.5 + 0.5 * tanh(z[2])) * c + (0.5 + 0.5 * tanh(z[0])) * tanh(z[1])
        h = (0.5 + 0.5 * tanh(z[3])) * tanh(c)
    pl_triton.store(h_out_ref, h, mask=inside)
    pl_triton.store(c_out_ref, c, mask=inside)
    sum_ref[...] = jnp.sum(jnp.where(inside, h, 0.0), axis=0)  # rows past A hold gate-driven values: left out
