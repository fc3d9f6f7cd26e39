"""Tests of BLUR's synthetic 2-D tasks (vsml.tasks.toy2d; spec/blur.md §7) and their dataset registration."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest

from vsml.tasks.datasets import DATASET_NAMES, NORMALISATION, load_dataset
from vsml.tasks.episodes import make_episode_source, sample_online_episodes
from vsml.tasks.toy2d import (
    TOY2D_TASKS,
    FixedRandomXor,
    blobs,
    circ,
    concentric_circles,
    random_xor,
    square,
    toy2d_stream,
    two_moon,
)
from vsml.tasks.transforms import apply_normalisation

NAMES = tuple(TOY2D_TASKS)
NUM = 4000
# Tasks whose x is U[-1, 1)² (spec §7: "unless stated otherwise, x is uniform").
UNIFORM = [
    "xor",
    "nxor",
    "or",
    "and",
    "qand",
    "circ",
    "centercirc",
    "smallcentercirc",
    "square",
    "random_xor",
    "fixed_random_xor",
    "pieslice",
    "cross",
    "triangle",
]


@functools.cache
def _jitted(name: str):
    return jax.jit(TOY2D_TASKS[name][0], static_argnums=1)


@functools.cache
def _draw(name: str, seed: int = 0, num: int = NUM) -> tuple[np.ndarray, np.ndarray]:
    x, y = _jitted(name)(jax.random.PRNGKey(seed), num)
    return np.asarray(x), np.asarray(y)


def _plus_one(label: np.ndarray) -> np.ndarray:
    """func2d's ±1 labels -> our classes: class 1 = +1 (sign(0) = 0 also goes to class 0)."""
    return (label > 0).astype(np.int32)


# Literal numpy restatements of spec §7 / func2d.py on given x, returning func2d's own labels: ±1 for most,
# {0, 1} for cross and triangle.
def _norm(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=1, ord=2)


RULES = {
    "xor": lambda x: _plus_one(np.sign(x[:, 0] * x[:, 1])),
    "nxor": lambda x: _plus_one(-np.sign(x[:, 0] * x[:, 1])),
    "or": lambda x: _plus_one((np.logical_or(x[:, 0] > 0, x[:, 1] > 0).astype(np.float32) - 0.5) * 2),
    "and": lambda x: _plus_one((np.logical_and(x[:, 0] > 0, x[:, 1] > 0).astype(np.float32) - 0.5) * 2),
    "qand": lambda x: _plus_one((np.logical_and(x[:, 0] < 0, x[:, 1] > 0).astype(np.float32) - 0.5) * 2),
    "centercirc": lambda x: _plus_one((_norm(x) < 0.5).astype(np.float32) * 2 - 1),
    "smallcentercirc": lambda x: _plus_one((_norm(x) < 0.3).astype(np.float32) * 2 - 1),
    "square": lambda x: _plus_one((np.maximum(np.abs(x[:, 0]), np.abs(x[:, 1])) < 0.2) * 2 - 1),
    "pieslice": lambda x: _plus_one(
        np.logical_and(
            np.less_equal(-0.78, np.arctan2(x[:, 1], x[:, 0])), np.arctan2(x[:, 1], x[:, 0]) <= 0.78
        )
        * 2
        - 1
    ),
    "cross": lambda x: ((np.abs(x[:, 0]) < 0.3) + (np.abs(x[:, 1]) < 0.3)).astype(np.int32),  # bool + is OR
    "triangle": lambda x: np.logical_and(
        np.logical_and(x[:, 0] + x[:, 1] < 1, -x[:, 0] + x[:, 1] < 1), x[:, 1] > -0.5
    ).astype(np.int32),
}

