"""VSML fast path against the literal reference on random parameters, plus its invariants."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners.base import (
    CPU_APPLICATIONS_AT_ONCE_BACKPROP,
    TaskSpec,
    resolve_at_once,
    run_episode,
    run_episode_from_state,
    run_episodes,
)
from vsml.learners.modules import fast_tanh, layer_norm
from vsml.learners.sgd import OnlineSGD
from vsml.learners.vsml import VSML, count_parameters
from vsml.learners.vsml.cell import _ticks_with_residuals, dense_micro_ticks, mean_layer_norm_message
from vsml.learners.vsml.learner import AUTO_BLOCK_SYNAPSES
from vsml.learners.vsml.reference import vsml_reference_episode

CONFIGS = {
    "dense_7_3": (VSML(), (7,), 3),
    "dense_20_5_label": (VSML(feed_label=True), (20,), 5),
    "dense_8x8_10": (VSML(), (8, 8, 1), 10),
    "dense_33_2_ticks3": (VSML(num_micro_ticks=3), (33,), 2),
    "deep_20_8_5": (VSML(hidden_sizes=(8,)), (20,), 5),
    "deep_12_6_4_3_label": (VSML(hidden_sizes=(6, 4), feed_label=True), (12,), 3),
    "deep_ln": (VSML(hidden_sizes=(8,), layer_norm=True, feed_label=True), (20,), 5),
    "backward_ln": (VSML(backward_pass=True, layer_norm=True, feed_label=True), (20,), 5),
    "deep_backward_layerwise_separate": (
        VSML(hidden_sizes=(8,), backward_pass=True, layerwise_rnns=True, separate_backward_rnn=True),
        (20,),
        5,
    ),
    "tanh_bound_small": (VSML(tanh_bound=0.1, feed_label=True), (20,), 5),
    "inner_batch_3": (VSML(inner_batch=3, feed_label=True), (10,), 4),
    "conv_dense_forward": (VSML(conv_layers=((3, 3, 2),)), (6, 6, 1), 4),
    "conv_dense_backward_ln": (
        VSML(conv_layers=((3, 3, 2),), backward_pass=True, feed_label=True, layer_norm=True),
        (5, 6, 2),
        3,
    ),
    "two_conv_hidden_backward_bug": (
        VSML(
            conv_layers=((2, 3, 1), (2, 3, 2)),
            hidden_sizes=(4,),
            backward_pass=True,
            authors_stride_mask_bug=True,
        ),
        (5, 5, 1),
        3,
    ),
    # micro ticks in blocks of rows: layer 1 (20 × 8) in 3-row blocks and a 2-row remainder, layer 2 (8 × 5) in
    # two 4-row blocks
    "deep_backward_ln_row_blocks": (
        VSML(hidden_sizes=(8,), backward_pass=True, layer_norm=True, dense_block_synapses=24),
        (20,),
        5,
    ),
    "deep_backward_inner_batch_2": (VSML(hidden_sizes=(5,), backward_pass=True, inner_batch=2), (9,), 3),
}


def random_meta(model: VSML, key):
    """Default init with every bias, LN scale and offset perturbed so zeros cannot hide ordering bugs."""
    k_init, k_noise = jax.random.split(key)
    meta = model.init_meta(k_init)
    leaves, treedef = jax.tree_util.tree_flatten(meta)
    noise_keys = jax.random.split(k_noise, len(leaves))
    leaves = [
        leaf + 0.3 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, noise_keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def random_episode(key, input_shape, num_classes, length=8, inner_batch=1):
    k_x, k_y = jax.random.split(key)
    batch = (inner_batch,) if inner_batch > 1 else ()
    xs = jax.random.normal(k_x, (length, *batch, *input_shape))
    ys = jax.nn.one_hot(jax.random.randint(k_y, (length, *batch), 0, num_classes), num_classes)
    return xs, ys


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_path_matches_reference(name, key):
    model, input_shape, num_classes = CONFIGS[name]
    k_meta, k_data, k_state = jax.random.split(key, 3)
    meta = random_meta(model, k_meta)
    xs, ys = random_episode(k_data, input_shape, num_classes, inner_batch=model.inner_batch)
    state = model.init_state(meta, k_state, TaskSpec(input_shape, num_classes))
    fast, final = jax.jit(lambda m, s: run_episode_from_state(model, m, s, xs, ys))(meta, state)
    cells = [c[0] for c in state.c] if model.inner_batch > 1 else list(state.c)
    reference = functools.partial(vsml_reference_episode, model)
    # The conv reference is many small gathers and scatters: compiled as one program it costs about half what
    # its op-by-op compilations do. The dense configurations run it op by op, where they share their ops' compiled
    # forms (many have the same shapes).
    ref = (jax.jit(reference) if model.conv_layers else reference)(meta, xs, ys, cells)
    scale = max(1.0, float(jnp.max(jnp.abs(ref))))
    assert float(jnp.max(jnp.abs(fast - ref))) <= 1e-5 * scale
    # The learning actually moved the state, so the comparison is not between two constants.
    assert float(jnp.max(jnp.abs(final.c[0] - state.c[0]))) > 1e-4


def test_inner_batch_shares_the_first_half_of_the_state(key):
    model = VSML(inner_batch=3, feed_label=True)
    meta = random_meta(model, key)
    xs, ys = random_episode(key, (6,), 3, length=4, inner_batch=3)
    state = model.init_state(meta, key, TaskSpec((6,), 3))
    assert state.c[0].shape == (3, 6, 3, 16)
    np.testing.assert_array_equal(np.asarray(state.c[0][0]), np.asarray(state.c[0][2]))  # identical copies
    logits, final = jax.jit(lambda m, s: run_episode_from_state(model, m, s, xs, ys))(meta, state)
    assert logits.shape == (4, 3, 3)
    # After the last step, the per-example halves differ (each saw its own data) ...
    assert float(jnp.max(jnp.abs(final.c[0][0, ..., 8:] - final.c[0][1, ..., 8:]))) > 1e-6
    # ... and one more step starts by merging the first halves.
    _, after = jax.jit(model.step)(meta, final, xs[0], ys[0])
    before_merge = final.h[0][..., :8].mean(axis=0)
    assert float(jnp.max(jnp.abs(final.h[0][0, ..., :8] - final.h[0][1, ..., :8]))) > 1e-6
    del after, before_merge


def test_parameter_counts(key):
    assert count_parameters(VSML().init_meta(key)) == 2384
    assert count_parameters(VSML(layer_norm=True).init_meta(key)) == 2416
    assert count_parameters(VSML(hidden_sizes=(8,), layerwise_rnns=True).init_meta(key)) == 2 * 2384
    assert count_parameters(VSML(separate_backward_rnn=True).init_meta(key)) == 2 * 2384


def test_param_set_mapping():
    model = VSML(hidden_sizes=(8,), layerwise_rnns=True, separate_backward_rnn=True)
    assert [model.param_set_index(k, r) for r in (False, True) for k in (0, 1)] == [0, 1, 2, 3]
    model = VSML(hidden_sizes=(8,), separate_backward_rnn=True)
    assert [model.param_set_index(k, r) for r in (False, True) for k in (0, 1)] == [0, 0, 1, 1]


def test_initial_state_statistics(key):
    model = VSML()
    meta = model.init_meta(key)
    state = model.init_state(meta, jax.random.PRNGKey(1), TaskSpec((28, 28, 1), 10))
    c = np.asarray(state.c[0])
    assert c.shape == (784, 10, 16)
    random_half, zero_half = c[..., :8], c[..., 8:]
    assert np.all(zero_half == 0) and np.all(np.asarray(state.h[0]) == 0)
    # Truncated normal at ±2 without variance correction: std ≈ 0.88/√A, |c| ≤ 2/√A (spec §1.9).
    assert abs(random_half.std() - 0.8796 / 28) < 0.002
    assert np.abs(random_half).max() <= 2 / 28 + 1e-6
    other = model.init_state(meta, jax.random.PRNGKey(2), TaskSpec((28, 28, 1), 10))
    assert not np.allclose(c, np.asarray(other.c[0]))


def test_meta_init_statistics(key):
    meta = VSML().init_meta(key)
    W = np.asarray(meta.sets[0].lstm_W)
    assert W.shape == (32, 64)
    assert abs(W.std() - 0.8796 / np.sqrt(32)) < 0.01
    assert np.abs(W).max() <= 2 / np.sqrt(32) + 1e-6
    assert np.all(np.asarray(meta.sets[0].lstm_b) == 0)


def test_step_preserves_state_structure_and_does_not_recompile(key):
    model = VSML(hidden_sizes=(4,), feed_label=True)
    meta = model.init_meta(key)
    state = model.init_state(meta, key, TaskSpec((6,), 3))
    traces = []

    def step(m, s, x, y):
        traces.append(1)
        return model.step(m, s, x, y)

    jitted = jax.jit(step)
    x, y = jnp.ones((6,)), jax.nn.one_hot(1, 3)
    logits, new_state = jitted(meta, state, x, y)
    assert logits.shape == (3,)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    for old, new in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new_state), strict=True):
        assert old.shape == new.shape and old.dtype == new.dtype
    jitted(meta, new_state, x * 2, y)
    assert len(traces) == 1


def test_same_meta_runs_on_any_input_and_output_size(key):
    model = VSML()
    meta = model.init_meta(key)
    for input_shape, num_classes in [((5,), 2), ((28, 28, 1), 10), ((3, 4), 7)]:
        xs, ys = random_episode(key, input_shape, num_classes, length=3)
        logits = jax.jit(lambda m, k, x, y: run_episode(model, m, k, x, y))(meta, key, xs, ys)
        assert logits.shape == (3, num_classes) and bool(jnp.all(jnp.isfinite(logits)))


def test_wrong_input_shape_is_a_clear_error(key):
    model = VSML()
    meta = model.init_meta(key)
    state = model.init_state(meta, key, TaskSpec((8, 8, 1), 10))
    with pytest.raises(ValueError, match=r"shapes \[\(64, 10\)\] and 10 classes"):
        model.step(meta, state, jnp.zeros((28, 28, 1)), jax.nn.one_hot(0, 10))
    with pytest.raises(ValueError, match="one-hot"):
        model.step(meta, state, jnp.zeros((8, 8, 1)), jnp.int32(3))


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="output_idx"):
        VSML(output_idx=8)
    with pytest.raises(ValueError, match="num_micro_ticks"):
        VSML(num_micro_ticks=0)
    with pytest.raises(ValueError, match="init_rand_proportion"):
        VSML(init_rand_proportion=1.5)
    for bad in (0, "big", True):
        with pytest.raises(ValueError, match="dense_block_synapses"):
            VSML(dense_block_synapses=bad)


def test_auto_blocks_only_large_dense_layers_on_a_cpu():
    """ "auto": whole layers up to AUTO_BLOCKED_LAYER synapses, then blocks of ~AUTO_BLOCK_SYNAPSES (rows of B)."""
    auto, whole, forced = VSML(), VSML(dense_block_synapses=None), VSML(dense_block_synapses=100)
    assert auto._block_rows(784, 32) is None and auto._block_rows(784, 128) == AUTO_BLOCK_SYNAPSES // 128
    assert whole._block_rows(784, 128) is None
    assert forced._block_rows(20, 10) == 10 and forced._block_rows(10, 10) is None


def test_gradient_flows_through_the_unroll(key):
    """Meta-gradients exist and match the reference's (the feedback is not stop-gradiented, spec §3.2), with
    whole layers and with both layers' micro ticks in blocks of 5 rows (and a remainder). One test for both:
    the reference ignores the blocks, so its gradient is computed once."""
    models = [VSML(hidden_sizes=(4,), feed_label=True, dense_block_synapses=block) for block in (None, 5)]
    meta = random_meta(models[0], key)  # the blocks change neither the parameters nor the state
    xs, ys = random_episode(jax.random.PRNGKey(5), (6,), 3, length=5)
    state = models[0].init_state(meta, key, TaskSpec((6,), 3))

    def loss_fast(model, m):
        return jnp.sum(run_episode_from_state(model, m, state, xs, ys)[0] ** 2)

    def loss_ref(m):
        return jnp.sum(vsml_reference_episode(models[0], m, xs, ys, list(state.c)) ** 2)

    g_ref = jax.jit(jax.grad(loss_ref))(meta)
    for model in models:
        g_fast = jax.jit(jax.grad(functools.partial(loss_fast, model)))(meta)
        for a, b in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_ref), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
        assert float(jnp.max(jnp.abs(g_fast.sets[0].lstm_W))) > 0


@pytest.mark.parametrize("ticks, rational", [(1, True), (2, True), (3, False)])
def test_micro_ticks_vjp_is_autodiffs(ticks, rational, key):
    """The hand-written VJP of a dense layer's micro ticks against JAX's autodiff of the same forward ops."""
    A, B, H = 9, 4, 16
    k = jax.random.split(key, 6)
    layer = (
        jax.random.normal(k[0], (A, 4 * H)),
        jax.random.normal(k[1], (B, 4 * H)),
        0.3 * jax.random.normal(k[2], (H, 4 * H)),
        0.5 * jax.random.normal(k[3], (A, B, H)),
        jax.random.normal(k[4], (A, B, H)),
    )
    weights = jax.random.normal(k[5], (2, A, B, H))
    tanh = fast_tanh if rational else jnp.tanh

    def recurrent(h, W):
        return jnp.matmul(h, W, precision="highest")

    def loss(ticks_fn):
        return lambda *a: jnp.sum(weights * jnp.stack(ticks_fn(*a)))

    def custom_form(*a):
        return dense_micro_ticks(*a, num_micro_ticks=ticks, tanh=tanh, recurrent=recurrent)

    def autodiff_form(*a):
        return _ticks_with_residuals(ticks, tanh, recurrent, *a)[0]

    custom, auto = (jax.jit(jax.grad(loss(form), argnums=range(5))) for form in (custom_form, autodiff_form))
    for got, want in zip(custom(*layer), auto(*layer), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_conv_state_and_message_shapes(key):
    """conv 3x3 stride 2, 8 channels: 28x28x1 -> 14x14x8, then dense 1568 -> 10 (authors' conv.yaml)."""
    model = VSML(conv_layers=((8, 3, 2),), backward_pass=True, feed_label=True, layer_norm=True)
    meta = model.init_meta(key)
    state = model.init_state(meta, key, TaskSpec((28, 28, 1), 10))
    assert [h.shape for h in state.h] == [(3, 3, 1, 8, 16), (1568, 10, 16)]
    assert [u.shape for u in state.fwd_in] == [(1568, 8)] and [v.shape for v in state.bwd_in] == [
        (14, 14, 8, 8)
    ]
    random_half = np.asarray(state.c[0][..., :8])
    assert np.abs(random_half).max() <= 2 / np.sqrt(3) + 1e-6 and random_half.std() > 0.3  # std 1/√k (§1.9)
    with pytest.raises(ValueError, match=r"inputs \[H, W, C\]"):
        model.init_state(meta, key, TaskSpec((784,), 10))
    with pytest.raises(ValueError, match="odd kernel"):
        VSML(conv_layers=((8, 2, 2),))


@pytest.mark.parametrize("hidden", [(), (16,)])
def test_reduced_precision_recurrent_matmul_stays_close_to_float32(hidden, key):
    """bfloat16 inputs to h·W_h (float32 sums, cell and everything else) over a 100-step episode: logits
    measured 2e-5 (64→10) and 3e-4 (64→16→10, backward pass) from float32, cells 7e-4 and 3e-3."""
    model = VSML(hidden_sizes=hidden, backward_pass=bool(hidden))
    k_meta, k_data, k_state = jax.random.split(key, 3)
    meta = random_meta(model, k_meta)
    xs, ys = random_episode(k_data, (64,), 10, length=100)
    state = model.init_state(meta, k_state, TaskSpec((64,), 10))
    runs = {}
    for matmul in ("float32", "tf32x3", "tf32", "bfloat16"):
        variant = dataclasses.replace(model, recurrent_matmul=matmul)
        runs[matmul] = jax.jit(lambda m, s, v=variant: run_episode_from_state(v, m, s, xs, ys))(meta, state)
    (exact, exact_state), (bf16, bf16_state) = runs["float32"], runs["bfloat16"]
    logit_diff = float(jnp.max(jnp.abs(bf16 - exact)))
    cell_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(bf16_state.c, exact_state.c, strict=True))
    assert 0.0 < logit_diff <= 1e-2 * float(jnp.max(jnp.abs(exact)))  # > 0: the bf16 product did run
    assert cell_diff <= 2e-2
    assert float(jnp.mean(jnp.argmax(bf16, -1) == jnp.argmax(exact, -1))) >= 0.95
    if jax.default_backend() == "cpu":  # tf32 and tf32x3 are GPU tensor-core modes; on a CPU they are float32
        np.testing.assert_allclose(np.asarray(runs["tf32"][0]), np.asarray(exact), atol=1e-6)
        np.testing.assert_allclose(np.asarray(runs["tf32x3"][0]), np.asarray(exact), atol=1e-6)
    else:  # three TF32 products come within float32's own rounding noise over the episode
        assert float(jnp.max(jnp.abs(runs["tf32x3"][0] - exact))) <= 1e-4 * float(jnp.max(jnp.abs(exact)))
    with pytest.raises(ValueError, match="recurrent_matmul"):
        VSML(recurrent_matmul="float16")


