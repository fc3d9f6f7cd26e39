"""A fixed meta-test suite: data sets a learned LA never trained on, each with its split and protocol, against
the strictest hand-designed baselines (issue 24 §3).

A suite is a YAML file (`general` ships with the package, `suites/general.yaml`) read into `Suite`. For each of
its data sets the learner runs `episodes` online episodes (predict, then learn from the label; the fixed
evaluation key), and every hand-designed contender (online SGD and Adam, linear or with one 160-unit tanh layer)
runs the *same* episodes at every rate of its grid. The rate is chosen separately for each reported window (the
first `window` steps; the whole episode) on those very episodes: the strictest form of tuning, an oracle the
learned LA does not get. Where the best rate sits at an end of the grid, the grid grows that way by a factor √10
until it does not (at most `MAX_EXTENSIONS` times; a best rate still at the edge is flagged in the results).

Every contender sees the same inputs: each feature standardised by the statistics of the pool the episodes draw
from (`Suite.standardise`), as `vsml.evaluate_online` standardises a user's X: a user has their own data's
statistics, not those of a training split it never saw. (On Omniglot, the training alphabets' statistics put
pixels that are rarely inked there at several standard deviations in Korean and Tagalog.)

Results (`evaluate_suite`) are a JSON-ready dict; `acceptance` applies the issue's criteria: ahead of the better
tuned baseline over the first window with non-overlapping 95 % intervals on `ahead_datasets` held-out data sets,
within `whole_tolerance` of it over the whole episode on every held-out data set, and each data set's
`min_accuracy` (e.g. Sum Sign's 0.90) where one is set.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np

from vsml.config import load_config
from vsml.evaluation.arrays import standardise_features
from vsml.evaluation.baselines import HAND_DESIGNED, sgd_meta
from vsml.evaluation.defaults import EVAL_SEED
from vsml.evaluation.online import evaluate_on_source
from vsml.evaluation.statistics import interval_95
from vsml.learners.base import Learner, PyTree
from vsml.tasks.datasets import load_dataset
from vsml.tasks.episodes import EpisodeSource, make_episode_source
from vsml.tasks.omniglot import OMNIGLOT_TEST_ALPHABETS, FewShotSource, load_omniglot
from vsml.tasks.sampler import EpisodeSampler, Source
from vsml.tasks.transforms import EpisodeTransform

__all__ = [
    "MAX_EXTENSIONS",
    "Suite",
    "SuiteDataset",
    "acceptance",
    "evaluate_suite",
    "load_suite",
    "suite_episodes",
    "tune_on_episodes",
    "window_name",
]

SUITES_DIR = Path(str(importlib.resources.files("vsml.evaluation") / "suites"))
MAX_EXTENSIONS = 4  # grid growths per side and window: 4 · √10 is two decades past the shipped grid's end
EXTENSION_FACTOR = math.sqrt(10.0)
WHOLE = "whole"  # the window of every step of the episode


@dataclass(frozen=True)
class SuiteDataset:
    """One data set of a suite and how it is meta-tested."""

    name: str  # its name in reports
    dataset: str  # a `load_dataset` name, or "omniglot"
    split: Literal["train", "test", "all"] = "test"  # "all": both splits of an array data set, as one pool
    length: int = 1000  # online steps per episode (Omniglot: `ways` · drawings, set by the data)
    ways: int | None = None  # Omniglot only: characters per episode, every drawing of each, no image twice
    alphabets: tuple[str, ...] = OMNIGLOT_TEST_ALPHABETS  # Omniglot only: the alphabets of its "test" split
    resize: tuple[int, int] | None = None  # (height, width) of images, bilinear; None: as stored
    held_out: bool = True  # never in the LA's meta-training: the acceptance criteria count only these
    min_accuracy: float | None = None  # a floor on the LA's whole-episode accuracy (e.g. Sum Sign's 0.90)

    def __post_init__(self) -> None:
        omniglot = self.dataset == "omniglot"
        if omniglot and self.ways is None:
            raise ValueError(f"{self.name}: an omniglot data set needs ways (characters per episode)")
        if not omniglot and self.ways is not None:
            raise ValueError(f"{self.name}: ways is for omniglot only; {self.dataset} episodes have length")
        if omniglot and self.split == "all":
            raise ValueError(f"{self.name}: omniglot's split is train or test (its alphabets), not all")
        if self.length < 1 or (self.ways is not None and self.ways < 2):
            raise ValueError(f"{self.name}: length must be >= 1 and ways >= 2")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise ValueError(f"{self.name}: min_accuracy must be in [0, 1], got {self.min_accuracy}")

    @property
    def protocol(self) -> str:
        return "all_drawings" if self.ways is not None else "online"


@dataclass(frozen=True)
class Suite:
    """A fixed meta-test suite (module docstring)."""

    name: str
    datasets: tuple[SuiteDataset, ...]
    episodes: int = 16
    seed: int = EVAL_SEED
    window: int = 100  # the first-steps window reported beside the whole episode
    baselines: tuple[str, ...] = ("sgd", "adam", "sgd-160", "adam-160")  # `HAND_DESIGNED` tokens
    # Each feature standardised by the statistics of the pool its episodes draw from (`vsml.evaluate_online`'s
    # `standardise` on a user's X); false: the data sets' own scalar constants (spec §3.3).
    standardise: bool = True
    ahead_datasets: int = 3  # held-out data sets where the LA must lead over `window` (non-overlapping CIs)
    whole_tolerance: float = 0.03  # how far behind the better baseline it may be over whole episodes

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("a suite needs at least one data set")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"data set names must be unique, got {names}")
        unknown = [b for b in self.baselines if b not in HAND_DESIGNED]
        if unknown or not self.baselines:
            raise ValueError(f"baselines must be some of {', '.join(HAND_DESIGNED)}, got {list(self.baselines)}")
        if self.episodes < 2 or self.window < 1:
            raise ValueError("episodes must be >= 2 (an interval needs two) and window >= 1")


def load_suite(name_or_path: str | os.PathLike[str] = "general") -> Suite:
    """A suite by its shipped name (`general`) or from a YAML file."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = SUITES_DIR / f"{path.as_posix().removesuffix('.yaml')}.yaml"
        if not shipped.is_file():
            names = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"no suite file {path} and no shipped suite of that name ({', '.join(names)})")
        path = shipped
    return load_config(Suite, path)