# Expected class-1 fraction of the binary tasks (class fractions of the multi-class ones), from their geometry.
FRACTIONS = {
    "xor": 0.5,
    "nxor": 0.5,
    "or": 0.75,
    "and": 0.25,
    "qand": 0.25,
    "centercirc": math.pi * 0.5**2 / 4,
    "smallcentercirc": math.pi * 0.3**2 / 4,
    "twomoon": 0.5,
    "twomoon_rotated": 0.5,
    "square": 0.4**2 / 4,
    "pieslice": math.tan(0.78) / 4,  # two triangles of legs 1 and tan(0.78)
    "cross": 1 - 0.7**2,
    "triangle": 0.5,  # x1 in [-0.5, 0]: full width 2; x1 in [0, 1]: width 2 (1 - x1)
    "blob5x1": (0.2,) * 5,
    "concentric_circles": (0.25,) * 4,
}


def test_registry_names_and_class_counts():
    assert list(NAMES) == [
        "xor",
        "nxor",
        "or",
        "and",
        "qand",
        "circ",
        "centercirc",
        "smallcentercirc",
        "twomoon",
        "twomoon_rotated",
        "square",
        "random_xor",
        "fixed_random_xor",
        "pieslice",
        "cross",
        "triangle",
        "blob5x1",
        "concentric_circles",
    ]
    counts = {name: k for name, (_, k) in TOY2D_TASKS.items()}
    assert counts.pop("blob5x1") == 5 and counts.pop("concentric_circles") == 4
    assert set(counts.values()) == {2}
    assert set(NAMES) <= set(DATASET_NAMES)
    assert set(UNIFORM) | set(RULES) | set(FRACTIONS) <= set(NAMES)
    with pytest.raises(ValueError, match="unknown 2-D task 'sine'"):
        toy2d_stream("sine")


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_all_classes_occur(name):
    x, y = _draw(name)
    num_classes = TOY2D_TASKS[name][1]
    assert x.shape == (NUM, 2) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert y.shape == (NUM,) and y.dtype == np.int32
    np.testing.assert_array_equal(np.unique(y), np.arange(num_classes))


@pytest.mark.parametrize("name", UNIFORM)
def test_uniform_inputs_fill_the_square(name):
    x, _ = _draw(name)
    assert x.min() >= -1 and x.max() < 1
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=0.05)
    np.testing.assert_allclose(x.var(axis=0), 1 / 3, atol=0.03)  # U[-1, 1): variance 1/3


@pytest.mark.parametrize("name", sorted(RULES))
def test_labels_follow_the_spec_rule_pointwise(name):
    x, y = _draw(name)
    np.testing.assert_array_equal(y, RULES[name](x))


@pytest.mark.parametrize("name", sorted(FRACTIONS))
def test_class_balance(name):
    _, y = _draw(name)
    expected = FRACTIONS[name]
    if isinstance(expected, float):
        expected = (1 - expected, expected)
    # 4000 samples: a standard error of at most 0.008, so 0.03 is about 4 of them.
    np.testing.assert_allclose(np.bincount(y) / NUM, expected, atol=0.03)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_the_key_and_different_keys_differ(name):
    x, y = _draw(name)
    again = _jitted(name)(jax.random.PRNGKey(0), NUM)
    np.testing.assert_array_equal(again[0], x)
    np.testing.assert_array_equal(again[1], y)
    other_x, other_y = _draw(name, seed=1)
    assert not np.allclose(other_x, x) and not np.array_equal(other_y, y)


# Eager calls compile op by op (seconds each on a busy machine): one task of each kind of sampler.
@pytest.mark.parametrize("name", ["xor", "twomoon", "fixed_random_xor", "blob5x1"])
def test_eager_call_matches_jit(name):
    key = jax.random.PRNGKey(3)
    x, y = TOY2D_TASKS[name][0](key, 16)
    jx, jy = _jitted(name)(key, 16)
    np.testing.assert_allclose(x, jx, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, jy)


# ----- tasks with parameters drawn per call (one call = one episode) ------------------------------------------