def test_episodes_run_in_batches_give_the_vmapped_result(key):
    model = VSML(hidden_sizes=(4,), backward_pass=True)
    meta = random_meta(model, key)
    keys = jax.random.split(key, 5)
    episodes = [random_episode(k, (6,), 3, length=4) for k in keys]
    xs, ys = jnp.stack([e[0] for e in episodes]), jnp.stack([e[1] for e in episodes])

    def run(**at_once):  # compiled whole, not op by op
        return jax.jit(lambda m: run_episodes(model, m, keys, xs, ys, **at_once))(meta)

    together = run()
    for at_once in (1, 2):  # 5 = 2 + 2 + 1: lax.map's remainder too
        np.testing.assert_allclose(np.asarray(run(at_once=at_once)), np.asarray(together), atol=1e-6)
    with pytest.raises(ValueError, match="at_once"):
        run_episodes(model, meta, keys, xs, ys, at_once=0)


@pytest.fixture(scope="module")
def unroll_loss():
    """(loss(meta, remat), meta, (loss, gradient) without remat): the episode's loss and the plain result that
    every remat setting must reproduce, computed once for the module."""
    key = jax.random.PRNGKey(0)
    model = VSML(hidden_sizes=(4,), backward_pass=True)
    meta = random_meta(model, key)
    xs, ys = random_episode(key, (6,), 3, length=10)

    def loss(m, r):
        logits = run_episode(model, m, key, xs, ys, remat=r)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.sum(logits * ys, -1))

    return loss, meta, jax.jit(jax.value_and_grad(loss), static_argnums=1)(meta, False)


