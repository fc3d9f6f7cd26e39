"""Introspection: what a learner predicts over a short episode, and whether its update is a gradient.

Two analyses from the papers.

1. VSML (Kirsch & Schmidhuber, NeurIPS 2021, arXiv 2012.14905), Sec. 5 (spec vsml.md §6.6): the class
   probabilities of every online prediction over a short episode of a few classes. The paper's claim: after
   ONE labelled example of a class, the meta-learned learning algorithm already predicts that class with high
   confidence, while SGD moves its predictions gradually, so the learned algorithm is not gradient descent.
   `prediction_trace` records one episode; `recognition_by_k` summarises the probability of the true class as
   a function of k, the number of earlier labelled examples of that class (k = 0: never seen before).
   `introspect_run` compares a trained run with online SGD (learning rate tuned on the training split) on the
   same episodes; `plot_probabilities` draws it.
2. BLUR (Sandler et al., ICML 2021, arXiv 2104.04657), §3.5, Fig. 2, App. A (spec blur.md §9): an update rule
   that is gradient descent on some loss has a symmetric Jacobian ∂Δw_k/∂w_m (it is −λ times a Hessian). The
   paper finds |∂Δw_k/∂w_m − ∂Δw_m/∂w_k| far above numerical noise for meta-learned genomes.
   `gradient_asymmetry` measures it for one layer and compares it with BLUR's backprop genome, which is exactly
   SGD (spec blur.md §8.2, §11).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml.atomic import write_atomically, write_text_atomically
from vsml.evaluation.meta_test import (
    SGD_LEARNING_RATES,
    TrainedRun,
    learner_labels,
    meta_trained_label,
    same_unroll_sgd,
    sgd_meta,
    tune_learning_rate,
)
from vsml.evaluation.sweep import grid_edge
from vsml.learners.base import (
    Learner,
    PyTree,
    run_episode,
    run_episode_from_state,
    run_episodes,
    spec_of_episode,
)
from vsml.learners.blur.learner import BLUR, BLURGenome, BLURState, backprop_genome
from vsml.learners.sgd import online_sgd
from vsml.report.plots import PNG_DPI
from vsml.report.tables import markdown_table
from vsml.run.experiment import experiment_sampler, make_experiment_source
from vsml.tasks.episodes import Episodes, EpisodeSource
from vsml.tasks.transforms import EpisodeTransform, transform_episodes

Array = jax.Array
DEFAULT_SEED = 22  # the evaluation seed of spec §2: the same held-out episodes every time
TUNE_SEED = 1  # the key `vsml evaluate` tunes baselines with: other episodes than the ones reported
# BLUR's Jacobian is taken after this many steps, at synapses that have learned a little.
ASYMMETRY_WARMUP_STEPS = 4
ASYMMETRY_MAX_SYNAPSES = 256  # Jacobian block of at most this many synapses per layer (one JVP each)
JVP_BATCH = 32  # JVPs evaluated together when building a Jacobian
REFERENCE_RATE = 0.1  # λ of the plain-SGD reference per example (BLUR sums its update over the batch)


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
    k > max_k are left out.
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
    for value in range(max_k + 1):
        mask = k == value
        count = int(mask.sum())
        summary["k"].append(value)
        summary["count"].append(count)
        summary["true_class_probability"].append(float(true_probability[mask].mean()) if count else None)
        summary["accuracy"].append(float(correct[mask].mean()) if count else None)
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
    learning-rate sweep (`meta_test.tune_learning_rate`) tunes on the same kind of episodes."""

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
    seed: int = DEFAULT_SEED,
    data_dir: str | None = None,
    sgd: bool = True,
    tune_episodes: int = 16,
    asymmetry: bool = True,
    asymmetry_synapses: int = ASYMMETRY_MAX_SYNAPSES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """VSML Sec. 5 for a trained run (`meta_test.TrainedRun`): its learner and online SGD on the same `episodes`
    held-out episodes (test split, key `seed`) of `length` steps over `ways` classes; returns a JSON-able report.

    SGD is the linear online-SGD baseline (VSML spec §5) with the rate of `meta_test.SGD_LEARNING_RATES` that
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
        baseline = online_sgd(SGD_LEARNING_RATES[0])
        rate, scores = tune_learning_rate(
            baseline, SGD_LEARNING_RATES, train, tune_episodes, sampler, TUNE_SEED
        )
        report["sgd"] = _learner_entry(
            f"online SGD (lr {rate:g})", probabilities(baseline, sgd_meta(rate)), labels, max_k
        )
        report["sgd"]["learning_rate"] = rate
        # The sweep's best rate on a boundary of the grid may not be the best rate there is.
        report["sgd"]["learning_rate_at_grid_edge"] = grid_edge(rate, SGD_LEARNING_RATES) is not None
        report["sgd"]["train_split_accuracy"] = {str(r): s for r, s in scores.items()}
    if asymmetry and isinstance(run.learner, BLUR):
        log("measuring the asymmetry of BLUR's update Jacobian")
        first = Episodes(xs[0], ys[0])
        report["gradient_asymmetry"] = _run_asymmetry(run, test, first, seed, asymmetry_synapses)
    return report


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


# ----- report: table and figure ---------------------------------------------------------------------------------


def _contenders(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in (report["learner"], report.get("sgd")) if entry is not None]


def introspection_table(report: Mapping[str, Any]) -> str:
    """Markdown: the true-class probability and accuracy by k (earlier labelled examples of the class)."""
    contenders = _contenders(report)
    rows = []
    by_k = contenders[0]["by_k"] if contenders else {"k": [], "count": []}
    for i, k in enumerate(by_k["k"]):
        row: dict[str, object] = {"k (earlier examples)": k, "steps": by_k["count"][i]}
        for entry in contenders:
            short = entry["label"].split(",")[0].split(" (")[0]
            row[f"{short} p(true)"] = entry["by_k"]["true_class_probability"][i]
            row[f"{short} accuracy"] = entry["by_k"]["accuracy"][i]
        rows.append(row)
    notes = ["; ".join(entry["label"] for entry in contenders)] if contenders else []
    if report.get("learner_not_measured"):
        notes.append(f"{report['learner_not_measured']}.")
    if report.get("online_single_examples"):
        notes.append(
            "The learner was meta-trained with an inner batch and runs here with one example per step."
        )
    if (report.get("sgd") or {}).get("learning_rate_at_grid_edge"):
        notes.append("SGD's tuned learning rate is at the edge of the swept grid.")
    caption = (
        f"### Introspection on {report['dataset']}: {report['episodes']} episodes of {report['length']} steps, "
        f"{report['ways']} classes per episode (chance {report['chance']:.3f}: 1 of {round(1 / report['chance'])} "
        "outputs)\n\n" + "\n".join(notes) + "\n\n"
    )
    return caption + (markdown_table(rows) if rows else "")


def plot_probabilities(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write a PNG (VSML Sec. 5): per contender a heatmap of the class probabilities over the steps of the first
    episode (rows: the episode's classes in order of first appearance, plus all other classes summed; columns:
    steps; markers on the true class), and a panel of the mean true-class probability against k. Atomic."""
    # Figure + Agg canvas, not pyplot: no global backend or figure registry (as report.plot_learning_curves).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    contenders = _contenders(report)
    fig = Figure(figsize=(6.0 * len(contenders) + 5.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        1, len(contenders) + 1, gridspec_kw={"width_ratios": [1.25] * len(contenders) + [1.0]}
    )
    image = None
    for ax, entry in zip(axes, contenders, strict=False):
        image = _probability_heatmap(ax, entry)
    fig.colorbar(image, ax=list(axes[: len(contenders)]), label="predicted probability", shrink=0.85)
    markers = [
        Line2D([], [], marker="*", color="red", markeredgecolor="white", linestyle="", markersize=11),
        Line2D([], [], marker="o", color="red", markeredgecolor="white", linestyle="", markersize=6),
    ]
    axes[0].legend(
        markers,
        ["true class, its first example (k = 0)", "true class, seen before (k ≥ 1)"],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncol=2,
        fontsize="small",
        frameon=False,
    )
    _plot_by_k(axes[-1], contenders, report["chance"])
    fig.suptitle(
        f"Introspection (VSML Sec. 5) on {report['dataset']}: {report['length']}-step episodes of "
        f"{report['ways']} classes, {report['episodes']} held-out episodes (seed {report['seed']})\n"
        "each column is the prediction made before that step's label; heatmaps: the first episode, "
        "right: mean over all episodes"
    )
    return write_atomically(path, lambda file: fig.savefig(file, format="png", dpi=PNG_DPI))


def _probability_heatmap(ax: Any, entry: Mapping[str, Any]) -> Any:
    probabilities = np.asarray(entry["example"]["probabilities"])  # [T, C]
    labels = np.asarray(entry["example"]["labels"])
    classes = list(dict.fromkeys(labels.tolist()))  # in order of first appearance
    rows = probabilities[:, classes].T
    names = [f"class {c}" for c in classes]
    if probabilities.shape[1] > len(classes):
        rows = np.vstack([rows, 1.0 - rows.sum(axis=0, keepdims=True)])
        names.append(f"other {probabilities.shape[1] - len(classes)} classes (sum)")
    steps = np.arange(1, probabilities.shape[0] + 1)
    image = ax.imshow(
        rows,
        aspect="auto",
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        extent=(0.5, steps[-1] + 0.5, len(names) - 0.5, -0.5),
    )
    row_of_label = np.array([classes.index(c) for c in labels.tolist()])
    first = earlier_examples(labels) == 0
    style = {"color": "red", "edgecolors": "white", "linewidths": 0.8}
    ax.scatter(steps[first], row_of_label[first], marker="*", s=120, **style)
    ax.scatter(steps[~first], row_of_label[~first], marker="o", s=30, **style)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("online step (prediction made before the label)")
    ax.set_title(entry["label"], fontsize="medium")
    return image


def _plot_by_k(ax: Any, contenders: list[dict[str, Any]], chance: float) -> None:
    for entry in contenders:
        by_k = entry["by_k"]
        k = np.array(by_k["k"])
        probability = np.array([np.nan if v is None else v for v in by_k["true_class_probability"]])
        accuracy = np.array([np.nan if v is None else v for v in by_k["accuracy"]])
        short = entry["label"].split(",")[0].split(" (")[0]
        (line,) = ax.plot(k, probability, marker="o", linewidth=1.8, label=f"{short}: p(true class)")
        ax.plot(
            k,
            accuracy,
            marker="s",
            linestyle="--",
            color=line.get_color(),
            alpha=0.6,
            label=f"{short}: accuracy",
        )
    ax.axhline(chance, color="gray", linestyle=":", linewidth=1.0, label=f"chance (1/{round(1 / chance)})")
    ax.set_xticks(k)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k = earlier labelled examples of the true class")
    ax.set_ylabel("mean over steps and episodes")
    ax.set_title("Recognition after k labelled examples", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def asymmetry_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per BLUR layer of a report (BLUR Sec. 3.5): is the learned update a gradient (symmetric J)?"""

    def ratio(value: float | None) -> str:
        return "J = 0" if value is None else f"{value:.3g}"

    lines = []
    for layer in report.get("gradient_asymmetry", {}).get("layers", []):
        learned, sgd = layer["relative_max_asymmetry"], layer["sgd_reference"]["relative_max_asymmetry"]
        lines.append(
            f"BLUR layer {layer['layer']} ({layer['measured_synapses']} of {layer['synapses']} synapses): "
            f"max |J - J^T| / max |J| = {ratio(learned)}; plain SGD (J a Hessian): {ratio(sgd)}"
        )
    return lines


def write_introspection(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """introspection.json and (with at least one contender measured) introspection.png in `out_dir`, both
    written atomically."""
    out_dir = Path(out_dir)
    paths = [write_text_atomically(out_dir / "introspection.json", json.dumps(report, indent=1))]
    if _contenders(report):
        paths.append(plot_probabilities(report, out_dir / "introspection.png"))
    return paths


# ----- 3. BLUR: is the update a gradient? (BLUR §3.5, Fig. 2, App. A) -------------------------------------------


@partial(jax.jit, static_argnames=("learner", "layer"))
def update_jacobian(
    learner: BLUR,
    genome: BLURGenome,
    state: BLURState,
    x: Array,
    y: Array,
    layer: int = 0,
    indices: Array | None = None,
) -> Array:
    """J[a, b] = ∂Δw_a/∂w_b of one BLUR step on (x, y) from `state`, w = channel 0 of the forward synapses F_ℓ of
    `layer` (`state.forward[layer][0]`), flattened ([n+1, m] row-major; the bias row last); only the synapses
    `indices` if given ([s, s]).

    Δw = F'_ℓ[…, 0] − F_ℓ[…, 0]. The perturbation is tied as the learner ties its synapses (its symmetry syncs):
    with `symmetric_states` all channels follow w, with `symmetric_in_out` G_ℓ = F_ℓ[:n]ᵀ follows too; so for
    the backprop configuration w is the weight W̄_ℓ = [W_ℓ; b_ℓ] of the MLP and J = −λ·∂²L/∂w² (spec §8.2).
    """
    forward = state.forward[layer]  # [k, n+1, m]
    shape = forward.shape[1:]
    w = forward[0].reshape(-1)

    def update(w: Array) -> Array:
        # The learner's own sync (spec blur.md §2.2) makes the tied channels and G follow the perturbation.
        f, g = learner._sync(forward.at[0].set(w.reshape(shape)), state.backward[layer])
        perturbed = BLURState(
            tuple(f if i == layer else s for i, s in enumerate(state.forward)),
            tuple(g if i == layer else s for i, s in enumerate(state.backward)),
        )
        _, new_state = learner.step(genome, perturbed, x, y)
        return new_state.forward[layer][0].reshape(-1) - w

    chosen = jnp.arange(w.shape[0]) if indices is None else indices

    def column(i: Array) -> Array:  # J[chosen, i]: one forward-mode pass per synapse
        tangent = jax.nn.one_hot(i, w.shape[0], dtype=w.dtype)
        return jax.jvp(update, (w,), (tangent,))[1][chosen]

    # In batches of JVPs: vmapping all of them at once would hold one copy of every synapse per JVP.
    return jax.lax.map(column, chosen, batch_size=JVP_BATCH).T


def asymmetry_of(jacobian: Array) -> dict[str, float | None]:
    """How far a square J is from symmetric: max and mean |J − Jᵀ| (mean over all entries), both also divided
    by max |J|, and the antisymmetric fraction ‖(J − Jᵀ)/2‖_F / ‖J‖_F (0: symmetric, 1: antisymmetric);
    also max |J| and the largest off-diagonal |J|. The relative values are None when J = 0."""
    j = np.asarray(jacobian, np.float64)
    difference = np.abs(j - j.T)
    scale = float(np.abs(j).max(initial=0.0))
    norm = float(np.linalg.norm(j))
    return {
        "max_abs_asymmetry": float(difference.max(initial=0.0)),
        "mean_abs_asymmetry": float(difference.mean()),
        "max_abs_jacobian": scale,
        # 0 means J is diagonal (e.g. only the keep gate f̃ acts, dead units): symmetric, but trivially so.
        "max_abs_offdiagonal": float(np.abs(j - np.diag(np.diag(j))).max(initial=0.0)),
        "relative_max_asymmetry": float(difference.max(initial=0.0)) / scale if scale > 0 else None,
        "relative_mean_asymmetry": float(difference.mean()) / scale if scale > 0 else None,
        "antisymmetric_fraction": float(np.linalg.norm(j - j.T)) / (2.0 * norm) if norm > 0 else None,
    }


@partial(jax.jit, static_argnames=("learner", "layers"))
def _jacobians_after_warmup(
    learner: BLUR,
    genome: BLURGenome,
    key: Array,
    xs: Array,
    ys: Array,
    layers: tuple[int, ...],
    indices: tuple[Array | None, ...],
) -> tuple[Array, ...]:
    # One compilation for all layers: on a CPU, compiling dominates the cost of these small Jacobians.
    state = learner.init_state(genome, key, spec_of_episode(xs, ys))
    # The genome in the synapses' precision: under float64 (jax.enable_x64) nothing is rounded to float32.
    genome = jax.tree.map(lambda g: jnp.asarray(g, state.forward[0].dtype), genome)
    if xs.shape[0] > 1:
        _, state = run_episode_from_state(learner, genome, state, xs[:-1], ys[:-1])
    return tuple(
        update_jacobian(learner, genome, state, xs[-1], ys[-1], layer, chosen)
        for layer, chosen in zip(layers, indices, strict=True)
    )


def gradient_asymmetry(
    learner: BLUR,
    genome: BLURGenome,
    key: Array,
    xs: Array,
    ys: Array,
    layer: int = 0,
    max_synapses: int | None = None,
    reference: bool = True,
    reference_rate: float | None = None,
) -> dict[str, Any]:
    """BLUR's "not gradient descent" check (BLUR §3.5, Fig. 2, App. A; spec blur.md §9): the asymmetry of
    J = ∂Δw/∂w (`update_jacobian`, `asymmetry_of`) for the forward synapses of `layer`.

    The synapses start from `learner.init_state(genome, key)`; the first T − 1 steps of `xs: [T, ...]`,
    `ys: [T, C]` (or with an inner batch, [T, B, ...]) move them, J is taken at the last step. `max_synapses`
    restricts J to the synapses between random pre and post units, at most that many (a principal block of
    a symmetric matrix is symmetric).

    With `reference`, "sgd_reference" is the same measurement for plain SGD on the same MLP, data and initial
    synapse distribution: `meta_test.same_unroll_sgd` (`backprop_blur(hidden, "tanh", "ce")`) with
    `backprop_genome(2, −λ)`, λ = `reference_rate` (default `REFERENCE_RATE` / the inner batch). That update
    is Δw = −λ·∂L/∂w with L the batch-summed softmax cross-entropy, so J = −λ·∂²L/∂w², a Hessian: symmetric
    up to rounding (≈1e−7 relative in float32, ≈1e−15 under `jax.enable_x64`).

    This needs every setting of `backprop_blur` (spec §8.2, §11.3): per-state (φ, φ′) forward activation,
    identity output and backward activations, `multiplicative_second_state`, both symmetry syncs (without
    the state sync the channel-1 copy of w that computes φ′ would not follow w; without the in/out sync G
    would not), no normalisation, no Oja, f = η = f̃ = 1, ν[0, 1] = 1. The feedback may be "ce", "mse" or
    the ±1 "label" (with η̃ = +λ: L = −Σ y·z_L, still a gradient); all were checked in float64 for tanh,
    sigmoid and linear hidden units (≤ 5e−16 relative). With the label feedback L is linear in the last
    layer's w (and, for a linear net, in every layer's), so there J = 0 and the relative values are None.
    """
    return gradient_asymmetry_by_layer(
        learner, genome, key, xs, ys, (layer,), max_synapses, reference, reference_rate
    )[0]


def gradient_asymmetry_by_layer(
    learner: BLUR,
    genome: BLURGenome,
    key: Array,
    xs: Array,
    ys: Array,
    layers: tuple[int, ...] | None = None,
    max_synapses: int | None = None,
    reference: bool = True,
    reference_rate: float | None = None,
) -> list[dict[str, Any]]:
    """`gradient_asymmetry` of each of `layers` (default: every connection), computed together."""
    layers = tuple(range(learner.num_connections)) if layers is None else tuple(int(i) for i in layers)
    sizes = learner.layer_sizes(spec_of_episode(xs, ys))
    results, indices = [], []
    for layer in layers:
        if not 0 <= layer < learner.num_connections:
            raise ValueError(f"layer must be in [0, {learner.num_connections}), got {layer}")
        rows, columns = sizes[layer] + 1, sizes[layer + 1]
        chosen = None
        if max_synapses is not None and max_synapses < rows * columns:
            chosen = _synapse_grid(jax.random.fold_in(key, layer), rows, columns, max_synapses)
        indices.append(chosen)
        results.append(
            {
                "layer": layer,
                "synapses": rows * columns,
                "measured_synapses": rows * columns if chosen is None else int(chosen.shape[0]),
                "warmup_steps": int(xs.shape[0]) - 1,
            }
        )
    indices = tuple(indices)
    for result, jacobian in zip(
        results, _jacobians_after_warmup(learner, genome, key, xs, ys, layers, indices), strict=True
    ):
        result.update(asymmetry_of(jacobian))
    if reference:
        # λ per example: the update sums over an inner batch, and too large a step saturates the softmax
        # (its Hessian, and so J, then vanishes in float32).
        batch = math.prod(ys.shape[1:-1])
        rate = REFERENCE_RATE / batch if reference_rate is None else reference_rate
        sgd, sgd_genome = same_unroll_sgd(learner), backprop_genome(2, -rate)
        for result, jacobian in zip(
            results, _jacobians_after_warmup(sgd, sgd_genome, key, xs, ys, layers, indices), strict=True
        ):
            result["sgd_reference"] = {"learning_rate": rate, **asymmetry_of(jacobian)}
    return results


def _synapse_grid(key: Array, rows: int, columns: int, max_synapses: int) -> Array:
    """Flat indices (sorted) of every synapse between random pre units (rows, the bias included) and random
    post units (columns), at most `max_synapses` of them. A grid, not scattered synapses: the cross terms of
    a Hebbian update (and of a Hessian) link synapses that share a unit, and a scattered sample of a large
    layer would hold almost no such pairs."""
    num_columns = min(columns, max(1, math.isqrt(max_synapses)))
    num_rows = min(rows, max(1, max_synapses // num_columns))
    row_key, column_key = jax.random.split(key)
    chosen_rows = jax.random.choice(row_key, rows, (num_rows,), replace=False)
    chosen_columns = jax.random.choice(column_key, columns, (num_columns,), replace=False)
    return jnp.sort((chosen_rows[:, None] * columns + chosen_columns[None, :]).reshape(-1))
