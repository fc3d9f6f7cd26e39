"""Tests of dataset and episode transforms (vsml.tasks.transforms; spec/vsml.md §3.3)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml.tasks import load_dataset
from vsml.tasks.datasets import Dataset
from vsml.tasks.episodes import Episodes, make_episode_source, sample_online_episodes
from vsml.tasks.transforms import (
    EpisodeTransform,
    apply_normalisation,
    centre_crop,
    filter_classes,
    pad_inputs,
    pad_labels,
    prepare_dataset,
    project_inputs,
    resize_images,
    sample_permutation,
    sample_projection,
    transform_episodes,
)


def test_per_feature_standardisation_uses_train_statistics():
    pytest.importorskip("sklearn")
    digits = load_dataset("digits")
    out = apply_normalisation(digits, "per_feature")
    flat = out.train_x.reshape(len(out.train_x), -1)
    varying = digits.train_x.reshape(len(digits.train_x), -1).astype(np.float64).std(axis=0) > 1e-6
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0)[varying], 1, atol=1e-3)
    assert np.all(flat[:, ~varying] == 0)  # constant pixels: shifted, not blown up
    # Test data reuses the train statistics, so it is not exactly standardised itself.
    assert abs(out.test_x.mean()) < 0.2 and not np.allclose(
        out.test_x.reshape(len(out.test_x), -1).mean(0), 0
    )
    assert apply_normalisation(digits, "dataset") is digits


def test_unknown_normalisation_is_an_error():
    with pytest.raises(ValueError, match="per_feature"):
        apply_normalisation(load_dataset("random"), "zscore")


# ----- episode transforms (spec §3.3 steps 2, 3, 5-7) ---------------------------------------------------------


def _episodes(seed: int = 0, n: int = 2, t: int = 3, shape=(4, 4, 1), k: int = 3) -> Episodes:
    # numpy, not jax.random: eager jax.random calls compile (seconds on a busy 2-core machine).
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((n, t, *shape)).astype(np.float32)
    ys = np.eye(k, dtype=np.float32)[rng.integers(0, k, (n, t))]
    return Episodes(jnp.asarray(xs), jnp.asarray(ys))


def _repeated_episodes(n: int = 3, t: int = 4, shape=(4, 4, 1)) -> Episodes:
    """Every step of every episode shows the same image, so any difference comes from the transform."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ys = np.zeros((n, t, 2), np.float32)
    ys[..., 0] = 1
    return Episodes(jnp.asarray(np.broadcast_to(x, (n, t, *shape))), jnp.asarray(ys))


def _toy_dataset() -> Dataset:
    """Train image i is filled with i, test image i with 100 + i; labels cycle 0..4."""
    x = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None, None], (10, 2, 2, 1)).copy()
    y = (np.arange(10) % 5).astype(np.int32)
    return Dataset("toy", x, y, x + 100, y.copy(), 5, (2, 2, 1))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"resize": (0, 14)}, r"resize\[0\] must be >= 1"),
        ({"resize": (14,)}, "height, width"),
        ({"resize": (14.0, 14)}, "integer"),
        ({"classes": (1, 2, 1)}, r"\[1\] more than once"),
        ({"classes": ()}, "must not be empty"),
        ({"classes": (-1, 2)}, ">= 0"),
        ({"pad_classes_to": 2, "classes": (0, 1, 2)}, "smaller than the 3"),
        ({"pad_classes_to": 1}, ">= 2"),
        ({"pad_input_to": (28, 0, 1)}, ">= 1"),
        ({"resample_projection_per_episode": True}, "project = true"),
        ({"project": 1}, "true or false"),
    ],
)
def test_bad_transform_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        EpisodeTransform(**settings)


def test_transform_settings_from_yaml_lists_become_hashable_tuples():
    a = EpisodeTransform(resize=[14, 14], classes=[6, 2, 3], pad_input_to=[28, 28, 1])
    b = EpisodeTransform(resize=(14, 14), classes=(6, 2, 3), pad_input_to=(28, 28, 1))
    assert a == b and hash(a) == hash(b) and a.resize == (14, 14)
    assert EpisodeTransform().output_shapes((28, 28, 1), 10) == ((28, 28, 1), 10)  # the identity