@pytest.mark.parametrize("remat", [True, 3, 4])  # 3: 10 = 3·3 + 1 leaves a remainder; 4: 10 = 2·4 + 2
def test_rematerialised_unroll_gives_the_same_loss_and_gradient(remat, unroll_loss):
    loss, meta, (plain_loss, plain_grad) = unroll_loss
    remat_loss, remat_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(meta, remat)
    np.testing.assert_allclose(float(remat_loss), float(plain_loss), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat_grad), jax.tree.leaves(plain_grad), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, (0, 2)])
def test_mean_of_layer_norm_messages_equals_the_literal_form(axis, key):
    """The folded LayerNorm message mean (centring in the weights, one rsqrt per synapse) against
    mean(LayerNorm(h W + b)·scale + offset) written out."""
    k = jax.random.split(key, 5)
    h = 0.5 * jax.random.normal(k[0], (6, 5, 3, 16))
    W, b = 0.3 * jax.random.normal(k[1], (16, 8)), 0.2 * jax.random.normal(k[2], (8,))
    scale, offset = 1 + 0.2 * jax.random.normal(k[3], (8,)), 0.2 * jax.random.normal(k[4], (8,))
    literal = jnp.mean(layer_norm(h @ W + b.reshape(1, 1, 1, 8), scale, offset), axis=axis)
    folded = mean_layer_norm_message(h, W, b, scale, offset, axis)
    np.testing.assert_allclose(folded, literal, atol=2e-6, rtol=1e-5)


