"""The generalisation grid's report (`vsml compare`, VSML paper Fig. 8): a markdown table, a heatmap and one
learning-curve PNG per column of the JSON-able report `vsml.evaluation.grid.generalisation_grid` (or
`invariance_grid`) returns. Datasets a contender saw in meta-training are marked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vsml.atomic import write_atomically, write_text_atomically
from vsml.report.plots import PNG_DPI, plot_learning_curves
from vsml.report.tables import markdown_table, plus_minus

SEEN_MARK = "†"  # a dataset the contender was meta-trained on (or warm-started from)


def grid_table(report: dict[str, Any], metric: str = "mean_accuracy") -> str:
    """Markdown: one row per contender, one column per dataset, `mean ± 95%`; seen datasets marked †, datasets a
    contender cannot take (e.g. larger than its padded input) "n/a"."""
    datasets = list(report["chance"])
    rows = []
    for row in report["rows"]:
        line: dict[str, object] = {"learner": row["label"]}
        for dataset in datasets:
            cell = row["cells"][dataset]
            if "unavailable" in cell:
                line[dataset] = "n/a"
                continue
            text = plus_minus(cell[metric], cell["interval_95"]) if metric == "mean_accuracy" else f"{cell[metric]:.3f}"
            if "learning_rate" in cell:
                text += f" (lr {cell['learning_rate']:g})"
            line[dataset] = text + (f" {SEEN_MARK}" if dataset in row["seen"] else "")
        rows.append(line)
    rows.append({"learner": "chance", **{d: f"{report['chance'][d]:.3f}" for d in datasets}})
    what = {"mean_accuracy": "mean online accuracy", "final_accuracy": "last-step accuracy"}.get(
        metric, metric
    )
    absent = report.get("absent_datasets") or []
    return (
        f"{what} over {report['episodes']} held-out episodes of {report['length']} steps "
        f"(± 95% interval over episodes; {SEEN_MARK} = seen in meta-training)\n\n" + markdown_table(rows)
    ) + (f"\n\n{absent_line(absent)}" if absent else "")


def absent_line(absent: list[str]) -> str:
    """The note on the columns a grid left out because their files were not in the data folder."""
    return (
        f"No column for {', '.join(absent)}: their files were not in the data folder (put them there as "
        "docs/experiments.md, section Data, lays out, and run the same command again to add them)."
    )


def plot_grid(
    report: dict[str, Any], path: str | Path, metric: str = "mean_accuracy", title: str = ""
) -> Path:
    """A heatmap of the grid (rows contenders, columns datasets); seen cells are outlined and marked †."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    datasets = list(report["chance"])
    labels = [row["label"] for row in report["rows"]]
    values = np.array(
        [[row["cells"][d].get(metric, np.nan) for d in datasets] for row in report["rows"]], dtype=float
    )
    fig = Figure(figsize=(1.4 * len(datasets) + 3.8, 0.5 * len(labels) + 2.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, row in enumerate(report["rows"]):
        for j, dataset in enumerate(datasets):
            seen = dataset in row["seen"]
            if np.isnan(values[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", color="gray")
                continue
            text = f"{values[i, j]:.2f}" + (SEEN_MARK if seen else "")
            ax.text(j, i, text, ha="center", va="center", color="white" if values[i, j] < 0.6 else "black")
            if seen:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    # "dataset · setting" columns (invariances) get one line each, so neighbouring labels do not overlap.
    ticks = [f"{d.replace(' · ', chr(10))}\n(chance {report['chance'][d]:.2f})" for d in datasets]
    ax.set_xticks(range(len(datasets)), ticks, fontsize="small")
    ax.set_yticks(range(len(labels)), labels)
    default_title = (
        f"Mean online accuracy, {report['episodes']} held-out episodes × {report['length']} steps\n"
        f"{SEEN_MARK} and red box: seen in meta-training"
    )
    ax.set_title(title or default_title, fontsize="medium")
    fig.colorbar(image, ax=ax, label="mean online accuracy")
    return write_atomically(path, lambda file: fig.savefig(file, format="png", dpi=PNG_DPI))


def write_grid(
    report: dict[str, Any], out_dir: str | Path, caption: str = "", smooth: int = 10
) -> list[Path]:
    """grid.json, grid.md (table + caption), grid.png and one learning-curve PNG per column (Fig. 6 style),
    written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = grid_table(report) + "\n"
    if caption:
        text += f"\n{caption}\n"
    written = [
        write_text_atomically(out_dir / "grid.json", json.dumps(report, indent=1)),
        write_text_atomically(out_dir / "grid.md", text),
        plot_grid(report, out_dir / "grid.png"),
    ]
    for column, chance in report["chance"].items():
        curves = {
            row["label"] + (f" {SEEN_MARK}" if column in row["seen"] else ""): np.asarray(
                row["cells"][column]["curve"]
            )
            for row in report["rows"]
            if "curve" in row["cells"][column]
        }
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in column.replace(" · ", "__"))
        written.append(
            plot_learning_curves(
                curves,
                out_dir / f"curves_{name}.png",
                title=f"{column}: {report['episodes']} held-out episodes (moving average over {smooth} steps)",
                chance=chance,
                smooth=smooth,
            )
        )
    return written
