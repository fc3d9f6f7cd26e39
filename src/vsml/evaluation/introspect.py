"""Introspection: what a learner predicts over a short episode (and, for BLUR, whether its update is a gradient).

1. VSML (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905), Sec. 5 (spec vsml.md §6.6): the class
   probabilities of every online prediction over a short episode of a few classes. The paper's claim: after
   ONE labelled example of a class, the meta-learned learning algorithm already predicts that class with high
   confidence, while SGD moves its predictions gradually, so the learned algorithm is not gradient descent.
   `prediction_trace` records one episode; `recognition_by_k` summarises the probability of the true class as
   a function of k, the number of earlier labelled examples of that class (k = 0: never seen before).
   `introspect_run` compares a trained run with online SGD (learning rate tuned on the training split) on the
   same episodes; `vsml.report.introspect.plot_probabilities` draws it.
2. BLUR (Sandler et al., ICML 2021, arXiv 2104.04657), §3.5: for a BLUR run `introspect_run` adds the asymmetry
   of its update Jacobian (`vsml.evaluation.asymmetry`): a gradient-descent update has a symmetric one.

Documented choices (the paper's Sec. 5 text and figure details are not available, spec §6.6):
- Episodes: `ways` classes drawn at random from the (test) split, ⌈T / ways⌉ distinct examples of each, in
  random order, labels kept in the dataset's label space (what the learner was meta-trained on).
- Every learner runs online with single examples, so a run meta-trained with an inner batch (VSML's
  `inner_batch`, BLUR's `task.batch_size`) is introspected with batch 1 (VSML's V_M does not depend on it;
  BLUR's activation normalisation over the batch, paper §3.4 / spec blur.md §4, degenerates at batch 1).
  BLUR's Jacobian is taken on batches of the run's own size.
- Only array datasets (not generated streams, not Omniglot's few-shot source) can be introspected.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml.evaluation.asymmetry import ASYMMETRY_MAX_SYNAPSES, gradient_asymmetry_by_layer
from vsml.evaluation.baselines import HAND_DESIGNED, grid_edge, sgd_meta, tune_learning_rate
from vsml.evaluation.defaults import EVAL_SEED, TUNE_SEED
from vsml.evaluation.labels import learner_labels, optimizer_label
from vsml.evaluation.meta_test import TrainedRun, meta_trained_label
from vsml.evaluation.statistics import interval_95, over_runs
from vsml.learners.base import Learner, PyTree, run_episode, run_episodes
from vsml.learners.blur.learner import BLUR
from vsml.run.experiment import experiment_sampler, make_experiment_source
from vsml.tasks.episodes import Episodes, EpisodeSource
from vsml.tasks.transforms import EpisodeTransform, transform_episodes

Array = jax.Array
# BLUR's Jacobian is taken after this many steps, at synapses that have learned a little.
ASYMMETRY_WARMUP_STEPS = 4


# ----- 1. the probability trace and its summary by k (VSML Sec. 5) ----------------------------------------------


def earlier_examples(labels: np.ndarray) -> np.ndarray:
    """k_t = how many steps s < t had the label of step t (k = 0: the class was never labelled before).

    `labels: [..., T]` integer classes; returns `[..., T]` ints, per episode along the last axis.
    """
    labels = np.asarray(labels)
    one_hot = labels[..., None] == np.arange(int(labels.max(initial=0)) + 1)
    before = np.cumsum(one_hot, axis=-2) - one_hot  # the step itself does not count
    return np.take_along_axis(before, labels[..., None], axis=-1)[..., 0]


def recognition_by_k(
    probabilities: np.ndarray, labels: np.ndarray, max_k: int | None = None
) -> dict[str, list[Any]]:
    """Mean probability of the true class and accuracy of the steps whose class had k earlier labelled examples.

    `probabilities: [..., T, C]`, `labels: [..., T]`; leading axes (episodes) are pooled: each entry is a mean
    over all steps with that k. Returns lists over k = 0..max_k (default: the largest k present): "k",
    "true_class_probability", "accuracy" (argmax = label) and "count"; a k without steps gives None. Steps with
    k > max_k are left out. With episodes (`[N, T, C]`), also the 95% interval of each over episodes
    ("true_class_probability_interval_95", "accuracy_interval_95"): each episode's mean over its steps with
    that k, the episodes without such a step left out.
    """
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    if probabilities.shape[:-1] != labels.shape:
        raise ValueError(
            f"probabilities {probabilities.shape} and labels {labels.shape} must be [..., T, C], [..., T]"
        )
    true_probability = np.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    correct = np.argmax(probabilities, axis=-1) == labels
    k = earlier_examples(labels)
    max_k = int(k.max(initial=0)) if max_k is None else int(max_k)
    summary: dict[str, list[Any]] = {"k": [], "true_class_probability": [], "accuracy": [], "count": []}
    by_episode = labels.ndim == 2
    if by_episode:
        summary |= {"true_class_probability_interval_95": [], "accuracy_interval_95": []}
    for value in range(max_k + 1):
        mask = k == value
        count = int(mask.sum())
        summary["k"].append(value)
        summary["count"].append(count)
        summary["true_class_probability"].append(float(true_probability[mask].mean()) if count else None)
        summary["accuracy"].append(float(correct[mask].mean()) if count else None)
        if by_episode:
            present = mask.any(axis=-1)
            for name, values in (("true_class_probability", true_probability), ("accuracy", correct)):
                per_episode = (values * mask).sum(axis=-1)[present] / mask.sum(axis=-1)[present]
                summary[f"{name}_interval_95"].append(interval_95(per_episode) if count else None)
    return summary


def prediction_trace(learner: Learner, meta: PyTree, key: Array, xs: Array, ys: Array) -> dict[str, Any]:
    """One online episode (`xs: [T, *input_shape]`, one-hot `ys: [T, C]`) as the learner sees it (Sec. 5).

    Returns numpy arrays over the T steps: "probabilities" [T, C] (softmax of each prediction, made before
    its label), "labels" [T], "true_class_probability" [T], "predicted" [T], "correct" [T], "earlier_examples"
    [T] (k of `earlier_examples`), and "by_k", the `recognition_by_k` summary of this episode.
    """
    if ys.ndim != 2:
        raise ValueError(
            f"prediction_trace needs one example per step: ys [T, C], got shape {tuple(ys.shape)}"
        )
    logits = run_episode(learner, meta, key, xs, ys)
    probabilities = np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), np.float64)
    labels = np.asarray(jnp.argmax(ys, axis=-1))
    predicted = np.argmax(probabilities, axis=-1)
    return {
        "probabilities": probabilities,
        "labels": labels,
        "true_class_probability": np.take_along_axis(probabilities, labels[:, None], axis=-1)[:, 0],
        "predicted": predicted,
        "correct": predicted == labels,
        "earlier_examples": earlier_examples(labels),
        "by_k": recognition_by_k(probabilities, labels),
    }


# ----- 2. the episodes: a few classes, a few examples each, random order ---------------------------------------


def introspection_episode(source: EpisodeSource, key: Array, length: int, ways: int) -> Episodes:
    """One episode of `length` steps: `ways` random classes of `source` (among those with enough examples),
    ⌈length / ways⌉ distinct examples of each (the first classes get one more when `ways` does not divide
    `length`), in random order. Returns xs [T, *input_shape], one-hot ys [T, num_classes] in the source's
    label space. Jittable with `length` and `ways` static; check the source first with `check_source`."""
    per_class = math.ceil(length / ways)
    class_key, example_key, order_key = jax.random.split(key, 3)
    counts = jnp.zeros((source.num_classes,), jnp.int32).at[source.y].add(1)
    # Random scores; classes with too few examples rank last, so only eligible classes are chosen.
    class_scores = jnp.where(counts >= per_class, jax.random.uniform(class_key, counts.shape), -1.0)
    classes = jax.lax.top_k(class_scores, ways)[1]  # [ways]
    # Per class, the top `per_class` of random scores among its examples: distinct examples, uniformly drawn.
    example_scores = jax.random.uniform(example_key, source.y.shape)
    masked = jnp.where(source.y[None, :] == classes[:, None], example_scores[None, :], -1.0)
    examples = jax.lax.top_k(masked, per_class)[1]  # [ways, per_class]
    slots = jax.random.permutation(order_key, jnp.tile(jnp.arange(ways), per_class)[:length])  # [T]
    occurrence = jnp.take_along_axis(
        jnp.cumsum(jax.nn.one_hot(slots, ways, dtype=jnp.int32), axis=0) - 1, slots[:, None], axis=1
    )[:, 0]
    indices = examples[slots, occurrence]
    ys = jax.nn.one_hot(source.y[indices], source.num_classes, dtype=jnp.float32)
    return Episodes(source.x[indices].astype(jnp.float32), ys)


def check_source(source: object, length: int, ways: int) -> None:
    """Clear errors for what `introspection_episode` cannot do (it runs under jit, where it cannot check)."""
    if not isinstance(source, EpisodeSource) or source.x is None:
        raise ValueError(
            "introspection needs an array dataset (e.g. digits, mnist); generated streams and few-shot "
            "sources (omniglot) are not supported"
        )
    if length < 1 or not 2 <= ways <= source.num_classes:
        raise ValueError(
            f"introspection needs length >= 1 and 2 <= ways <= {source.num_classes} (the dataset's classes), "
            f"got length {length}, ways {ways}"
        )
    per_class = math.ceil(length / ways)
    counts = np.bincount(np.asarray(source.y), minlength=source.num_classes)
    if int((counts >= per_class).sum()) < ways:
        raise ValueError(
            f"only {int((counts >= per_class).sum())} classes have the {per_class} examples each that "
            f"{ways} ways x {length} steps need; use a shorter --length or fewer --ways"
        )


@dataclass(frozen=True)
class IntrospectionSampler:
    """Introspection episodes behind the `EpisodeSampler` interface (`sample`, `num_classes`), so the SGD
    learning-rate sweep (`baselines.tune_learning_rate`) tunes on the same kind of episodes."""

    length: int
    ways: int = 5
    transform: EpisodeTransform = dataclasses.field(default_factory=EpisodeTransform)

    def num_classes(self, source: EpisodeSource) -> int:
        return self.transform.pad_classes_to or source.num_classes

    def sample(self, source: EpisodeSource, key: Array, num_episodes: int, transform_key: Array) -> Episodes:
        episodes = _introspection_episodes(source, key, num_episodes, self.length, self.ways)
        if self.transform == EpisodeTransform():
            return episodes
        episode_key = jax.random.fold_in(key, 1) if self.transform.resample_projection_per_episode else None
        return transform_episodes(self.transform, episodes, transform_key, episode_key=episode_key)


# Jitted so that eager calls compile once per shape instead of dispatching op by op; inlined under an outer jit.
@partial(jax.jit, static_argnames=("num_episodes", "length", "ways"))
def _introspection_episodes(
    source: EpisodeSource, key: Array, num_episodes: int, length: int, ways: int
) -> Episodes:
    keys = jax.random.split(key, num_episodes)
    return jax.vmap(lambda k: introspection_episode(source, k, length, ways))(keys)


@partial(jax.jit, static_argnames=("learner",))
def _episode_logits(learner: Learner, meta: PyTree, keys: Array, xs: Array, ys: Array) -> Array:
    return run_episodes(learner, meta, keys, xs, ys)


def _online_learner(learner: Learner) -> Learner:
    """The learner with one example per step: VSML's inner batch is a static setting, not part of V_M."""
    if getattr(learner, "inner_batch", 1) > 1:
        return dataclasses.replace(learner, inner_batch=1)
    return learner