def test_circ_with_given_centre_and_radius_is_the_disk_rule():
    x, y = jax.jit(functools.partial(circ, center=(0.3, -0.4), radius=0.45), static_argnums=1)(
        jax.random.PRNGKey(5), NUM
    )
    x = np.asarray(x)
    np.testing.assert_array_equal(y, _norm(x - np.array([[0.3, -0.4]], np.float32)) < 0.45)


def test_circ_draws_one_disk_per_call():
    fractions = []
    for seed in range(6):
        x, y = _draw("circ", seed)
        inside = x[y == 1]
        # r ~ U[0.2, 0.7): the positive points fit in a disk of diameter < 1.4, at least a quarter of it inside.
        assert np.linalg.norm(inside[:, None] - inside[None], axis=-1).max() < 1.4
        assert 0.25 * math.pi * 0.2**2 / 4 * 0.5 < y.mean() < math.pi * 0.7**2 / 4 + 0.03
        fractions.append(y.mean())
    assert len(set(np.round(fractions, 3))) == len(fractions)  # another key, another disk


def test_random_xor_rule_and_fixed_parameters():
    proj = np.array([[0.5, -0.8], [0.9, 0.2]], np.float32)
    bias = np.array([0.1, -0.3], np.float32)

    def rule(x: np.ndarray, proj: np.ndarray, bias: np.ndarray) -> np.ndarray:
        xx = x @ proj + bias[None]
        return _plus_one(np.sign(xx[:, 0] * xx[:, 1]))

    x, y = jax.jit(random_xor, static_argnums=1)(jax.random.PRNGKey(2), NUM, proj, bias)
    np.testing.assert_array_equal(y, rule(np.asarray(x), proj, bias))
    # Frozen: every call of the fixed task uses the same P and b, drawn in func2d's ranges.
    fixed = FixedRandomXor(0)
    p, b = (np.asarray(a) for a in fixed.params())
    assert p.shape == (2, 2) and np.all(np.abs(p) <= 1) and b.shape == (2,) and np.all(np.abs(b) <= 0.5)
    for seed in range(3):
        x, y = _draw("fixed_random_xor", seed)
        np.testing.assert_array_equal(y, rule(x, p, b))
    assert fixed == FixedRandomXor(0) and hash(fixed) == hash(FixedRandomXor(0))
    assert not np.allclose(p, FixedRandomXor(1).params()[0])
    # The run's seed freezes them through load_dataset, like the `random` dataset's images.
    assert load_dataset("fixed_random_xor", seed=3).stream == FixedRandomXor(3)


def test_random_xor_labelling_changes_per_call():
    # Two calls on the same x would label differently; compare the positive fraction across keys instead.
    fractions = {round(float(_draw("random_xor", seed)[1].mean()), 3) for seed in range(6)}
    assert len(fractions) == 6


# ----- shapes that are not uniform in the square --------------------------------------------------------------


def test_moons_lie_on_two_half_circles_and_are_rescaled_into_the_square():
    x, y = (
        np.asarray(a)
        for a in jax.jit(functools.partial(two_moon, noise=0.0), static_argnums=1)(jax.random.PRNGKey(0), NUM)
    )
    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
    np.testing.assert_allclose(x.min(axis=0), -1, atol=0.01)
    np.testing.assert_allclose(x.max(axis=0), 1, atol=0.01)
    raw = np.stack([(x[:, 0] + 1) * 3 / 2 - 1, (x[:, 1] + 1) * 1.5 / 2 - 0.5], -1)  # undo the rescale
    outer, inner = raw[y == 0], raw[y == 1]
    np.testing.assert_allclose(_norm(outer), 1, atol=1e-5)
    assert np.all(outer[:, 1] >= -1e-6)
    np.testing.assert_allclose(_norm(inner - np.array([[1.0, 0.5]])), 1, atol=1e-5)
    assert np.all(inner[:, 1] <= 0.5 + 1e-6)
    assert len(np.unique(x, axis=0)) == NUM  # grid points drawn without replacement