def test_output_shapes_follow_the_spec_order_and_reject_misfits():
    t = EpisodeTransform(resize=(14, 14), pad_input_to=(28, 28, 1), pad_classes_to=62, classes=(1, 2, 3))
    assert t.output_shapes((28, 28, 1), 3) == ((28, 28, 1), 62)
    with pytest.raises(ValueError, match="prepare_dataset"):  # classes set but the dataset was not filtered
        t.output_shapes((28, 28, 1), 10)
    with pytest.raises(ValueError, match="after resize"):
        EpisodeTransform(resize=(32, 32), pad_input_to=(28, 28, 1)).output_shapes((28, 28, 1), 10)
    with pytest.raises(ValueError, match="cannot hold"):
        EpisodeTransform(pad_input_to=(28, 28)).output_shapes((28, 28, 1), 10)
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        EpisodeTransform(resize=(4, 4)).output_shapes((64,), 10)
    with pytest.raises(ValueError, match="smaller than the 10"):
        EpisodeTransform(pad_classes_to=5).output_shapes((28, 28, 1), 10)


def test_projection_matrix_is_glorot_uniform_and_fixed_by_its_key(key):
    size = 784
    p = np.asarray(sample_projection(key, size))
    limit = np.sqrt(6 / (2 * size))
    assert p.shape == (size, size) and p.dtype == np.float32
    assert np.abs(p).max() <= limit and np.abs(p).max() > 0.999 * limit
    assert abs(p.mean()) < 5 * np.sqrt(1 / size) / size  # 5 standard errors of the mean of D^2 entries
    np.testing.assert_allclose(p.var(), 1 / size, rtol=0.01)  # U(-a, a): a^2 / 3 = 1 / D
    np.testing.assert_array_equal(p, sample_projection(key, size))
    assert not np.allclose(p, sample_projection(jax.random.PRNGKey(1), size))


def test_projection_is_flatten_times_a_matrix_fixed_per_slice(key):
    episodes = _episodes()
    slice_key = jax.random.PRNGKey(7)
    t = EpisodeTransform(project=True)
    out = transform_episodes(t, episodes, slice_key)
    p = np.asarray(sample_projection(jax.random.split(slice_key)[0], 16))
    expected = (np.asarray(episodes.xs).reshape(2, 3, 16) @ p).reshape(2, 3, 4, 4, 1)
    np.testing.assert_allclose(out.xs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.ys, episodes.ys)
    # Fixed per slice: other episodes (and a fresh episode_key) get the same matrix; another slice another.
    repeated = _repeated_episodes()
    same = transform_episodes(t, repeated, slice_key, episode_key=jax.random.PRNGKey(3)).xs
    np.testing.assert_allclose(same, jnp.broadcast_to(same[0, 0], same.shape), rtol=1e-6)
    assert not np.allclose(same, transform_episodes(t, repeated, jax.random.PRNGKey(8)).xs)


def test_resampled_projection_differs_per_episode_and_is_consistent_within_one(key):
    t = EpisodeTransform(project=True, resample_projection_per_episode=True)
    repeated = _repeated_episodes()
    out = np.asarray(transform_episodes(t, repeated, key, episode_key=jax.random.PRNGKey(5)).xs)
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), rtol=1e-6)  # same P within one
    for i in range(1, out.shape[0]):
        assert not np.allclose(out[0, 0], out[i, 0])  # another P per episode
    p1 = np.asarray(sample_projection(jax.random.split(jax.random.PRNGKey(5), 3)[1], 16))
    np.testing.assert_allclose(
        out[1, 0], (np.asarray(repeated.xs[1, 0]).reshape(16) @ p1).reshape(4, 4, 1), rtol=1e-5
    )
    again = transform_episodes(t, repeated, key, episode_key=jax.random.PRNGKey(6)).xs
    assert not np.allclose(out, again)  # a fresh episode key, fresh matrices
    with pytest.raises(ValueError, match="episode_key"):
        transform_episodes(t, repeated, key)