def _single_example_problem(learner: Learner) -> str | None:
    """Why `learner`'s probabilities with one example per step would mean nothing, or None."""
    if (
        isinstance(learner, BLUR)
        and learner.activation_normalization in ("forward", "both")
        and learner.activation_norm_axes == "batch"
    ):
        return (
            f"not measured: BLUR's activation normalisation ({learner.activation_normalization}) takes "
            "statistics over the batch, which one example per step makes constant (every prediction "
            "uniform); the asymmetry of its update is measured on batches of the run's own size"
        )
    return None


def _learner_entry(label: str, probabilities: np.ndarray, labels: np.ndarray, max_k: int) -> dict[str, Any]:
    """JSON-able summary of one learner on N episodes: by k (pooled), overall, and the first episode."""
    true_probability = np.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    return {
        "label": label,
        "by_k": recognition_by_k(probabilities, labels, max_k),
        "mean_accuracy": float((np.argmax(probabilities, axis=-1) == labels).mean()),
        "mean_true_class_probability": float(true_probability.mean()),
        "example": {"probabilities": probabilities[0].tolist(), "labels": labels[0].tolist()},
    }


def introspect_run(
    run: TrainedRun,
    dataset: str | None = None,
    length: int = 30,
    ways: int = 5,
    episodes: int = 32,
    seed: int = EVAL_SEED,
    data_dir: str | None = None,
    sgd: bool = True,
    tune_episodes: int = 16,
    asymmetry: bool = True,
    asymmetry_synapses: int = ASYMMETRY_MAX_SYNAPSES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """VSML Sec. 5 for a trained run (`meta_test.TrainedRun`): its learner and online SGD on the same `episodes`
    held-out episodes (test split, key `seed`) of `length` steps over `ways` classes; returns a JSON-able report.

    SGD is the linear online-SGD baseline (VSML spec §5) with the rate of its grid (`baselines.HAND_DESIGNED`) that
    has the best mean online accuracy on `tune_episodes` such episodes of the training split (key `TUNE_SEED`).
    For a BLUR run, `asymmetry` adds `gradient_asymmetry` of every layer ("gradient_asymmetry"), on at most
    `asymmetry_synapses` synapses per layer. `log` receives progress messages.
    """
    log = log or (lambda message: None)
    cfg = run.config
    dataset = dataset or (cfg.eval.datasets[0] if cfg.eval.datasets else cfg.task.dataset)
    if episodes < 1 or tune_episodes < 1 or length < 1 or ways < 2:
        raise ValueError(
            f"introspection needs episodes, tune_episodes and length >= 1 and ways >= 2, got {episodes}, "
            f"{tune_episodes}, {length} and {ways}"
        )
    test = make_experiment_source(cfg, dataset, "test", data_dir)
    check_source(test, length, ways)
    sampler = IntrospectionSampler(length, ways, cfg.transform)
    key = jax.random.PRNGKey(seed)
    data_key, init_key = jax.random.split(key)
    xs, ys = sampler.sample(test, data_key, episodes, jax.random.fold_in(key, 1 << 30))
    init_keys = jax.random.split(init_key, episodes)
    labels = np.asarray(jnp.argmax(ys, axis=-1))
    max_k = math.ceil(length / ways) - 1
    num_classes = int(ys.shape[-1])

    def probabilities(learner: Learner, meta: PyTree) -> np.ndarray:
        logits = _episode_logits(learner, meta, init_keys, xs, ys)
        return np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), np.float64)

    name, _ = learner_labels(run.learner)
    learner = _online_learner(run.learner)
    log(f"running {name} on {episodes} episodes of {dataset}")
    report: dict[str, Any] = {
        "run": str(run.path),
        "iteration": run.iteration,
        "dataset": dataset,
        "length": length,
        "ways": ways,
        "episodes": episodes,
        "seed": seed,
        "num_classes": num_classes,
        "chance": 1.0 / num_classes,
        "max_k": max_k,
        "online_single_examples": learner != run.learner or cfg.task.batch_size > 1,
        "learner": None,
        "sgd": None,
    }
    problem = _single_example_problem(learner)
    if problem is None:
        report["learner"] = _learner_entry(
            meta_trained_label(run), probabilities(learner, run.meta), labels, max_k
        )
    else:
        log(f"{name}: {problem}")
        report["learner_not_measured"] = f"{meta_trained_label(run)}: {problem}"
    if sgd:
        train = make_experiment_source(cfg, dataset, "train", data_dir)
        check_source(train, length, ways)
        log(f"tuning the online-SGD learning rate on {tune_episodes} training-split episodes")
        sgd_baseline = HAND_DESIGNED["sgd"]
        baseline = sgd_baseline.learner()
        rate, scores = tune_learning_rate(
            baseline, sgd_baseline.rates, train, tune_episodes, sampler, TUNE_SEED
        )
        report["sgd"] = _learner_entry(
            f"{optimizer_label('sgd')} (lr {rate:g})", probabilities(baseline, sgd_meta(rate)), labels, max_k
        )
        report["sgd"]["learning_rate"] = rate
        # The sweep's best rate on a boundary of the grid may not be the best rate there is.
        report["sgd"]["learning_rate_at_grid_edge"] = grid_edge(rate, sgd_baseline.rates) is not None
        report["sgd"]["train_split_accuracy"] = {str(r): s for r, s in scores.items()}
    if asymmetry and isinstance(run.learner, BLUR):
        log("measuring the asymmetry of BLUR's update Jacobian")
        first = Episodes(xs[0], ys[0])
        report["gradient_asymmetry"] = _run_asymmetry(run, test, first, seed, asymmetry_synapses)
    return report


