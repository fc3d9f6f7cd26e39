"""Tests of on-device online episodes (vsml.tasks.episodes; spec/vsml.md §2, §3.3)."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.learners.base import spec_of_episode
from vsml.tasks import episodes
from vsml.tasks.datasets import Dataset, load_dataset
from vsml.tasks.episodes import Episodes, EpisodeSource, make_episode_source, sample_online_episodes

STATIC = ("num_episodes", "length")
TOY_SIZE = 50


def _toy_dataset(n: int = TOY_SIZE) -> Dataset:
    """Image i is filled with the value i (test image i: 1000 + i), so an image tells which example it is."""
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 3, 2, 1)).copy()
    y = (np.arange(n) * 7 % 3).astype(np.int32)
    return Dataset("toy", x, y, x + 1000, y[::-1].copy(), 3, (3, 2, 1))


def _example_ids(xs: jax.Array) -> np.ndarray:
    return np.asarray(xs)[..., 0, 0, 0].astype(int)


@pytest.fixture(scope="module")
def toy_source() -> EpisodeSource:
    return make_episode_source(_toy_dataset(), "train")


@pytest.fixture(scope="module")
def toy_episodes(toy_source: EpisodeSource) -> Episodes:
    # One shared sample (and so one compilation) for the checks below; rank promotion must not be needed.
    with jax.numpy_rank_promotion("raise"):
        return sample_online_episodes(toy_source, jax.random.key(0), 16, 20)


def test_shapes_dtypes_and_one_hot(toy_episodes: Episodes) -> None:
    eps = toy_episodes
    assert isinstance(eps, Episodes)
    assert eps.xs.shape == (16, 20, 3, 2, 1) and eps.xs.dtype == jnp.float32
    assert eps.ys.shape == (16, 20, 3) and eps.ys.dtype == jnp.float32
    ys = np.asarray(eps.ys)
    assert set(np.unique(ys)) <= {0.0, 1.0} and np.all(ys.sum(-1) == 1)
    spec = spec_of_episode(eps.xs[0], eps.ys[0])  # what learners.base.run_episode will see
    assert spec.input_shape == (3, 2, 1) and spec.num_classes == 3


def test_labels_match_images(toy_source: EpisodeSource, toy_episodes: Episodes) -> None:
    ids = _example_ids(toy_episodes.xs)
    np.testing.assert_array_equal(np.asarray(toy_episodes.ys).argmax(-1), np.asarray(toy_source.y)[ids])
    np.testing.assert_array_equal(np.asarray(toy_episodes.xs), np.asarray(toy_source.x)[ids])


def test_no_repeats_and_episodes_differ(toy_episodes: Episodes) -> None:
    ids = _example_ids(toy_episodes.xs)
    assert ids.min() >= 0 and ids.max() < TOY_SIZE
    for episode in ids:
        assert len(set(episode)) == len(episode), f"an example repeats within an episode: {episode}"
    assert len({tuple(e) for e in ids}) == len(ids), "two episodes got the same data"
    assert len({e[0] for e in ids}) > 1, "all episodes start with the same example"
    assert len(np.unique(ids)) > TOY_SIZE // 2, "episodes should cover much of the dataset"


@pytest.mark.parametrize("length", [1, TOY_SIZE])
def test_edge_lengths(toy_source: EpisodeSource, length: int) -> None:
    ids = _example_ids(sample_online_episodes(toy_source, jax.random.key(2), 3, length).xs)
    for episode in ids:
        assert len(set(episode)) == length


def test_permutation_sampler_draws_distinct_indices() -> None:
    # The sampler used when Floyd's would be slow (length close to a large n); test_edge_lengths[50] and
    # test_floyd_sample_is_uniform_over_ordered_pairs cover Floyd's at the same extreme.
    keys = jax.random.split(jax.random.key(3), 8)
    ids = np.asarray(jax.jit(jax.vmap(lambda k: episodes._permutation_blocks(k, 30, 30)))(keys))
    for episode in ids:
        assert sorted(episode) == list(range(30))
    assert len({tuple(e) for e in ids}) == 8


def test_longer_than_the_dataset_cycles_through_permutations() -> None:
    source = make_episode_source(load_dataset("random", seed=0), "train")  # 20 images (spec §3.3)
    eps = sample_online_episodes(source, jax.random.key(4), 3, 50)
    xs, x = np.asarray(eps.xs), np.asarray(source.x)
    ids = np.array([[np.flatnonzero((x == img).all(axis=(1, 2, 3)))[0] for img in ep] for ep in xs])
    np.testing.assert_array_equal(np.asarray(eps.ys).argmax(-1), np.asarray(source.y)[ids])
    for episode in ids:
        assert sorted(episode[:20]) == list(range(20)) and sorted(episode[20:40]) == list(range(20))
        assert len(set(episode[40:])) == 10
        assert not np.array_equal(episode[:20], episode[20:40]), "each pass should be reshuffled"


def test_same_key_same_episodes_and_different_key_different(
    toy_source: EpisodeSource, toy_episodes: Episodes
) -> None:
    again = sample_online_episodes(toy_source, jax.random.key(0), 16, 20)
    np.testing.assert_array_equal(toy_episodes.xs, again.xs)
    np.testing.assert_array_equal(toy_episodes.ys, again.ys)
    other = sample_online_episodes(toy_source, jax.random.key(1), 16, 20)
    assert not np.array_equal(toy_episodes.xs, other.xs)


def test_jit_matches_eager_and_compiles_once(toy_source: EpisodeSource, toy_episodes: Episodes) -> None:
    traces = []

    def traced(source, key, num_episodes, length):
        traces.append(1)  # runs only while tracing
        return sample_online_episodes(source, key, num_episodes, length)

    sample = jax.jit(traced, static_argnames=STATIC)
    jitted = sample(toy_source, jax.random.key(0), num_episodes=16, length=20)
    np.testing.assert_array_equal(toy_episodes.xs, jitted.xs)
    np.testing.assert_array_equal(toy_episodes.ys, jitted.ys)
    sample(toy_source, jax.random.key(8), num_episodes=16, length=20)
    # Another source of the same shapes reuses the compilation: the arrays are arguments, not constants.
    test_source = make_episode_source(_toy_dataset(), "test")
    from_test = sample(test_source, jax.random.key(0), num_episodes=16, length=20)
    assert len(traces) == 1
    assert _example_ids(from_test.xs).min() >= 1000  # it really read the test split
    np.testing.assert_array_equal(
        np.asarray(from_test.ys).argmax(-1), np.asarray(test_source.y)[_example_ids(from_test.xs) - 1000]
    )


def test_floyd_sample_is_uniform_over_ordered_pairs() -> None:
    n, length, trials = 5, 2, 20000
    keys = jax.random.split(jax.random.key(9), trials)
    picks = np.asarray(jax.jit(jax.vmap(lambda k: episodes._floyd_sample(k, n, length)))(keys))
    assert np.all(picks[:, 0] != picks[:, 1])
    counts = collections.Counter(map(tuple, picks))
    assert len(counts) == n * (n - 1)
    expected = trials / (n * (n - 1))  # 1000 each; standard deviation about 31
    assert all(abs(c - expected) < 160 for c in counts.values()), counts


def test_sum_sign_episodes() -> None:
    source = make_episode_source(load_dataset("sum"), "train")
    assert source.x is None and source.size is None and source.num_classes == 2
    with jax.numpy_rank_promotion("raise"):
        eps = sample_online_episodes(source, jax.random.key(10), 4, 25)
    assert eps.xs.shape == (4, 25, 28, 28, 1) and eps.ys.shape == (4, 25, 2)
    sums = np.asarray(eps.xs).reshape(4, 25, -1).sum(-1)
    np.testing.assert_array_equal(np.asarray(eps.ys).argmax(-1), (sums >= 0).astype(int))
    assert not np.array_equal(eps.xs[0], eps.xs[1])
    np.testing.assert_array_equal(eps.xs, sample_online_episodes(source, jax.random.key(10), 4, 25).xs)


def test_digits_episodes_match_the_source() -> None:
    pytest.importorskip("sklearn")
    source = make_episode_source(load_dataset("digits"), "test")
    eps = sample_online_episodes(source, jax.random.key(11), 3, 100)
    x, y = np.asarray(source.x).reshape(len(source.y), -1), np.asarray(source.y)
    images, labels = np.asarray(eps.xs).reshape(300, -1), np.asarray(eps.ys).argmax(-1).ravel()
    for img, label in zip(images, labels, strict=True):
        rows = np.flatnonzero((x == img).all(axis=1))  # digits has a few duplicate images
        assert rows.size >= 1 and label in y[rows]


def test_source_metadata(toy_source: EpisodeSource) -> None:
    assert toy_source.size == TOY_SIZE and toy_source.num_classes == 3 and toy_source.input_shape == (3, 2, 1)
    assert isinstance(toy_source.x, jax.Array) and toy_source.y.dtype == jnp.int32
    assert len(jax.tree_util.tree_leaves(toy_source)) == 2, "only the arrays should be pytree leaves"


@pytest.mark.parametrize(
    "num_episodes, length, error, message",
    [
        (0, 5, ValueError, "num_episodes must be >= 1"),
        (2, 0, ValueError, "length must be >= 1"),
        (2, -3, ValueError, "length must be >= 1"),
        (2, 5.0, TypeError, "length must be a Python int"),
        (True, 5, TypeError, "num_episodes must be a Python int"),
    ],
)
def test_bad_counts(toy_source: EpisodeSource, num_episodes, length, error, message) -> None:
    with pytest.raises(error, match=message):
        sample_online_episodes(toy_source, jax.random.key(0), num_episodes, length)


def test_traced_length_gets_a_hint(toy_source: EpisodeSource) -> None:
    with pytest.raises(TypeError, match="static_argnames"):
        jax.jit(sample_online_episodes)(toy_source, jax.random.key(0), 2, 5)


def test_bad_split_and_empty_dataset() -> None:
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        make_episode_source(_toy_dataset(), "valid")
    no_x, no_y = np.zeros((0, 2, 2, 1), np.float32), np.zeros(0, np.int32)
    empty = Dataset("empty", no_x, no_y, None, None, 2, (2, 2, 1))
    with pytest.raises(ValueError, match="empty"):
        make_episode_source(empty, "train")