def test_pixel_shuffle_is_one_fixed_permutation_per_slice(key):
    t = EpisodeTransform(shuffle=True)
    episodes = _episodes(shape=(3, 5, 2))
    out = np.asarray(transform_episodes(t, episodes, jax.random.PRNGKey(4)).xs)
    xs = np.asarray(episodes.xs)
    flat_in, flat_out = xs.reshape(2, 3, 30), out.reshape(2, 3, 30)
    np.testing.assert_array_equal(np.sort(flat_out, axis=-1), np.sort(flat_in, axis=-1))
    assert not np.array_equal(flat_out, flat_in)
    perm = np.asarray(sample_permutation(jax.random.split(jax.random.PRNGKey(4))[1], 30))
    np.testing.assert_array_equal(np.sort(perm), np.arange(30))
    np.testing.assert_array_equal(flat_out, flat_in[..., perm])  # the same permutation for every example
    # Consistent within and across the slice's episodes; another slice key, another permutation.
    repeated = _repeated_episodes()
    same = np.asarray(transform_episodes(t, repeated, jax.random.PRNGKey(4)).xs)
    np.testing.assert_array_equal(same, np.broadcast_to(same[0, 0], same.shape))
    assert not np.array_equal(same, transform_episodes(t, repeated, jax.random.PRNGKey(9)).xs)


def test_shuffle_is_skipped_when_projection_is_on(key):
    episodes = _episodes()
    both = EpisodeTransform(project=True, shuffle=True)
    assert not both.shuffles and EpisodeTransform(shuffle=True).shuffles
    np.testing.assert_array_equal(
        transform_episodes(both, episodes, key).xs,
        transform_episodes(EpisodeTransform(project=True), episodes, key).xs,
    )


