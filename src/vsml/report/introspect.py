"""The introspection report (`vsml introspect`, VSML paper Sec. 5; BLUR §3.5): a markdown table of the true-class
probability by k, a PNG of the class probabilities over an episode, and a line per BLUR layer on the asymmetry of
its update, from the JSON-able report `vsml.evaluation.introspect.introspect_run` returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vsml.atomic import write_atomically, write_text_atomically
from vsml.evaluation.introspect import earlier_examples
from vsml.report.plots import PNG_DPI
from vsml.report.tables import markdown_table, plus_minus


def _contenders(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in (report["learner"], report.get("sgd")) if entry is not None]


# What the table shows by k: (the report's key, its column name).
_MEASURES = (("true_class_probability", "p(true)"), ("accuracy", "accuracy"))


def introspection_table(report: Mapping[str, Any]) -> str:
    """Markdown: the true-class probability and accuracy by k (earlier labelled examples of the class), with
    their 95% intervals over episodes where the report has them."""
    contenders = _contenders(report)
    rows = []
    by_k = contenders[0]["by_k"] if contenders else {"k": [], "count": []}
    for i, k in enumerate(by_k["k"]):
        row: dict[str, object] = {"k (earlier examples)": k, "steps": by_k["count"][i]}
        for entry in contenders:
            short = entry["label"].split(",")[0].split(" (")[0]
            for name, column in _MEASURES:
                value = entry["by_k"][name][i]
                intervals = entry["by_k"].get(f"{name}_interval_95")  # absent in reports written before them
                if intervals is None or value is None:
                    row[f"{short} {column}"] = value
                else:
                    row[f"{short} {column} ± 95%"] = plus_minus(value, intervals[i])
        seeds = report.get("seeds")
        if seeds:
            short = f"mean of {len(seeds['runs'])} runs"
            for name, column in _MEASURES:
                mean, interval = seeds["by_k"][name]["mean"][i], seeds["by_k"][name]["interval_95"][i]
                row[f"{short} {column} ± 95% over runs"] = (
                    None if mean is None else plus_minus(mean, interval)
                )
        rows.append(row)
    notes = ["; ".join(entry["label"] for entry in contenders)] if contenders else []
    if report.get("seeds"):
        notes.append(
            f"The first columns are {report['seeds']['runs'][0]}; the mean of {len(report['seeds']['runs'])} runs "
            f"({', '.join(report['seeds']['runs'])}) is over the runs' own means."
        )
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
