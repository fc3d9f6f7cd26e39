"""Meta-test a trained run against its untrained start, online SGD/Adam and chance (spec §2, §6.2).

The baselines get a learning rate chosen by a small sweep on the *meta-training* split, then everything is
measured on the same held-out episodes (test split, fixed key), so the comparison is fair to the baselines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from vsml.atomic import write_text_atomically
from vsml.config import apply_overrides
from vsml.evaluation.online import OnlineEvaluation, evaluate_online
from vsml.evaluation.statistics import block_labels, block_means, interval_95
from vsml.learners import build_learner
from vsml.learners.base import Learner, PyTree
from vsml.learners.blur.learner import BLUR, backprop_blur, backprop_genome
from vsml.learners.fast_weights import FWP, FWMemory
from vsml.learners.hebbian import HebbianFW
from vsml.learners.metarnn import MetaRNN
from vsml.learners.sgd import OnlineSGDMeta, online_adam, online_sgd
from vsml.learners.vsml import VSML
from vsml.report.plots import plot_learning_curves
from vsml.report.tables import markdown_table
from vsml.run.checkpoint import load_checkpoint, resolve_checkpoint_json
from vsml.run.experiment import (
    ExperimentConfig,
    experiment_from_dict,
    experiment_sampler,
    make_experiment_source,
)
from vsml.tasks.sampler import EpisodeSampler

_OPTIMIZER_LABEL = {"es": "ES", "grad": "meta-gradient", "cmaes": "CMA-ES"}
# Wide enough that the best rate was inside the grid on every dataset of the Fig. 8 grid (`vsml sweep-lr`, 500
# steps: the 160-unit MLPs and Adam chose the lowest rates of a grid that started at 0.01 / 0.001).
SGD_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
ADAM_LEARNING_RATES = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
# On the batch-*summed* loss (BLUR's Hebbian sum): 1e-3 is a mean-loss rate of 0.128 at a batch of 128.
BATCH_SGD_LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
# How reports name each learner and its meta-parameters.
LEARNER_LABELS = {
    VSML: ("VSML", "V_M"),
    BLUR: ("BLUR", "genome"),
    MetaRNN: ("Meta-RNN", "weights"),
    HebbianFW: ("Hebbian FW", "meta-parameters"),
    FWP: ("FWP", "slow weights"),
    FWMemory: ("FWMemory", "slow weights"),
}


def learner_labels(learner: Learner) -> tuple[str, str]:
    """(name of the learner, name of its meta-parameters) for tables and plot legends."""
    return LEARNER_LABELS.get(type(learner), (type(learner).__name__, "meta-parameters"))


@dataclass(frozen=True)
class TrainedRun:
    config: ExperimentConfig
    learner: Learner
    meta: PyTree
    iteration: int
    path: Path


def meta_trained_label(run: TrainedRun) -> str:
    """How reports name a run's meta-trained learner, e.g. "VSML, meta-trained V_M (450 ES it.)"."""
    name, meta_name = learner_labels(run.learner)
    return f"{name}, meta-trained {meta_name} ({run.iteration} {_OPTIMIZER_LABEL[run.config.meta_optimizer]} it.)"


# Config sections that only meta-training reads: overriding them for a meta-test would be silently ignored.
_META_TRAINING_ONLY = ("es", "grad", "cmaes", "train", "population", "meta_optimizer")


def _check_meta_test_overrides(overrides: list[str] | tuple[str, ...]) -> None:
    for override in overrides:
        if override.split("=", 1)[0].strip().split(".")[0] in _META_TRAINING_ONLY:
            raise ValueError(
                f"--set {override!r} changes meta-training only, which a meta-test does not run; override the "
                "meta-test setting instead (transform.*, task.*, eval.*, learner.* speed settings)"
            )


