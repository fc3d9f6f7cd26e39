"""The episode sampler's inner batch: N·T·B examples, transformed, then laid out as [N, T, B, ...]."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from vsml.tasks import load_dataset, make_episode_source
from vsml.tasks.sampler import EpisodeSampler
from vsml.tasks.transforms import EpisodeTransform

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return make_episode_source(load_dataset("digits"), "train")


def test_batched_episodes_are_the_unbatched_examples_regrouped(digits):
    key, transform_key = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    transform = EpisodeTransform(project=True)
    batched = EpisodeSampler(3, transform, batch_size=4).sample(digits, key, 2, transform_key)
    flat = EpisodeSampler(12, transform).sample(digits, key, 2, transform_key)
    assert batched.xs.shape == (2, 3, 4) + flat.xs.shape[2:] and batched.ys.shape == (2, 3, 4, 10)
    np.testing.assert_array_equal(np.asarray(batched.xs).reshape(flat.xs.shape), np.asarray(flat.xs))
    np.testing.assert_array_equal(np.asarray(batched.ys).reshape(2, 12, 10), np.asarray(flat.ys))


def test_bad_batch_size_is_a_clear_error():
    with pytest.raises(ValueError, match="task.batch_size"):
        EpisodeSampler(3, batch_size=0)


def test_padding_widens_the_label_space_but_not_the_classes_that_occur():
    source = make_episode_source(load_dataset("digits"), "train")
    padded = EpisodeSampler(5, EpisodeTransform(pad_classes_to=62))
    assert (padded.num_classes(source), padded.occurring_classes(source)) == (62, 10)
    subset = EpisodeSampler(5, EpisodeTransform(classes=(3, 1), pad_classes_to=12))
    assert (subset.num_classes(source), subset.occurring_classes(source)) == (12, 2)
