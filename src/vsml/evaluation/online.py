"""Meta-testing: run a learner online on held-out episodes and summarise its learning curve (spec §2)."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import numpy as np

from vsml.evaluation.defaults import EVAL_SEED
from vsml.evaluation.statistics import interval_95
from vsml.learners.base import AUTO, Learner, PyTree, map_in_batches, resolve_at_once, run_episodes
from vsml.meta.objectives import correct_predictions, per_step_cross_entropy, run_with_query
from vsml.tasks.sampler import EpisodeSampler, Source


class OnlineEvaluation(NamedTuple):
    """Accuracy of the prediction made before each label, over N held-out episodes of T steps."""

    accuracy: np.ndarray  # [N, T] 1 where the prediction was right (an inner batch's mean)
    loss: np.ndarray  # [N, T] cross-entropy of each online prediction (batch mean)
    query_accuracy: np.ndarray | None = None  # [N] forward-only accuracy on the query steps after learning

    @property
    def curve(self) -> np.ndarray:  # [T] mean online accuracy per step
        return self.accuracy.mean(axis=0)

    @property
    def curve_std(self) -> np.ndarray:  # [T] spread over episodes
        return self.accuracy.std(axis=0)

    @property
    def mean_accuracy(
        self,
    ) -> float:  # `eval_accuracy` of the authors' logs: mean over all steps and episodes
        return float(self.accuracy.mean())

    @property
    def final_accuracy(self) -> float:  # `eval_final_accuracy`: the last step only
        return float(self.accuracy[:, -1].mean())

    @property
    def mean_loss(self) -> float:
        return float(self.loss.mean())

    @property
    def loss_curve(self) -> np.ndarray:  # [T] mean online cross-entropy per step
        return self.loss.mean(axis=0)

    @property
    def accuracy_interval(self) -> float:  # 95% interval of `mean_accuracy` over episodes
        return interval_95(self.accuracy.mean(axis=1))

    @property
    def final_accuracy_interval(self) -> float:  # 95% interval of `final_accuracy` over episodes
        return interval_95(self.accuracy[:, -1])

    @property
    def curve_interval(self) -> np.ndarray:  # [T] 95% interval of each step's mean accuracy over episodes
        return np.array([interval_95(column) for column in self.accuracy.T])

    @property
    def mean_query_accuracy(self) -> float | None:
        return None if self.query_accuracy is None else float(self.query_accuracy.mean())

    @property
    def query_accuracy_interval(self) -> float | None:  # 95% interval of `mean_query_accuracy` over episodes
        return None if self.query_accuracy is None else interval_95(self.query_accuracy)


def _per_step(a: jax.Array) -> jax.Array:
    """[N, T, *batch] -> [N, T]: an inner batch counts as one step (its mean)."""
    return a.reshape(a.shape[:2] + (-1,)).mean(axis=-1)


@partial(jax.jit, static_argnames=("learner", "num_episodes", "sampler", "query_steps"))
def _evaluate_batch(
    learner: Learner,
    meta: PyTree,
    source: Source,
    key: jax.Array,
    num_episodes: int,
    sampler: EpisodeSampler,
    transform_key: jax.Array,
    query_steps: int = 0,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    data_key, init_key = jax.random.split(key)
    episodes = sampler.sample(source, data_key, num_episodes, transform_key)
    init_keys = jax.random.split(init_key, num_episodes)
    xs, ys = episodes.xs, episodes.ys
    query = None
    if query_steps:
        run = partial(run_with_query, learner, meta, query_steps=query_steps)
        logits, query_logits = map_in_batches(
            run, (init_keys, xs, ys), resolve_at_once(learner, AUTO, xs, ys)
        )
        ys, query_ys = ys[:, :-query_steps], ys[:, -query_steps:]
        query = correct_predictions(query_logits, query_ys).reshape((num_episodes, -1)).mean(axis=-1)
    else:
        logits = run_episodes(learner, meta, init_keys, xs, ys)
    return _per_step(correct_predictions(logits, ys)), _per_step(per_step_cross_entropy(logits, ys)), query


def evaluate_on_source(
    learner: Learner,
    meta: PyTree,
    source: Source,
    *,
    num_episodes: int = 64,
    length: int = 100,
    seed: int = EVAL_SEED,
    batch_size: int = 64,
    sampler: EpisodeSampler | None = None,
    query_steps: int = 0,
) -> OnlineEvaluation:
    """Run `num_episodes` online episodes of `length` steps (in batches, to bound memory); fixed seed.

    `sampler` (default: plain online episodes of `length`) may add a transform or make few-shot episodes; the
    evaluation's transform key is derived from `seed`, so it differs from the meta-training slice's (as the
    authors' evaluation workers drew their own projections). With `query_steps`, the sampler's episodes end
    with that many forward-only query steps (`sampler.length` counts them), reported as `query_accuracy`.
    """
    sampler = sampler or EpisodeSampler(length)
    if num_episodes < 1 or length < 1 or batch_size < 1:
        raise ValueError(
            f"num_episodes, length and batch_size must be >= 1, got {num_episodes}, {length}, {batch_size}"
        )
    accuracies, losses, queries = [], [], []
    key = jax.random.PRNGKey(seed)
    transform_key = jax.random.fold_in(key, 1 << 30)
    done = 0
    while done < num_episodes:
        count = min(batch_size, num_episodes - done)
        correct, loss, query = _evaluate_batch(
            learner, meta, source, jax.random.fold_in(key, done), count, sampler, transform_key, query_steps
        )
        accuracies.append(np.asarray(correct))
        losses.append(np.asarray(loss))
        queries.append(None if query is None else np.asarray(query))
        done += count
    query_accuracy = np.concatenate(queries) if query_steps else None
    return OnlineEvaluation(np.concatenate(accuracies), np.concatenate(losses), query_accuracy)
