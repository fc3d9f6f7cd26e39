"""The hand-designed baselines every comparison tunes: online SGD and Adam (VSML spec §5), their learning-rate
grids, and the tuner, defined once for `vsml evaluate`, `compare`, `introspect` and `sweep-lr`.

A baseline's learning rate is chosen by a small sweep (`tune_learning_rate`) on other episodes than those it
is scored on (the meta-training split, another key), so the comparison is fair to it. The rate lives in the
meta-parameters (`sgd_meta`: log α), not in the static learner, so a sweep compiles once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp

from vsml.evaluation.labels import hand_designed_label, optimizer_label
from vsml.evaluation.online import evaluate_on_source
from vsml.learners.base import Learner, PyTree
from vsml.learners.blur.learner import BLUR, BLURGenome, backprop_blur, backprop_genome
from vsml.learners.sgd import OnlineSGD, OnlineSGDMeta
from vsml.tasks.sampler import EpisodeSampler, Source

# Wide enough that the best rate was inside the grid on every dataset of the Fig. 8 grid (`vsml sweep-lr`, 500
# steps: the 160-unit MLPs and Adam chose the lowest rates of a grid that started at 0.01 / 0.001).
SGD_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
ADAM_LEARNING_RATES = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
LEARNING_RATES: dict[str, tuple[float, ...]] = {"sgd": SGD_LEARNING_RATES, "adam": ADAM_LEARNING_RATES}
SPEC_DEFAULT_RATES = {"sgd": 0.01, "adam": 0.001}  # spec §5
# On the batch-*summed* loss (BLUR's Hebbian sum): 1e-3 is a mean-loss rate of 0.128 at a batch of 128.
BATCH_SGD_LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


@dataclass(frozen=True)
class HandDesigned:
    """A hand-designed online optimiser on a linear (`hidden_sizes=()`) or tanh-MLP softmax classifier."""

    optimizer: str  # "sgd" (no momentum) or "adam"
    hidden_sizes: tuple[int, ...] = ()

    @property
    def token(self) -> str:
        """Its `vsml compare` name: sgd, adam, sgd-160, adam-160."""
        return "-".join((self.optimizer, *(str(h) for h in self.hidden_sizes)))

    @property
    def label(self) -> str:
        return hand_designed_label(self.optimizer, self.hidden_sizes)

    @property
    def rates(self) -> tuple[float, ...]:
        """The learning rates its tuning sweeps."""
        return LEARNING_RATES[self.optimizer]

    def learner(self) -> OnlineSGD:
        """The learner; its rate is swept through the meta-parameters (`sgd_meta`)."""
        rate = SPEC_DEFAULT_RATES[self.optimizer]  # its initial value only: `init_meta` is not used
        return OnlineSGD(optimizer=self.optimizer, learning_rate=rate, hidden_sizes=self.hidden_sizes)


# `vsml compare`'s hand-designed contenders: linear or one 160-unit tanh layer (spec §5).
HAND_DESIGNED: dict[str, HandDesigned] = {
    b.token: b
    for b in (
        HandDesigned("sgd"),
        HandDesigned("adam"),
        HandDesigned("sgd", (160,)),
        HandDesigned("adam", (160,)),
    )
}


def sgd_meta(rate: float) -> OnlineSGDMeta:
    """The meta-parameters of an `OnlineSGD` learner running at `rate`."""
    return OnlineSGDMeta(jnp.log(jnp.float32(rate)))


def batch_sgd_meta(rate: float) -> BLURGenome:
    """The genome of `same_unroll_sgd` running at `rate` (on the batch-summed loss)."""
    return backprop_genome(2, -rate)


def same_unroll_sgd(learner: Learner) -> BLUR:
    """Plain SGD on the same MLP and batches as a batched learner: BLUR's backprop genome, which is exactly SGD
    on the batch-summed cross-entropy (tests/learners/test_blur.py), tanh hidden units, the same initial
    synapse distribution when `learner` is BLUR."""
    init = {}
    if isinstance(learner, BLUR):
        init = {"init_scale": learner.init_scale, "scale_by_channels": learner.scale_by_channels}
    return backprop_blur(getattr(learner, "hidden_sizes", ()), "tanh", "ce", **init)


Baseline = tuple[str, Learner, tuple[float, ...], Callable[[float], PyTree]]


def meta_test_baselines(learner: Learner, batched: bool) -> list[Baseline]:
    """(label, learner, learning rates to sweep, meta for a rate) of each hand-designed contender of a meta-test
    of `learner`; `batched` (inner batches or query steps): plain SGD on the same MLP and batches instead."""
    if batched:
        # Adam on the batch-mean loss of a tanh MLP of the same sizes (its own Haiku-default initialisation).
        adam = HandDesigned("adam", tuple(getattr(learner, "hidden_sizes", ())))
        return [
            ("SGD, same MLP and batches", same_unroll_sgd(learner), BATCH_SGD_LEARNING_RATES, batch_sgd_meta),
            ("Adam, same MLP and batches", adam.learner(), adam.rates, sgd_meta),
        ]
    return [
        (optimizer_label(b.optimizer), b.learner(), b.rates, sgd_meta)
        for b in (HAND_DESIGNED["sgd"], HAND_DESIGNED["adam"])
    ]


def tune_learning_rate(
    learner: Learner,
    rates: tuple[float, ...],
    source: Source,
    num_episodes: int,
    sampler: EpisodeSampler,
    seed: int,
    by_final_step: bool = False,
    meta_for_rate: Callable[[float], PyTree] | None = None,
    query_steps: int = 0,
) -> tuple[float, dict[float, float]]:
    """The rate with the best mean online accuracy on `source` (the meta-training split); with
    `by_final_step`, the best last-step accuracy instead (few-shot: the query is what counts, spec §6.5); with
    `query_steps`, the best query accuracy after the learning steps.

    The rate lives in the meta-parameters (`meta_for_rate`, default `sgd_meta`), not in the (static) learner,
    so the sweep compiles once.
    """
    meta_for_rate = meta_for_rate or sgd_meta
    scores = {}
    for rate in rates:
        result = evaluate_on_source(
            learner, meta_for_rate(rate), source, num_episodes=num_episodes, seed=seed, sampler=sampler,
            query_steps=query_steps,
        )  # fmt: skip
        if query_steps:
            scores[rate] = result.mean_query_accuracy
        else:
            scores[rate] = result.final_accuracy if by_final_step else result.mean_accuracy
    return max(scores, key=scores.get), scores


def grid_edge(best: float, rates: tuple[float, ...]) -> str | None:
    """Which end of the (sorted) grid the best rate sits at; with one rate, both ("widen it both ways")."""
    if len(rates) == 1:
        return "both"
    if best == rates[0]:
        return "low"
    if best == rates[-1]:
        return "high"
    return None
