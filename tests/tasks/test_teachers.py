"""Generated teacher tasks: a new random teacher in every episode (linear, a tanh MLP or Gaussian blobs), at any
size."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from vsml.tasks.datasets import load_dataset
from vsml.tasks.episodes import make_episode_source, sample_online_episodes
from vsml.tasks.teachers import BLOBS_PER_CLASS, parse_teacher_name, teacher_stream


def linear_fit_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    model = LogisticRegression(C=1e4, max_iter=5000).fit(x, y)
    return float(model.score(x_test, y_test))


def test_a_teacher_dataset_is_a_stream_of_its_size():
    dataset = load_dataset("mlp-teacher-12-4")
    assert dataset.is_stream and dataset.num_classes == 4 and dataset.input_shape == (12,)
    x, y = jax.jit(dataset.stream, static_argnums=1)(jax.random.key(0), 50)
    assert x.shape == (50, 12) and x.dtype == np.float32 and y.dtype == np.int32
    assert set(np.asarray(y)) <= set(range(4))
    assert load_dataset("mlp_teacher_12_4").stream is dataset.stream  # one function: compiled once


def test_each_episode_has_its_own_teacher():
    """Within an episode a linear teacher's labels are linearly separable; a classifier fitted on one episode
    is at chance on another (a different teacher), so what carries over between episodes is only how to learn."""
    source = make_episode_source(load_dataset("linear_teacher_8_3"), "train")
    episodes = sample_online_episodes(source, jax.random.key(1), 6, 400)
    xs, ys = np.asarray(episodes.xs), np.asarray(episodes.ys).argmax(-1)
    within = [linear_fit_accuracy(x[:300], y[:300], x[300:], y[300:]) for x, y in zip(xs, ys, strict=True)]
    across = [linear_fit_accuracy(xs[i], ys[i], xs[i + 1], ys[i + 1]) for i in range(5)]
    assert min(within) > 0.9 and np.mean(across) < 0.6
    counts = np.bincount(ys.ravel(), minlength=3) / ys.size
    assert counts.min() > 0.15  # every class occurs


def test_an_mlp_teacher_is_less_linear_than_a_linear_one():
    def mean_linear_accuracy(kind: str) -> float:
        stream = teacher_stream(kind, 2, 2)
        scores = []
        for seed in range(8):
            x, y = (np.asarray(a) for a in stream(jax.random.key(seed), 600))
            if len(set(y)) < 2:
                continue
            scores.append(linear_fit_accuracy(x[:400], y[:400], x[400:], y[400:]))
        return float(np.mean(scores))

    assert mean_linear_accuracy("linear") > 0.97 > mean_linear_accuracy("mlp")


def test_blobs_label_each_example_with_the_class_of_its_cluster():
    """A blobs teacher's features have unit scale, and an example's label is the class of the cluster it was
    drawn from: at 16 features the nearest of the teacher's own cluster centres predicts it; the next episode's
    teacher has other centres."""
    features, classes = 16, 3
    stream = teacher_stream("blobs", features, classes)
    for seed in range(4):
        key = jax.random.key(seed)
        x, y = (np.asarray(a) for a in stream(key, 300))
        assert abs(x.std() - 1) < 0.3 and set(y) == {0, 1, 2}
        centres = np.asarray(jax.random.normal(jax.random.split(key)[0], (classes, BLOBS_PER_CLASS, features)))
        for own, expected in ((centres, 0.95), (np.roll(centres, 1, axis=0), 0.05)):  # another class order
            distances = ((x[:, None, None] - own[None] / np.sqrt(2)) ** 2).sum(-1)
            accuracy = float((distances.min(-1).argmin(-1) == y).mean())
            assert accuracy > expected if expected > 0.5 else accuracy < expected
    assert parse_teacher_name("blobs_teacher_32_5") == ("blobs", 32, 5)
    assert load_dataset("blobs_teacher_32_5").input_shape == (32,)


def test_teacher_names_and_their_errors():
    assert parse_teacher_name("linear_teacher_64_10") == ("linear", 64, 10)
    assert parse_teacher_name("mnist") is None
    with pytest.raises(ValueError, match="2..1000 classes"):
        parse_teacher_name("mlp_teacher_8_1")
    with pytest.raises(ValueError, match="linear_teacher_F_C"):
        load_dataset("cubic_teacher_8_2")
    with pytest.raises(ValueError, match="teacher kind"):
        teacher_stream("cubic", 2, 2)