def window_name(window: int | None) -> str:
    return WHOLE if window is None else f"first_{window}"


# ----- episodes ------------------------------------------------------------------------------------------------


def _standardised(x: np.ndarray, standardise: bool, what: str) -> np.ndarray:
    """Each feature of the pool `x` [n, *shape] standardised over the pool, `evaluate_online`'s own rule."""
    return standardise_features(x, what) if standardise else x


def _omniglot_source(entry: SuiteDataset, standardise: bool, data_dir: str | os.PathLike[str] | None) -> FewShotSource:
    images = load_omniglot(data_dir, test_alphabets=entry.alphabets).split(entry.split)
    flat = _standardised(images.reshape((-1, *images.shape[2:])), standardise, entry.name)
    return FewShotSource(jnp.asarray(flat.reshape(images.shape)))


def _array_source(entry: SuiteDataset, standardise: bool, data_dir: str | os.PathLike[str] | None) -> EpisodeSource:
    dataset = load_dataset(entry.dataset, data_dir)
    if dataset.is_stream:  # generated streams are standardised already (mean 0, unit-scale features)
        return make_episode_source(dataset, "test")
    splits = ("train", "test") if entry.split == "all" else (entry.split,)
    x = np.concatenate([dataset.split(s)[0] for s in splits])
    y = np.concatenate([dataset.split(s)[1] for s in splits])
    pool = dataclasses.replace(dataset, train_x=_standardised(x, standardise, entry.name), train_y=y)
    return make_episode_source(pool, "train")


