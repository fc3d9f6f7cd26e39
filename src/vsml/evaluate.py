"""Meta-testing: run a learner online on held-out episodes and summarise its learning curve (spec §2)."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vsml.learners.base import Learner, PyTree, run_episodes
from vsml.meta.objectives import per_step_cross_entropy
from vsml.tasks.sampler import EpisodeSampler, Source

DEFAULT_EVAL_SEED = 22  # spec §2: evaluation uses a fixed key (seed 22), the same episodes every time


class OnlineEvaluation(NamedTuple):
    """Accuracy of the prediction made before each label, over N held-out episodes of T steps."""

    accuracy: np.ndarray  # [N, T] 1 where the online prediction was right
    loss: np.ndarray  # [N, T] cross-entropy of each online prediction

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


@partial(jax.jit, static_argnames=("learner", "num_episodes", "sampler"))
def _evaluate_batch(
    learner: Learner,
    meta: PyTree,
    source: Source,
    key: jax.Array,
    num_episodes: int,
    sampler: EpisodeSampler,
    transform_key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    data_key, init_key = jax.random.split(key)
    episodes = sampler.sample(source, data_key, num_episodes, transform_key)
    logits = run_episodes(learner, meta, jax.random.split(init_key, num_episodes), episodes.xs, episodes.ys)
    correct = jnp.argmax(logits, axis=-1) == jnp.argmax(episodes.ys, axis=-1)
    return correct.astype(jnp.float32), per_step_cross_entropy(logits, episodes.ys)


def evaluate_online(
    learner: Learner,
    meta: PyTree,
    source: Source,
    *,
    num_episodes: int = 64,
    length: int = 100,
    seed: int = DEFAULT_EVAL_SEED,
    batch_size: int = 64,
    sampler: EpisodeSampler | None = None,
) -> OnlineEvaluation:
    """Run `num_episodes` online episodes of `length` steps (in batches, to bound memory); fixed seed.

    `sampler` (default: plain online episodes of `length`) may add a transform or make few-shot episodes; the
    evaluation's transform key is derived from `seed`, so it differs from the meta-training slice's (as the
    authors' evaluation workers drew their own projections).
    """
    sampler = sampler or EpisodeSampler(length)
    if num_episodes < 1 or length < 1 or batch_size < 1:
        raise ValueError(
            f"num_episodes, length and batch_size must be >= 1, got {num_episodes}, {length}, {batch_size}"
        )
    accuracies, losses = [], []
    key = jax.random.PRNGKey(seed)
    transform_key = jax.random.fold_in(key, 1 << 30)
    done = 0
    while done < num_episodes:
        count = min(batch_size, num_episodes - done)
        correct, loss = _evaluate_batch(
            learner, meta, source, jax.random.fold_in(key, done), count, sampler, transform_key
        )
        accuracies.append(np.asarray(correct))
        losses.append(np.asarray(loss))
        done += count
    return OnlineEvaluation(np.concatenate(accuracies), np.concatenate(losses))
