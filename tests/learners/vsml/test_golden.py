"""Our VSML reproduces the golden episodes produced by the authors' own code (tests/data/vectors, copied from
shared/spec/vectors). A missing vector file is a failure, never a skip: the parity claim rests on them."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import VECTORS_DIR
from vsml.learners.base import TaskSpec, run_episode_from_state
from vsml.learners.vsml import VSML, SubRNNParams, VSMLMeta
from vsml.learners.vsml.reference import vsml_reference_episode

# The cases of tests/data/vectors/README.md; each one is parametrised whether or not its file is there, so a
# missing file fails its tests (np.load) instead of shrinking the list.
CASES = (
    "case1_dense784",
    "case1_dense784_randinit",
    "case2_dense20_label",
    "case3_deep_label_ln",
    "case3_deep_label_ln_randinit",
    "case4_backward_label_ln",
    "case5_deep_backward_label_ln",
    "case6_deep_backward_layerwise_separate",
    "case7_dense20_label_tanh0.1",
)


def test_every_golden_vector_file_is_present():
    stored = sorted(p.stem for p in VECTORS_DIR.glob("*.npz"))
    assert stored == sorted(CASES), f"golden vectors in {VECTORS_DIR}: expected {sorted(CASES)}, found {stored}"


def load_case(name: str, dtype=np.float32):
    data = np.load(VECTORS_DIR / f"{name}.npz")
    cfg = json.loads(str(data["config_json"]))
    sub, net = cfg["model"]["sub_rnn"], cfg["model"]["vsml_rnn"]
    specs = net["layer_specs"]
    model = VSML(
        hidden_sizes=tuple(s["out_size"] for s in specs[:-1]),
        msg_size=sub["msg_size"],
        state_size=sub["slow_size"],
        num_micro_ticks=net["num_micro_ticks"],
        output_idx=net["output_idx"],
        tanh_bound=float(net["tanh_bound"]),
        init_rand_proportion=sub["init_rand_proportion"],
        feed_label=net["feed_label"],
        layer_norm=sub["layer_norm"],
        backward_pass=net["backward_pass"],
        layerwise_rnns=net["layerwise_rnns"],
        separate_backward_rnn=net["separate_backward_rnn"],
    )
    uses = [f"f{k}" for k in range(len(specs))] + [f"r{k}" for k in range(len(specs))]
    sets: list = [None] * model.num_param_sets
    for use in uses:
        prefix = cfg["param_sets"].get(use)
        if prefix is None:
            continue
        prefix = "" if prefix == "(unprefixed)" else prefix
        index = model.param_set_index(int(use[1:]), reverse=use[0] == "r")
        fields = {f: jnp.asarray(data[prefix + f], dtype) for f in SubRNNParams._fields if prefix + f in data}
        sets[index] = SubRNNParams(**fields)
    assert all(s is not None for s in sets), "every parameter set must be stored in the file"
    cells = [jnp.asarray(data[f"c0.L{k}"], dtype) for k in range(len(specs)) if f"c0.L{k}" in data]
    xs, ys = jnp.asarray(data["x"], dtype), jnp.asarray(data["y"], dtype)
    return model, VSMLMeta(tuple(sets)), xs, ys, (cells or None), data


def fast_logits(model, meta, xs, ys, cells):
    spec = TaskSpec(tuple(xs.shape[1:]), ys.shape[-1])
    state = model.init_state(meta, jax.random.PRNGKey(0), spec)
    zero_cells = tuple(jnp.zeros_like(c) for c in state.c)
    state = state._replace(c=tuple(cells) if cells is not None else zero_cells)
    return jax.jit(lambda m, s: run_episode_from_state(model, m, s, xs, ys)[0])(meta, state)


@pytest.mark.parametrize("name", CASES)
def test_fast_path_matches_authors_float32(name):
    model, meta, xs, ys, cells, data = load_case(name)
    logits = fast_logits(model, meta, xs, ys, cells)
    np.testing.assert_allclose(np.asarray(logits), data["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_fast_path_matches_authors_float64(name):
    with jax.enable_x64(True):
        model, meta, xs, ys, cells, data = load_case(name, np.float64)
        logits = fast_logits(model, meta, xs, ys, cells)
        assert logits.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(logits), data["logits_f64"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_reference_matches_authors_float32(name):
    model, meta, xs, ys, cells, data = load_case(name)
    logits = vsml_reference_episode(model, meta, xs, ys, cells)
    np.testing.assert_allclose(np.asarray(logits), data["logits"], rtol=0, atol=1e-5)


def test_parameter_count_of_golden_sets():
    model, meta, *_ = load_case("case1_dense784")
    assert sum(x.size for x in jax.tree_util.tree_leaves(meta)) == 2384
    model, meta, *_ = load_case("case3_deep_label_ln")
    assert sum(x.size for x in jax.tree_util.tree_leaves(meta)) == 2416
