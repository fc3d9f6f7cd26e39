"""Meta-test a trained run against its untrained start, online SGD/Adam and chance (spec §2, §6.2).

The baselines get a learning rate chosen by a small sweep on the *meta-training* split, then everything is
measured on the same held-out episodes (test split, fixed key), so the comparison is fair to the baselines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from vsml.config import apply_overrides
from vsml.evaluation.baselines import meta_test_baselines, tune_learning_rate
from vsml.evaluation.defaults import TUNE_SEED
from vsml.evaluation.labels import learner_labels
from vsml.evaluation.labels import meta_trained_label as label_meta_trained
from vsml.evaluation.online import OnlineEvaluation, evaluate_on_source
from vsml.evaluation.statistics import block_means, interval_95, over_runs, prefix_accuracy
from vsml.learners import build_learner
from vsml.learners.base import Learner, PyTree
from vsml.run.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint_json
from vsml.run.experiment import (
    ExperimentConfig,
    experiment_from_dict,
    experiment_sampler,
    make_experiment_source,
)


@dataclass(frozen=True)
class TrainedRun:
    config: ExperimentConfig
    learner: Learner
    meta: PyTree
    iteration: int
    path: Path


def meta_trained_label(run: TrainedRun) -> str:
    """How reports name a run's meta-trained learner, e.g. "VSML, meta-trained V_M (450 ES it.)"."""
    return label_meta_trained(run.learner, run.iteration, run.config.meta_optimizer)


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
    experiment = checkpoint_metadata(json_path).get("experiment")  # a corrupt manifest: an error naming it
    if experiment is None:
        raise ValueError(f"{json_path} holds no experiment config; was it written by `vsml meta-train`?")
    config = experiment_from_dict(apply_overrides(experiment, overrides))
    learner = build_learner(config.learner)
    template = learner.init_meta(jax.random.PRNGKey(config.seed))
    step, trees, _ = load_checkpoint(path, {"meta": template}, partial=True)
    return TrainedRun(config, learner, trees["meta"], step, path if path.is_dir() else path.parent)


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
            return evaluate_on_source(
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
            batched = cfg.task.batch_size > 1 or bool(cfg.task.query_steps)
            for label, learner, rates, meta_for_rate in meta_test_baselines(run.learner, batched):
                # Tune on the meta-training split with a different key, then test on held-out episodes.
                rate, scores = tune_learning_rate(
                    learner, rates, train, min(num_episodes, 32), sampler, seed=TUNE_SEED,
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
                    "query_accuracy_interval_95": r.query_accuracy_interval,
                    "block_accuracy": block_means(r.curve, num_blocks).tolist(),
                    "prefix_accuracy": prefix_accuracy(r.accuracy),
                    "curve": r.curve.tolist(),
                    "curve_std": r.curve_std.tolist(),
                    "curve_interval_95": r.curve_interval.tolist(),
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
        entry["seeds"]["curve"] = np.mean([r["curve"] for r in trained], axis=0).tolist()
        queries = [r.get("query_accuracy") for r in trained]
        if all(q is not None for q in queries):  # few-shot and BLUR: the query after learning is what counts
            best = int(np.argmax(queries))
            entry["seeds"]["query_accuracy"] = over_runs(queries) | {
                "best": float(queries[best]),
                "best_run": names[best],
            }
        prefixes = [r.get("prefix_accuracy", {}) for r in trained]  # none in reports written before them
        if all(prefixes):
            entry["seeds"]["prefix_accuracy"] = {
                n: over_runs([p[n]["mean"] for p in prefixes])
                for n in prefixes[0]
            }
    return combined


def meta_test_runs(
    runs: list[TrainedRun],
    names: list[str],
    datasets: tuple[str, ...] | None = None,
    num_episodes: int | None = None,
    length: int | None = None,
    baselines: bool = True,
    data_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """`meta_test` of one run, or of several (seeds of one config) on the same episodes, combined as
    `combine_runs` does. The settings are checked before hours of meta-testing, not after; the hand-designed
    baselines are tuned and run once (they do not depend on the runs' seeds)."""
    settings = []
    for run in runs:
        tested, episodes, steps = meta_test_setting(run.config, datasets, num_episodes, length)
        settings.append((sorted(tested), episodes, steps))
    if any(setting != settings[0] for setting in settings[1:]):
        raise ValueError(
            "the runs' configs meta-test on different settings (datasets, episodes, length: "
            + "; ".join(f"{name}: {setting}" for name, setting in zip(names, settings, strict=True))
            + "); give them the same ones with --datasets, --episodes and --length"
        )
    reports = [
        meta_test(run, datasets, num_episodes, length, baselines and index == 0, data_dir, progress=progress)
        for index, run in enumerate(runs)
    ]
    return reports[0] if len(runs) == 1 else combine_runs(reports, names)