# What must agree for introspections of several runs to be combined: the same episodes.
_SAME_EPISODES = ("dataset", "length", "ways", "episodes", "seed")


def introspect_runs(runs: list[TrainedRun], names: list[str], **settings: Any) -> dict[str, Any]:
    """`introspect_run` of each run (seeds of one recipe) on the same episodes; tuned SGD is run once, with the
    first. One run: its report. Several: `combine_introspections` of their reports."""
    if len(runs) != len(names) or not runs:
        raise ValueError(f"introspect_runs needs one name per run, got {len(runs)} runs, {len(names)} names")
    reports = [introspect_run(run, **settings | ({"sgd": False} if i else {})) for i, run in enumerate(runs)]
    return reports[0] if len(reports) == 1 else combine_introspections(reports, names)


def combine_introspections(reports: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Several runs introspected on the same episodes: the first report, plus "seeds": per k the mean over runs
    of each run's true-class probability and accuracy and their 95% interval over runs, and each run's values."""
    if len(reports) != len(names) or len(reports) < 2:
        raise ValueError(f"combining needs two or more reports, one name each; got {len(reports)}, {len(names)}")
    settings = [tuple(r[key] for key in _SAME_EPISODES) for r in reports]
    if any(other != settings[0] for other in settings[1:]):
        raise ValueError(
            f"the runs were introspected on different episodes ({', '.join(_SAME_EPISODES)}): "
            + "; ".join(f"{n}: {s}" for n, s in zip(names, settings, strict=True))
        )
    missing = [n for n, r in zip(names, reports, strict=True) if r["learner"] is None]
    if missing:
        raise ValueError(f"the learner of {', '.join(missing)} was not measured, so the runs cannot be combined")
    combined = json.loads(json.dumps(reports[0]))
    by_k: dict[str, Any] = {"k": reports[0]["learner"]["by_k"]["k"]}
    for name in ("true_class_probability", "accuracy"):
        values = [r["learner"]["by_k"][name] for r in reports]
        columns = list(zip(*values, strict=True))  # per k, the runs' values (None where no step had that k)
        by_k[name] = {
            "values": values,
            "mean": [None if None in c else float(np.mean(c)) for c in columns],
            "interval_95": [None if None in c else interval_95(np.asarray(c)) for c in columns],
        }
    means = [r["learner"]["mean_accuracy"] for r in reports]
    combined["seeds"] = {
        "runs": list(names),
        "by_k": by_k,
        "mean_accuracy": over_runs(means),
    }
    return combined


def _run_asymmetry(
    run: TrainedRun, source: EpisodeSource, episode: Episodes, seed: int, max_synapses: int
) -> dict[str, Any]:
    """`gradient_asymmetry` of every layer of a BLUR run, at most `max_synapses` synapses per layer, on the
    first steps of the introspection `episode` [T, ...], or, for a run with an inner batch, on one episode of
    the run's own kind from `source`."""
    cfg = run.config
    steps = min(ASYMMETRY_WARMUP_STEPS + 1, episode.xs.shape[0])
    key = jax.random.PRNGKey(seed)
    if cfg.task.batch_size > 1:
        batched = experiment_sampler(cfg, steps).sample(source, key, 1, jax.random.fold_in(key, 1 << 30))
        episode = Episodes(batched.xs[0], batched.ys[0])
    xs, ys = episode.xs[:steps], episode.ys[:steps]
    return {
        "layers": gradient_asymmetry_by_layer(run.learner, run.meta, key, xs, ys, max_synapses=max_synapses),
        "warmup_steps": steps - 1,
        "batch_size": cfg.task.batch_size,
    }