def load_trained_run(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainedRun:
    """A run directory (its latest checkpoint) or one checkpoint file; the experiment config travels in the
    checkpoint's JSON, so a checkpoint file alone is enough. `overrides` (`a.b=c`) change the meta-test setting,
    e.g. `transform.shuffle=true` or `transform.classes=[5,8,1,4,2]` for the invariance tests (spec §3.4)."""
    _check_meta_test_overrides(overrides)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: pass a run directory made by `vsml meta-train` or a checkpoint"
        )
    json_path = resolve_checkpoint_json(path)
    metadata = json.loads(json_path.read_text())
    experiment = metadata.get("metadata", metadata).get("experiment")
    if experiment is None:
        raise ValueError(f"{json_path} holds no experiment config; was it written by `vsml meta-train`?")
    config = experiment_from_dict(apply_overrides(experiment, overrides))
    learner = build_learner(config.learner)
    template = learner.init_meta(jax.random.PRNGKey(config.seed))
    step, trees, _ = load_checkpoint(path, {"meta": template}, partial=True)
    return TrainedRun(config, learner, trees["meta"], step, path if path.is_dir() else path.parent)


def tune_learning_rate(
    learner: Learner,
    rates: tuple[float, ...],
    source,
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

    The rate lives in the meta-parameters (`meta_for_rate`, default `OnlineSGDMeta`), not in the (static)
    learner, so the sweep compiles once.
    """
    meta_for_rate = meta_for_rate or sgd_meta
    scores = {}
    for rate in rates:
        result = evaluate_online(
            learner, meta_for_rate(rate), source, num_episodes=num_episodes, seed=seed, sampler=sampler,
            query_steps=query_steps,
        )  # fmt: skip
        if query_steps:
            scores[rate] = result.mean_query_accuracy
        else:
            scores[rate] = result.final_accuracy if by_final_step else result.mean_accuracy
    return max(scores, key=scores.get), scores


def sgd_meta(rate: float) -> OnlineSGDMeta:
    return OnlineSGDMeta(jnp.log(jnp.float32(rate)))


def same_unroll_sgd(learner: Learner) -> BLUR:
    """Plain SGD on the same MLP and batches as a batched learner: BLUR's backprop genome, which is exactly SGD
    on the batch-summed cross-entropy (tests/learners/test_blur.py), tanh hidden units, the same initial
    synapse distribution when `learner` is BLUR."""
    init = {}
    if isinstance(learner, BLUR):
        init = {"init_scale": learner.init_scale, "scale_by_channels": learner.scale_by_channels}
    return backprop_blur(getattr(learner, "hidden_sizes", ()), "tanh", "ce", **init)


def _baselines(
    cfg: ExperimentConfig, learner: Learner
) -> list[tuple[str, Learner, tuple[float, ...], Callable]]:
    """(label, learner, learning rates to sweep, meta for a rate) of each hand-designed contender."""
    if cfg.task.batch_size > 1 or cfg.task.query_steps:
        sgd = same_unroll_sgd(learner)
        return [
            ("SGD, same MLP and batches", sgd, BATCH_SGD_LEARNING_RATES, lambda r: backprop_genome(2, -r))
        ]
    return [
        ("online SGD", online_sgd(SGD_LEARNING_RATES[0]), SGD_LEARNING_RATES, sgd_meta),
        ("online Adam", online_adam(ADAM_LEARNING_RATES[0]), ADAM_LEARNING_RATES, sgd_meta),
    ]


def meta_test_setting(
    config: ExperimentConfig,
    datasets: tuple[str, ...] | None = None,
    num_episodes: int | None = None,
    length: int | None = None,
) -> tuple[tuple[str, ...], int, int]:
    """(datasets, episodes, length) of a meta-test of a run with `config`: those given, else its `eval.*`."""
    datasets = config.eval.datasets if datasets is None else datasets
    num_episodes = config.eval.num_episodes if num_episodes is None else num_episodes
    length = config.eval.episode_length if length is None else length
    if not datasets or num_episodes < 1 or length < 1:
        raise ValueError(
            f"meta-test needs at least one dataset, episode and step, got datasets {list(datasets)}, "
            f"{num_episodes} episodes of {length} steps"
        )
    return tuple(datasets), num_episodes, length


def meta_test(
    run: TrainedRun,
    datasets: tuple[str, ...] | None = None,
    num_episodes: int | None = None,
    length: int | None = None,
    baselines: bool = True,
    data_dir: str | None = None,
    num_blocks: int = 5,
    progress: bool = False,
) -> dict[str, Any]:
    """Online accuracy of every contender on each meta-test dataset; returns a JSON-able report. `progress`
    shows a bar over the datasets (the tuning sweeps inside each are the slow part)."""
    cfg = run.config
    datasets, num_episodes, length = meta_test_setting(cfg, datasets, num_episodes, length)
    data_dir = data_dir or cfg.task.data_dir
    untrained = run.learner.init_meta(jax.random.PRNGKey(cfg.seed))
    query_steps = cfg.task.query_steps
    report: dict[str, Any] = {
        "iteration": run.iteration,
        "episodes": num_episodes,
        "length": length,
        "query_steps": query_steps,
        "datasets": {},
    }
    for name in tqdm(datasets, desc=f"meta-test {run.path.name}", unit="dataset", disable=not progress):
        test = make_experiment_source(cfg, name, "test", data_dir)
        train = make_experiment_source(cfg, name, "train", data_dir)
        sampler = experiment_sampler(cfg, length)
        num_classes = sampler.num_classes(test)

        def evaluate(learner: Learner, meta: PyTree, test=test, sampler=sampler) -> OnlineEvaluation:
            return evaluate_online(
                learner, meta, test, num_episodes=num_episodes, seed=cfg.eval.seed, sampler=sampler,
                query_steps=query_steps,
            )  # fmt: skip

        name_label, meta_label = learner_labels(run.learner)
        results: dict[str, OnlineEvaluation] = {
            f"{name_label}, untrained {meta_label}": evaluate(run.learner, untrained),
            meta_trained_label(run): evaluate(run.learner, run.meta),
        }
        roles = dict(zip(results, ("untrained", "meta-trained"), strict=True))
        tuned = {}
        if baselines:
            for label, learner, rates, meta_for_rate in _baselines(cfg, run.learner):
                # Tune on the meta-training split with a different key, then test on held-out episodes.
                rate, scores = tune_learning_rate(
                    learner, rates, train, min(num_episodes, 32), sampler, seed=1,
                    by_final_step=cfg.task.loss == "last", meta_for_rate=meta_for_rate, query_steps=query_steps,
                )  # fmt: skip
                results[f"{label} (lr {rate:g})"] = evaluate(learner, meta_for_rate(rate))
                roles[f"{label} (lr {rate:g})"] = "baseline"
                tuned[label] = {
                    "chosen": rate,
                    "train_split_accuracy": {str(k): v for k, v in scores.items()},
                }
        report["datasets"][name] = {
            "num_classes": num_classes,
            "chance": 1.0 / sampler.occurring_classes(test),  # padded label slots never occur
            "tuned_learning_rates": tuned,
            "learners": {
                label: {
                    "role": roles[label],
                    "mean_accuracy": r.mean_accuracy,
                    "mean_accuracy_interval_95": r.accuracy_interval,
                    "final_accuracy": r.final_accuracy,
                    "final_accuracy_interval_95": r.final_accuracy_interval,
                    "mean_loss": r.mean_loss,
                    "query_accuracy": r.mean_query_accuracy,
                    "block_accuracy": block_means(r.curve, num_blocks).tolist(),
                    "curve": r.curve.tolist(),
                    "curve_std": r.curve_std.tolist(),
                    "loss_curve": r.loss_curve.tolist(),
                }
                for label, r in results.items()
            },
        }
    return report


def combine_runs(reports: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Several runs (seeds) meta-tested on the same episodes: the first report, plus per dataset the meta-trained
    learner of every run and their mean ± 95% interval over runs (`seeds`)."""
    if len(reports) != len(names) or not reports:
        raise ValueError(
            f"combine_runs needs one name per report, got {len(reports)} reports, {len(names)} names"
        )
    setting = [(sorted(r["datasets"]), r["episodes"], r["length"]) for r in reports]
    if any(other != setting[0] for other in setting[1:]):
        raise ValueError(
            "the runs were meta-tested on different settings (datasets, episodes, length): "
            + "; ".join(f"{n}: {s}" for n, s in zip(names, setting, strict=True))
            + ". Give them the same ones, e.g. --datasets mnist --episodes 64 --length 500"
        )
    combined = json.loads(json.dumps(reports[0]))
    combined["runs"] = list(names)
    for dataset, entry in combined["datasets"].items():
        trained = []
        for report in reports:
            learners = report["datasets"][dataset]["learners"]
            trained.append(next(r for r in learners.values() if r.get("role") == "meta-trained"))
        means = [r["mean_accuracy"] for r in trained]
        finals = [r["final_accuracy"] for r in trained]
        entry["seeds"] = {
            "runs": list(names),
            "mean_accuracy": [float(v) for v in means],
            "final_accuracy": [float(v) for v in finals],
            "mean_accuracy_mean": float(np.mean(means)),
            "mean_accuracy_interval_95": interval_95(np.asarray(means)),
            "final_accuracy_mean": float(np.mean(finals)),
            "final_accuracy_interval_95": interval_95(np.asarray(finals)),
        }
    return combined


def report_tables(report: dict[str, Any], num_blocks: int | None = None) -> str:
    """Markdown: one table per dataset, online accuracy by blocks of steps, the mean (± 95% interval over
    episodes), the final step, and the chance row; with several runs, their mean ± 95% interval over runs."""
    parts = []
    for name, entry in report["datasets"].items():
        # The blocks the report was made with, unless the caller asks for the same number explicitly.
        blocks = num_blocks or len(next(iter(entry["learners"].values()))["block_accuracy"])
        labels = block_labels(report["length"], blocks)
        rows = []
        for label, r in entry["learners"].items():
            row = {"learner": label, "mean": r["mean_accuracy"]}
            if "mean_accuracy_interval_95" in r:
                row["± 95%"] = r["mean_accuracy_interval_95"]
            row["final"] = r["final_accuracy"]
            if r.get("query_accuracy") is not None:
                row["query"] = r["query_accuracy"]
            row.update(dict(zip(labels, r["block_accuracy"], strict=True)))
            rows.append(row)
        chance = {"learner": "chance", "mean": entry["chance"], "final": entry["chance"]}
        if report.get("query_steps"):
            chance["query"] = entry["chance"]
        chance.update(dict.fromkeys(labels, entry["chance"]))
        rows.append(chance)
        text = (
            f"### {name}: online accuracy ({report['episodes']} held-out episodes of {report['length']} steps)\n\n"
            + markdown_table(rows)
        )
        if "seeds" in entry:
            seeds = entry["seeds"]
            text += (
                f"\n\nMeta-trained over {len(seeds['runs'])} runs ({', '.join(seeds['runs'])}): mean "
                f"{seeds['mean_accuracy_mean']:.3f} ± {seeds['mean_accuracy_interval_95']:.3f}, final step "
                f"{seeds['final_accuracy_mean']:.3f} ± {seeds['final_accuracy_interval_95']:.3f} (95% over runs)"
            )
        parts.append(text)
    return "\n\n".join(parts) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path, smooth: int = 5) -> list[Path]:
    """evaluation.json, evaluation.md, evaluation.csv (per-step curves) and one learning-curve PNG per dataset,
    all written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_text_atomically(out_dir / "evaluation.json", json.dumps(report, indent=1))]
    written.append(write_text_atomically(out_dir / "evaluation.md", report_tables(report)))
    written.append(write_text_atomically(out_dir / "evaluation.csv", curves_csv(report)))
    # A short episode (Omniglot's 6 steps) is drawn step by step: a moving average would smear its query step.
    window = max(1, min(smooth, report["length"] // 20))
    averaged = f", moving average over {window} steps" if window > 1 else ""
    for name, entry in report["datasets"].items():
        curves = {label: np.asarray(r["curve"]) for label, r in entry["learners"].items()}
        written.append(
            plot_learning_curves(
                curves,
                out_dir / f"learning_curves_{name}.png",
                title=f"Meta-test on {name} ({report['episodes']} held-out episodes{averaged})",
                chance=entry["chance"],
                smooth=window,
            )
        )
    return written


def curves_csv(report: dict[str, Any]) -> str:
    """One line per dataset, learner and online step: mean accuracy, its std over episodes, mean loss."""
    lines = ["dataset,learner,step,accuracy,accuracy_std,loss"]
    for name, entry in report["datasets"].items():
        for label, r in entry["learners"].items():
            quoted = '"' + label.replace('"', '""') + '"'
            losses = r.get("loss_curve") or [float("nan")] * len(r["curve"])
            for step, (acc, std, loss) in enumerate(zip(r["curve"], r["curve_std"], losses, strict=True), 1):
                lines.append(f"{name},{quoted},{step},{acc:.6g},{std:.6g},{loss:.6g}")
    return "\n".join(lines) + "\n"
