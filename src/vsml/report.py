"""Results as text and pictures: markdown tables, learning-curve PNGs, block means of online accuracy.

The papers report online learning as curves of accuracy over the examples seen (VSML spec §6.2, Fig. 6) and as
tables of accuracies per dataset (§6.4, Fig. 8). These functions take plain numpy arrays and dicts, so they
know nothing about learners or training; all work on the host.
"""

from __future__ import annotations

import math
import numbers
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsml.atomic import write_atomically

MISSING = "—"  # shown for a value a row does not have
PNG_DPI = 150


def markdown_table(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None, float_format: str = "{:.3f}"
) -> str:
    """A GitHub-flavoured markdown table of `rows`, one line per row.

    `columns` defaults to every key of every row, in order of first appearance. Floats are written with
    `float_format`; a missing key or None is shown as "—". Columns of numbers are right-aligned, others left.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        raise ValueError("markdown_table needs at least one column: pass rows with keys or `columns`")
    values = [[_scalar(row.get(column)) for column in columns] for row in rows]
    cells = [[_format_cell(value, float_format) for value in line] for line in values]
    present = [[line[i] for line in values if line[i] is not None] for i in range(len(columns))]
    numeric = [bool(column) and all(_is_number(v) for v in column) for column in present]
    header = [_escape(str(c)) for c in columns]
    widths = [max(3, len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(header)]

    def line(texts: Sequence[str]) -> str:
        padded = (t.rjust(w) if num else t.ljust(w) for t, w, num in zip(texts, widths, numeric, strict=True))
        return "| " + " | ".join(padded) + " |"

    # "---:" right-aligns a column in rendered markdown; the padding above does the same in the raw text.
    rules = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    alignment = line(rules)
    return "\n".join([line(header), alignment, *(line(c) for c in cells)])


def interval_95(values: np.ndarray) -> float:
    """Half-width of the normal 95% confidence interval of the mean of `values` (1.96·s/√n); 0 for one value."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        return 0.0
    return float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def moving_average(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last axis; the first window−1 points average what exists so far.

    Same length as `curve`, so step t still means "after t examples" and nothing is padded with zeros.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if window < 1:
        raise ValueError(f"moving_average window must be >= 1, got {window}")
    if window == 1 or curve.shape[-1] == 0:
        return curve
    cumsum = np.cumsum(curve, axis=-1)
    shifted = np.zeros_like(cumsum)
    shifted[..., window:] = cumsum[..., :-window]
    counts = np.minimum(np.arange(1, curve.shape[-1] + 1), window)
    return (cumsum - shifted) / counts


def block_means(curve: np.ndarray, num_blocks: int) -> np.ndarray:
    """Mean of `curve` over `num_blocks` consecutive blocks of steps (last axis) → [..., num_blocks].

    Blocks are as equal as possible (`np.array_split`: earlier blocks get the extra step); see `block_labels`.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim == 0:
        raise ValueError("block_means needs a curve over steps, got a scalar")
    _check_num_blocks(curve.shape[-1], num_blocks)
    return np.stack([block.mean(axis=-1) for block in np.array_split(curve, num_blocks, axis=-1)], axis=-1)


def block_labels(num_steps: int, num_blocks: int) -> list[str]:
    """Column names of the blocks of `block_means`: "steps 1–10", "steps 11–20" for 20 steps in 2 blocks;
    a block of one step is "step 3"."""
    _check_num_blocks(num_steps, num_blocks)
    sizes = [len(b) for b in np.array_split(np.arange(num_steps), num_blocks)]
    ends = np.cumsum(sizes)
    return [
        f"step {end}" if size == 1 else f"steps {end - size + 1}–{end}"
        for size, end in zip(sizes, ends, strict=True)
    ]


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


def _check_num_blocks(num_steps: int, num_blocks: int) -> None:
    if not 1 <= num_blocks <= num_steps:
        raise ValueError(f"num_blocks must be in [1, {num_steps}] for {num_steps} steps, got {num_blocks}")


def _as_curve(curve: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(curve, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array over steps, got shape {array.shape}")
    return array


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _scalar(value: object) -> object:
    # 0-d numpy/jax arrays (e.g. a metric straight out of jnp.mean) are shown as the numbers they hold.
    if value is not None and not isinstance(value, str) and hasattr(value, "item") and np.ndim(value) == 0:
        return value.item()
    return value


def _format_cell(value: object, float_format: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)
        return float_format.format(value) if math.isfinite(value) else str(value)
    return _escape(str(value))


def _escape(text: str) -> str:
    # A literal "|" would split the cell; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


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