def test_bilinear_resize_matches_hand_computed_tf_values():
    # tf.image.resize(bilinear): source coordinate (i + 0.5) * in / out - 0.5, clamped at the edges, no antialias.
    image = jnp.array([[0.0, 1.0], [2.0, 3.0]])[..., None]
    rows, cols = np.array([0.0, 0.5, 1.5, 2.0]), np.array([0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(resize_images(image, (4, 4))[..., 0], rows[:, None] + cols[None, :], atol=1e-6)
    # 3 -> 2: sources 0.25 and 1.75, i.e. 0.75 a + 0.25 b and 0.25 b + 0.75 c.
    np.testing.assert_allclose(
        resize_images(jnp.array([[[0.0], [1.0], [2.0]]]), (1, 2))[0, :, 0], [0.25, 1.75]
    )
    # 4 -> 2 without antialias averages pixel pairs (2x2 blocks), on a batch of episodes.
    xs = jnp.arange(16.0).reshape(1, 1, 4, 4, 1)
    out = transform_episodes(
        EpisodeTransform(resize=(2, 2)), Episodes(xs, jnp.ones((1, 1, 2))), jax.random.PRNGKey(0)
    )
    np.testing.assert_allclose(out.xs[0, 0, ..., 0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match=">= 1"):
        resize_images(image, (0, 3))


def test_padding_adds_trailing_zeros_to_inputs_and_labels(key):
    episodes = _episodes(shape=(8, 8, 1), k=10)
    t = EpisodeTransform(pad_input_to=(28, 28, 1), pad_classes_to=62)
    out = transform_episodes(t, episodes, key)
    assert out.xs.shape == (2, 3, 28, 28, 1) and out.ys.shape == (2, 3, 62)
    np.testing.assert_array_equal(out.xs[:, :, :8, :8], episodes.xs)
    assert not np.any(out.xs[:, :, 8:]) and not np.any(out.xs[:, :, :, 8:])
    np.testing.assert_array_equal(out.ys[..., :10], episodes.ys)
    assert not np.any(out.ys[..., 10:])
    with pytest.raises(ValueError, match="cannot pad"):
        pad_inputs(episodes.xs, (4, 4, 1))
    with pytest.raises(ValueError, match="cannot pad"):
        pad_labels(episodes.ys, 5)


def test_filter_classes_keeps_listed_labels_relabelled_by_position():
    dataset = _toy_dataset()
    out = filter_classes(dataset, (3, 1))
    assert out.num_classes == 2 and out.name == "toy" and out.input_shape == (2, 2, 1)
    np.testing.assert_array_equal(out.train_x[:, 0, 0, 0], [1, 3, 6, 8])  # original order kept
    np.testing.assert_array_equal(out.train_y, [1, 0, 1, 0])  # label 3 -> 0, label 1 -> 1
    np.testing.assert_array_equal(out.test_x[:, 0, 0, 0], [101, 103, 106, 108])
    assert out.train_y.dtype == np.int32
    assert prepare_dataset(dataset, EpisodeTransform()) is dataset
    np.testing.assert_array_equal(
        prepare_dataset(dataset, EpisodeTransform(classes=(3, 1))).train_y, out.train_y
    )


def test_filter_classes_errors_name_the_problem():
    dataset = _toy_dataset()
    with pytest.raises(ValueError, match=r"\[7\] are unknown.*0\.\.4"):
        filter_classes(dataset, (1, 7))
    with pytest.raises(ValueError, match="more than once"):
        filter_classes(dataset, (1, 1))
    sparse = dataclasses.replace(dataset, test_y=np.zeros(10, np.int32))
    with pytest.raises(ValueError, match="toy/test has no example"):
        filter_classes(sparse, (2, 3))
    with pytest.raises(ValueError, match="stream"):
        filter_classes(load_dataset("sum"), (0, 1))


def test_full_pipeline_under_jit_matches_the_composed_steps(key):
    t = EpisodeTransform(resize=(3, 3), pad_input_to=(4, 4, 1), pad_classes_to=5, shuffle=True, project=True)
    episodes = _episodes()
    jitted = jax.jit(transform_episodes, static_argnums=0)
    slice_key = jax.random.PRNGKey(2)
    out = jitted(t, episodes, slice_key)
    p = sample_projection(jax.random.split(slice_key)[0], 16)
    expected = project_inputs(pad_inputs(resize_images(episodes.xs, (3, 3)), (4, 4, 1)), p, input_ndim=3)
    np.testing.assert_allclose(out.xs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.xs, transform_episodes(t, episodes, slice_key).xs, rtol=1e-5, atol=1e-6)
    assert out.ys.shape == (2, 3, 5)
    jitted(t, _episodes(seed=1), jax.random.PRNGKey(3))
    jitted(EpisodeTransform(**dataclasses.asdict(t)), episodes, slice_key)  # an equal transform: a cache hit
    assert jitted._cache_size() == 1
    resampled = EpisodeTransform(project=True, resample_projection_per_episode=True, shuffle=True)
    out = jitted(resampled, episodes, slice_key, episode_key=key)
    assert out.xs.shape == episodes.xs.shape


def test_transforms_compose_with_sampled_episodes():
    t = EpisodeTransform(classes=(4, 0, 2), resize=(3, 3), pad_classes_to=4, project=True)
    dataset = prepare_dataset(_toy_dataset(), t)
    episodes = sample_online_episodes(make_episode_source(dataset, "train"), jax.random.PRNGKey(0), 2, 5)
    out = transform_episodes(t, episodes, jax.random.PRNGKey(1))
    assert t.output_shapes(dataset.input_shape, dataset.num_classes) == ((3, 3, 1), 4)
    assert out.xs.shape == (2, 5, 3, 3, 1) and out.ys.shape == (2, 5, 4)
    assert np.all(np.isfinite(out.xs)) and not np.any(out.ys[..., 3])
    with pytest.raises(ValueError, match="prepare_dataset"):  # forgot the filter: caught, not silently wrong
        unfiltered = make_episode_source(_toy_dataset(), "train")
        transform_episodes(
            t, sample_online_episodes(unfiltered, jax.random.PRNGKey(0), 2, 5), jax.random.PRNGKey(1)
        )


# ----- centre crop (BLUR's MNIST "crop to 20x20, resize to 10x10", spec/blur.md §9 Fig. 5) ----------------------


def test_centre_crop_is_the_central_window():
    episodes = _episodes(shape=(28, 28, 1))
    out = transform_episodes(EpisodeTransform(crop=(20, 20)), episodes, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(out.xs, np.asarray(episodes.xs)[:, :, 4:24, 4:24])
    np.testing.assert_array_equal(out.ys, episodes.ys)
    # Odd margins: offset (H - h) // 2, so the extra row / column is dropped at the bottom / right.
    image = np.arange(7 * 5 * 2, dtype=np.float32).reshape(7, 5, 2)
    np.testing.assert_array_equal(centre_crop(jnp.asarray(image), (4, 2)), image[1:5, 1:3])
    np.testing.assert_array_equal(
        centre_crop(jnp.asarray(image[..., 0]), (4, 2)), image[1:5, 1:3, 0]
    )  # [H, W]
    # [H, W] examples inside episodes [N, T, H, W].
    flat = _episodes(shape=(6, 6))
    out = transform_episodes(EpisodeTransform(crop=(3, 4)), flat, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(out.xs, np.asarray(flat.xs)[:, :, 1:4, 1:5])
    same = transform_episodes(EpisodeTransform(crop=(28, 28)), episodes, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(same.xs, episodes.xs)  # a full-size crop is the identity


def test_crop_then_resize_gives_blurs_10x10_mnist():
    t = EpisodeTransform(crop=[20, 20], resize=[10, 10])
    assert t.crop == (20, 20) and t.output_shapes((28, 28, 1), 10) == ((10, 10, 1), 10)
    episodes = _episodes(shape=(28, 28, 1))
    out = transform_episodes(t, episodes, jax.random.PRNGKey(0))
    assert out.xs.shape == (2, 3, 10, 10, 1)
    expected = resize_images(jnp.asarray(np.asarray(episodes.xs)[:, :, 4:24, 4:24]), (10, 10))
    np.testing.assert_allclose(out.xs, expected, rtol=1e-6, atol=1e-6)
    assert EpisodeTransform(crop=None) == EpisodeTransform()  # off by default: the old behaviour


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"crop": (20,)}, "height, width"),
        ({"crop": (0, 20)}, r"crop\[0\] must be >= 1"),
        ({"crop": (20.0, 20)}, "integer"),
    ],
)
def test_bad_crop_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        EpisodeTransform(**settings)


def test_crop_that_does_not_fit_is_a_clear_error():
    with pytest.raises(ValueError, match=r"crop=\[30, 20\] is larger than the 28x28"):
        EpisodeTransform(crop=(30, 20)).output_shapes((28, 28, 1), 10)
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
        EpisodeTransform(crop=(4, 4)).output_shapes((64,), 10)
    with pytest.raises(ValueError, match="after crop"):
        EpisodeTransform(crop=(20, 20), pad_input_to=(10, 10, 1)).output_shapes((28, 28, 1), 10)
    with pytest.raises(ValueError, match="larger than"):
        transform_episodes(EpisodeTransform(crop=(5, 5)), _episodes(), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="larger than the 4x4"):
        centre_crop(jnp.zeros((4, 4, 1)), (5, 4))
    with pytest.raises(ValueError, match="crop needs images"):
        centre_crop(jnp.zeros((2, 3, 4, 4, 1)), (2, 2))  # 5 axes: pass input_ndim for batches


def test_per_feature_normalisation_leaves_a_generated_stream_unchanged():
    stream = load_dataset("sum")
    assert apply_normalisation(stream, "per_feature") is stream
