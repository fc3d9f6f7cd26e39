"""Results as pictures: learning-curve and meta-training PNGs.

The papers report online learning as curves of accuracy over the examples seen (VSML spec §6.2, Fig. 6) and as
tables of accuracies per dataset (§6.4, Fig. 8). These functions take plain numpy arrays and dicts, so they
know nothing about learners or training; all work on the host.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsml.atomic import write_atomically
from vsml.evaluation.statistics import moving_average

PNG_DPI = 150


def plot_learning_curves(
    curves: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    title: str = "",
    ylabel: str = "online accuracy",
    chance: float | None = None,
    smooth: int = 1,
    std: Mapping[str, np.ndarray] | None = None,
    line_styles: Mapping[str, Mapping[str, Any]] | None = None,
    steps: Mapping[str, np.ndarray] | None = None,
    xlabel: str = "online step (examples seen)",
) -> Path:
    """Write a PNG of one line per learner over the online step index (spec §6.2, Fig. 6); returns its path.

    `curves[name]` is a 1-D array over steps; `std[name]`, if given, draws a shaded ±std band. Both are
    smoothed by a trailing moving average of `smooth` steps. `line_styles[name]` (matplotlib keywords, e.g.
    linestyle, linewidth) keeps curves that coincide apart. `steps[name]` places a curve's points (default
    1, 2, …). The file is written atomically (temp file, then rename); the parent directory is created.
    """
    # Figure + Agg canvas, not pyplot: no global backend or figure registry, and importing vsml stays light.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_learning_curves needs at least one curve")
    std = dict(std or {})
    unknown = set(std) - set(curves)
    if unknown:
        raise ValueError(f"std has curves that are not in `curves`: {sorted(unknown)}")
    arrays = {name: _as_curve(curve, f"curves[{name!r}]") for name, curve in curves.items()}
    bands = {name: _as_curve(band, f"std[{name!r}]") for name, band in std.items()}
    for name, band in bands.items():
        if band.shape != arrays[name].shape:
            raise ValueError(f"std[{name!r}] has shape {band.shape}, its curve {arrays[name].shape}")
    if smooth < 1:
        raise ValueError(f"smooth is a window in steps and must be >= 1, got {smooth}")

    many = len(arrays) > 4  # a legend that would cover the curves goes to the right of the axes instead
    fig = Figure(figsize=(9.6 if many else 6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, curve in arrays.items():
        x = np.arange(1, curve.shape[0] + 1) if name not in (steps or {}) else np.asarray(steps[name])
        if x.shape != curve.shape:
            raise ValueError(f"steps[{name!r}] has shape {x.shape}, its curve {curve.shape}")
        mean = moving_average(curve, smooth)
        style = {"linewidth": 1.5, **(line_styles or {}).get(name, {})}
        (line,) = ax.plot(x, mean, label=name, **style)
        if name in bands:
            band = moving_average(bands[name], smooth)
            ax.fill_between(x, mean - band, mean + band, color=line.get_color(), alpha=0.2, linewidth=0)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle="--", linewidth=1.0, label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        # Long lines are wrapped: a title wider than the axes runs off the figure (the legend may sit beside).
        ax.set_title("\n".join(textwrap.fill(line, 70) for line in title.split("\n")))
    ax.grid(True, alpha=0.3)
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        ax.legend(loc="best", fontsize="small")

    # A crash leaves no half-written PNG.
    return write_atomically(path, lambda file: fig.savefig(file, format="png", dpi=PNG_DPI))


def _as_curve(curve: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(curve, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array over steps, got shape {array.shape}")
    return array


def plot_meta_training(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    metric: str,
    path: str | os.PathLike[str],
    title: str = "",
    chance: float | None = None,
    start: Mapping[str, float] | None = None,
    ylabel: str | None = None,
) -> Path:
    """A metric of several meta-training runs (their `metrics.jsonl` records) over the iterations at which it
    was logged, e.g. `eval_accuracy_digits`; `start[name]`, if given, is the value before iteration 1."""
    curves, steps = {}, {}
    for name, records in runs.items():
        points = [(r["iteration"], r[metric]) for r in records if metric in r]
        if name in (start or {}):
            points.insert(0, (0, start[name]))
        if not points:
            raise ValueError(f"run {name!r} has no records of {metric!r}")
        steps[name], curves[name] = (np.asarray(v, float) for v in zip(*points, strict=True))
    ylabel = ylabel or metric.replace("_", " ")
    line_styles = {name: {"marker": "o", "markersize": 3} for name in runs}
    return plot_learning_curves(
        curves,
        path,
        title,
        ylabel,
        chance,
        line_styles=line_styles,
        steps=steps,
        xlabel="meta-training iteration",
    )
