"""The fused Pallas kernel of a dense layer's micro ticks against the XLA form (cell.dense_micro_ticks).

On CPU the kernel runs in Pallas' interpreter, which executes the same kernel body (loads, masks, products)
block by block; the Triton lowering is checked separately by lowering for CUDA, which JAX does without a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest

from vsml.learners.base import TaskSpec, run_episode_from_state
from vsml.learners.vsml import VSML
from vsml.learners.vsml.pallas import (
    KernelSettings,
    fused_dense_micro_ticks,
    pl_triton,
    xla_dense_micro_ticks,
)

H = 16
pytestmark = pytest.mark.skipif(pl_triton is None, reason="this JAX has no Pallas Triton backend")


def random_layer(key, A: int, B: int, episodes: int | None = None):
    """(gate_u, gate_v, W_h, h, c) of a random A × B layer, with a leading episode axis if asked."""
    lead = () if episodes is None else (episodes,)
    k = jax.random.split(key, 5)
    return (
        jax.random.normal(k[0], (*lead, A, 4 * H)),
        jax.random.normal(k[1], (*lead, B, 4 * H)),
        0.3 * jax.random.normal(k[2], (*lead, H, 4 * H)),
        0.5 * jax.random.normal(k[3], (*lead, A, B, H)),
        jax.random.normal(k[4], (*lead, A, B, H)),
    )


def xla_form(settings: KernelSettings):
    """(h, c, h summed over inputs a) in XLA ops: what the kernel must return."""
    return functools.partial(xla_dense_micro_ticks, settings)


@pytest.mark.parametrize(
    "settings, A, B, shared_weights",
    [
        # last block: 5 of 16 rows (masked); W_h shared by the episodes, as when evaluating one V_M
        (KernelSettings(2, True, "float32", block_rows=16), 37, 3, True),
        (KernelSettings(3, False, "float32", block_rows=32), 64, 2, False),  # whole blocks, exact tanh
        (KernelSettings(1, True, "bfloat16", block_rows=16), 20, 4, False),  # bf16 products in both forms
        (KernelSettings(1, True, "float32", block_rows=16), 5, 1, False),  # fewer rows than a block, B = 1
    ],
)
def test_kernel_matches_the_xla_form_over_episodes(settings, A, B, shared_weights, key):
    layer = list(random_layer(key, A, B, episodes=2))
    axes = (0, 0, None if shared_weights else 0, 0, 0)
    if shared_weights:
        layer[2] = layer[2][0]
    kernel = jax.jit(jax.vmap(lambda *a: fused_dense_micro_ticks(*a, settings), in_axes=axes))(*layer)
    xla = jax.jit(jax.vmap(xla_form(settings), in_axes=axes))(*layer)
    for got, want in zip(kernel, xla, strict=True):
        assert got.shape == want.shape
        assert float(jnp.max(jnp.abs(got - want))) <= 2e-6 * max(1.0, float(jnp.max(jnp.abs(want))))
    for new, old in zip(xla[:2], layer[3:], strict=True):
        assert float(jnp.max(jnp.abs(new - old))) > 1e-2  # the ticks moved the state


def test_kernel_gradient_is_the_xla_forms(key):
    settings = KernelSettings(2, True, "float32", block_rows=16)
    layer = random_layer(key, 21, 3)
    k_state, k_sum = jax.random.split(jax.random.fold_in(key, 1))
    weights = jax.random.normal(k_state, (2, 21, 3, H)), jax.random.normal(k_sum, (3, H))

    def loss(form):
        def weighted(*a):
            h, c, h_sum = form(*a)
            return jnp.sum(weights[0] * jnp.stack([h, c])) + jnp.sum(weights[1] * h_sum)

        return weighted

    got = jax.jit(jax.grad(loss(lambda *a: fused_dense_micro_ticks(*a, settings)), argnums=range(5)))(*layer)
    want = jax.jit(jax.grad(loss(xla_form(settings)), argnums=range(5)))(*layer)
    for g, w in zip(got, want, strict=True):
        assert float(jnp.max(jnp.abs(g - w))) <= 1e-5 * max(1.0, float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize(
    "matmul, rational, inner_batch",
    [
        ("float32", True, False),
        ("tf32x3", True, False),
        ("tf32", True, False),
        ("bfloat16", True, False),
        ("float32", False, True),
    ],
)
def test_kernel_lowers_to_triton_for_cuda(matmul, rational, inner_batch, key):
    """The Pallas → Triton lowering (shapes powers of two, supported ops, masks) runs here without a GPU; only
    Triton's own compilation to PTX is left for the GPU. `inner_batch`: two vmaps (episodes, then examples of
    an inner batch with W_h shared), so a 4-D grid that the lowering folds into CUDA's 3-D launch grid."""
    settings = KernelSettings(2, rational, matmul, interpret=False)
    layer = random_layer(key, 40, 3, episodes=2)
    kernel = jax.vmap(lambda *a: fused_dense_micro_ticks(*a, settings))
    if inner_batch:
        layer = [jnp.stack([a, a]) for a in layer[:2]] + [layer[2]] + [jnp.stack([a, a]) for a in layer[3:]]
        kernel = jax.vmap(kernel, in_axes=(0, 0, None, 0, 0))
    with abstract_gpu():
        text = jax.jit(kernel).trace(*layer).lower(lowering_platforms=("cuda",)).as_text()
    assert "xla.gpu.triton" in text