def suite_episodes(
    entry: SuiteDataset, standardise: bool = True, data_dir: str | os.PathLike[str] | None = None
) -> tuple[Source, EpisodeSampler]:
    """The source and sampler of one suite data set's episodes (the pool standardised: module docstring)."""
    transform = EpisodeTransform(resize=entry.resize)
    if entry.ways is not None:
        source = _omniglot_source(entry, standardise, data_dir)
        length = entry.ways * int(source.images.shape[1])
        return source, EpisodeSampler(length, transform, ways=entry.ways, all_drawings=True)
    source = _array_source(entry, standardise, data_dir)
    if source.size is not None and source.size < entry.length:
        raise ValueError(
            f"{entry.name}: {entry.length} steps need as many examples without repeats; the pool holds "
            f"{source.size} (use split: all, or a shorter length)"
        )
    return source, EpisodeSampler(entry.length, transform)


# ----- tuning on the episodes themselves -----------------------------------------------------------------------


def _window_scores(accuracy: np.ndarray, window: int | None) -> np.ndarray:
    """[N] mean accuracy of each episode over its first `window` steps (None: all)."""
    return accuracy[:, : accuracy.shape[1] if window is None else window].mean(axis=1)


def _summary(scores: np.ndarray) -> dict[str, float]:
    return {"mean": float(scores.mean()), "interval": interval_95(scores)}


def _grown(rates: tuple[float, ...], edge: str) -> float:
    rate = rates[0] / EXTENSION_FACTOR if edge == "low" else rates[-1] * EXTENSION_FACTOR
    return float(f"{rate:.3g}")


def tune_on_episodes(
    run: Callable[[float], np.ndarray], rates: tuple[float, ...], windows: tuple[int | None, ...]
) -> dict[str, dict[str, Any]]:
    """For each window, the rate whose episodes score best over it, growing the grid past an edge (module
    docstring). `run(rate) -> accuracy [N, T]` on the same episodes for every rate; each rate runs once."""
    runs: dict[float, np.ndarray] = {}

    def score(rate: float, window: int | None) -> float:
        if rate not in runs:
            runs[rate] = run(rate)
        return float(_window_scores(runs[rate], window).mean())

    tuned = {}
    for window in windows:
        grid = tuple(sorted({*rates, *runs}))  # every rate run so far competes in every window
        for growth in range(MAX_EXTENSIONS + 1):
            best = max(grid, key=lambda r: score(r, window))
            edge = "low" if best == grid[0] else "high" if best == grid[-1] else None
            if edge is None or growth == MAX_EXTENSIONS:
                break
            grid = tuple(sorted({*grid, _grown(grid, edge)}))
        tuned[window_name(window)] = {
            "rate": best,
            **_summary(_window_scores(runs[best], window)),
            "at_grid_edge": edge,
            "rates_tried": len(grid),
            "curve": runs[best].mean(axis=0),  # [T] its mean online accuracy per step
        }
    return tuned


# ----- the suite ---------------------------------------------------------------------------------------------


def _evaluate(learner: Learner, meta: PyTree, source: Source, sampler: EpisodeSampler, suite: Suite) -> np.ndarray:
    result = evaluate_on_source(
        learner, meta, source, num_episodes=suite.episodes, length=sampler.length, seed=suite.seed,
        sampler=sampler,
    )  # fmt: skip
    return result.accuracy


def _evaluate_at_rate(
    learner: Learner, rate: float, *, source: Source, sampler: EpisodeSampler, suite: Suite
) -> np.ndarray:
    return _evaluate(learner, sgd_meta(rate), source, sampler, suite)