def test_auto_episodes_at_once_follows_the_network_size():
    """ "auto" on a CPU: the largest power of two of episodes within 16k sub-RNN applications per micro tick;
    explicit values pass through."""

    # numpy: only the shapes are read, and no XLA op is compiled per shape
    def episodes(n, shape, classes=10):
        return np.zeros((n, 3, *shape), np.float32), np.zeros((n, 3, classes), np.float32)

    assert VSML().sub_rnn_applications(TaskSpec((784,), 10)) == 7840
    conv = VSML(conv_layers=((8, 3, 2),))
    assert conv.sub_rnn_applications(TaskSpec((28, 28, 1), 10)) == 14 * 14 * 9 * 8 + 1568 * 10
    assert VSML(backward_pass=True).sub_rnn_applications_per_step(TaskSpec((7,), 3)) == 7 * 3 * 2 * 2
    assert jax.default_backend() == "cpu"
    # The largest power of two of episodes within 16,384 applications (at least one episode).
    assert resolve_at_once(VSML(), "auto", *episodes(32, (784,))) == 2  # 16,384 / 7,840 = 2.09
    assert resolve_at_once(VSML(hidden_sizes=(32,)), "auto", *episodes(32, (784,))) == 1  # 0.64
    assert resolve_at_once(VSML(hidden_sizes=(32,)), "auto", *episodes(32, (144,))) == 2  # 3.32, not 3
    assert resolve_at_once(VSML(), "auto", *episodes(32, (300,))) == 4  # 5.46, not 5
    assert resolve_at_once(VSML(), "auto", *episodes(64, (64,))) == 16  # 25.6
    assert resolve_at_once(VSML(), "auto", *episodes(16, (64,))) is None  # 16 per batch: all 16 at once
    assert resolve_at_once(VSML(inner_batch=4), "auto", *episodes(8, (4, 784))) == 1
    assert resolve_at_once(OnlineSGD(), "auto", *episodes(32, (784,))) is None
    backprop = CPU_APPLICATIONS_AT_ONCE_BACKPROP  # the smaller budget of differentiated episodes
    assert resolve_at_once(VSML(), "auto", *episodes(32, (784,)), backprop) == 1
    assert resolve_at_once(VSML(), "auto", *episodes(32, (64,)), backprop) == 8  # 12.8
    for explicit in (None, 1, 5):
        assert resolve_at_once(VSML(), explicit, *episodes(32, (784,))) == explicit