def abstract_gpu() -> contextlib.AbstractContextManager:
    """An H100 as the lowering target: JAX ≥ 0.11 asks for one when no GPU is present (0.10 assumed one)."""
    if not hasattr(jax.sharding, "AbstractDevice"):
        return contextlib.nullcontext()
    device = jax.sharding.AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=None, platform="cuda")
    explicit = (jax.sharding.AxisType.Explicit,)
    return jax.sharding.use_abstract_mesh(
        jax.sharding.AbstractMesh((1,), ("x",), explicit, abstract_device=device)
    )


@pytest.mark.parametrize(
    "xla",
    [
        # forward-only: the forward messages come from the kernel's sums over inputs, backward ones from h;
        # an inner batch of 2 (the kernel under a second vmap)
        VSML(hidden_sizes=(8,), inner_batch=2),
        VSML(hidden_sizes=(8,), backward_pass=True, layer_norm=True, feed_label=True),
    ],
    ids=["forward_only", "backward_pass_ln"],
)
def test_vsml_with_the_kernel_matches_xla_over_an_episode(xla, key):
    """The whole learner with two dense layers: both kernels give the same logits and states."""
    pallas = dataclasses.replace(xla, dense_kernel="pallas")
    spec = TaskSpec((20,), 5)
    meta = xla.init_meta(key)
    state = xla.init_state(meta, key, spec)
    batch = (xla.inner_batch,) if xla.inner_batch > 1 else ()
    xs = jax.random.normal(key, (6, *batch, 20))
    ys = jax.nn.one_hot(jax.random.randint(key, (6, *batch), 0, 5), 5)
    want, want_state = jax.jit(lambda s: run_episode_from_state(xla, meta, s, xs, ys))(state)
    # Off a GPU the interpreter runs the kernel, and the learner says so (it is slow)
    on_gpu = jax.default_backend() == "gpu"
    with contextlib.nullcontext() if on_gpu else pytest.warns(UserWarning, match="interpreter"):
        got, got_state = jax.jit(lambda s: run_episode_from_state(pallas, meta, s, xs, ys))(state)
    assert float(jnp.max(jnp.abs(got - want))) <= 1e-5 * max(1.0, float(jnp.max(jnp.abs(want))))
    assert float(jnp.max(jnp.abs(got_state.c[0] - want_state.c[0]))) <= 1e-5


def test_bad_settings_are_named(key):
    with pytest.raises(ValueError, match="dense_kernel"):
        VSML(dense_kernel="cuda")
    with pytest.raises(ValueError, match="block_rows"):
        fused_dense_micro_ticks(*random_layer(key, 16, 2), KernelSettings(1, True, "float32", block_rows=24))
    half = [a.astype(jnp.bfloat16) for a in random_layer(key, 16, 2)]
    with pytest.raises(ValueError, match="float32"):
        fused_dense_micro_ticks(*half, KernelSettings(1, True, "float32"))