def evaluate_suite(
    learner: Learner,
    meta: PyTree,
    suite: Suite,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Meta-test `learner` (with `meta`) on every data set of `suite` beside its tuned baselines (module
    docstring); a JSON-ready dict with one record per data set and the `acceptance` summary."""
    records = []
    windows = (suite.window, None)
    for entry in suite.datasets:
        if progress:
            progress(f"{entry.name}: the learned LA")
        source, sampler = suite_episodes(entry, suite.standardise, data_dir)
        accuracy = _evaluate(learner, meta, source, sampler, suite)
        baselines = {}
        for token in suite.baselines:
            if progress:
                progress(f"{entry.name}: {token}, its rate tuned on these episodes")
            contender = HAND_DESIGNED[token]
            baseline = contender.learner()
            baselines[token] = tune_on_episodes(
                functools.partial(_evaluate_at_rate, baseline, source=source, sampler=sampler, suite=suite),
                contender.rates,
                windows,
            )
        records.append(_record(entry, sampler, accuracy, baselines, suite))
    results = {
        "suite": suite.name,
        "episodes": suite.episodes,
        "seed": suite.seed,
        "window": suite.window,
        "standardise": suite.standardise,
        "baselines": list(suite.baselines),
        "datasets": records,
    }
    return {**results, "acceptance": acceptance(records, suite)}


def _record(
    entry: SuiteDataset, sampler: EpisodeSampler, accuracy: np.ndarray, baselines: dict, suite: Suite
) -> dict[str, Any]:
    windows = (window_name(suite.window), WHOLE)
    learner = {w: _summary(_window_scores(accuracy, None if w == WHOLE else suite.window)) for w in windows}
    best = {}
    for w in windows:
        token = max(baselines, key=lambda t: baselines[t][w]["mean"])
        best[w] = {"baseline": token, **{k: baselines[token][w][k] for k in ("rate", "mean", "interval")}}
        best[w]["curve"] = [float(a) for a in baselines[token][w]["curve"]]
    # Only the better baseline's curve per window is kept (the plots'); each contender's numbers stay.
    baselines = {t: {w: {k: v for k, v in tuned.items() if k != "curve"} for w, tuned in by_window.items()}
                 for t, by_window in baselines.items()}  # fmt: skip
    extra = {"ways": entry.ways, "alphabets": list(entry.alphabets)} if entry.ways is not None else {}
    return {
        "name": entry.name,
        "dataset": entry.dataset,
        "split": entry.split,
        "protocol": entry.protocol,
        **extra,
        "steps": int(accuracy.shape[1]),
        "held_out": entry.held_out,
        "min_accuracy": entry.min_accuracy,
        "learner": learner,
        "curve": [float(a) for a in accuracy.mean(axis=0)],
        "baselines": baselines,
        "best_baseline": best,
    }


def acceptance(records: list[dict[str, Any]], suite: Suite) -> dict[str, Any]:
    """The issue's criteria on the records of `evaluate_suite` (module docstring)."""
    first = window_name(suite.window)
    ahead, within, floors = [], {}, {}
    for r in records:
        ours, theirs = r["learner"], r["best_baseline"]
        if r["held_out"]:
            if ours[first]["mean"] - ours[first]["interval"] > theirs[first]["mean"] + theirs[first]["interval"]:
                ahead.append(r["name"])
            within[r["name"]] = ours[WHOLE]["mean"] >= theirs[WHOLE]["mean"] - suite.whole_tolerance
        if r["min_accuracy"] is not None:
            floors[r["name"]] = ours[WHOLE]["mean"] >= r["min_accuracy"]
    return {
        f"ahead_over_{first}": ahead,
        "ahead_met": len(ahead) >= suite.ahead_datasets,
        f"within_{suite.whole_tolerance:g}_over_whole": within,
        "within_met": all(within.values()),
        "min_accuracy": floors,
        "min_accuracy_met": all(floors.values()),
        "all_met": len(ahead) >= suite.ahead_datasets and all(within.values()) and all(floors.values()),
    }