def test_moon_noise_and_rotation():
    # Rotated moons are not rescaled: undo the rotation and measure the radial noise around each half circle.
    x, y = _draw("twomoon_rotated")
    c, s = math.cos(3.1415 / 2), math.sin(3.1415 / 2)
    raw = x @ np.array([[c, -s], [s, c]]).T
    centres = np.where(y[:, None] == 0, [[0.0, 0.0]], [[1.0, 0.5]])
    radial = _norm(raw - centres) - 1
    assert abs(radial.mean()) < 0.01 and 0.09 < radial.std() < 0.11
    assert x[:, 0].min() > -0.5 - 0.6 and x[:, 1].min() < -1.5  # x1 spans about [-2, 1]: outside the square


def test_square_is_rotated_after_labelling():
    x, y = jax.jit(functools.partial(square, angle=0.5, size=0.3), static_argnums=1)(
        jax.random.PRNGKey(1), NUM
    )
    c, s = math.cos(0.5), math.sin(0.5)
    unrotated = np.asarray(x) @ np.array([[c, -s], [s, c]], np.float32).T
    assert np.abs(unrotated).max() <= 1 + 1e-5
    np.testing.assert_array_equal(y, np.abs(unrotated).max(axis=1) < 0.3)


def test_blobs_have_equal_counts_around_centres_in_the_box():
    x, y = _draw("blob5x1")
    np.testing.assert_array_equal(np.bincount(y), [NUM // 5] * 5)
    for k in range(5):
        points = x[y == k]
        centre = points.mean(axis=0)
        assert np.all(np.abs(centre) <= 1.01)
        np.testing.assert_allclose(points.std(axis=0), 0.1, atol=0.01)
    other_x, other_y = _draw("blob5x1", seed=1)
    assert not np.allclose(
        x[y == 0].mean(0), other_x[other_y == 0].mean(0), atol=0.05
    )  # new centres per call
    # make_blobs' split of an uneven count: the first num % n_centers blobs get one more.
    _, small = blobs(jax.random.PRNGKey(0), 7, n_centers=5)
    np.testing.assert_array_equal(np.bincount(np.asarray(small)), [2, 2, 1, 1, 1])


def test_concentric_circles_have_four_radii_and_are_shuffled():
    x, y = _draw("concentric_circles")
    np.testing.assert_array_equal(np.bincount(y), [NUM // 4] * 4)
    radii = [np.median(_norm(x[y == k])) for k in range(4)]
    np.testing.assert_allclose(radii, [1, 0.5, 5, 2.5], rtol=0.03)
    assert set(np.unique(y[: NUM // 2])) == {0, 1, 2, 3}  # not func2d's two unshuffled halves
    _, odd = concentric_circles(jax.random.PRNGKey(0), 7)
    assert odd.shape == (7,)


# ----- the dataset pipeline ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_works_through_load_dataset_and_online_episodes(name):
    dataset = load_dataset(name)
    num_classes = TOY2D_TASKS[name][1]
    assert dataset.is_stream and dataset.input_shape == (2,) and dataset.num_classes == num_classes
    assert NORMALISATION[name] == (0.0, 1.0)
    assert apply_normalisation(dataset, "dataset") is dataset
    source = make_episode_source(dataset, "train")
    episodes = sample_online_episodes(source, jax.random.PRNGKey(0), 3, 50)
    xs, ys = np.asarray(episodes.xs), np.asarray(episodes.ys)
    assert xs.shape == (3, 50, 2) and xs.dtype == np.float32
    assert ys.shape == (3, 50, num_classes)
    np.testing.assert_array_equal(ys.sum(-1), 1)
    assert not np.allclose(xs[0], xs[1])  # each episode has its own key
    test = sample_online_episodes(make_episode_source(dataset, "test"), jax.random.PRNGKey(0), 3, 50)
    np.testing.assert_array_equal(test.xs, xs)  # one i.i.d. stream: splits differ only by their keys
