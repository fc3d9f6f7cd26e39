"""The meta-test report (`vsml evaluate`): markdown tables, per-step CSV and learning-curve PNGs of the JSON-able
report `vsml.evaluation.meta_test.meta_test` returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vsml.atomic import write_text_atomically
from vsml.evaluation.statistics import block_labels
from vsml.report.plots import plot_learning_curves
from vsml.report.tables import markdown_table, plus_minus


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
                if r.get("query_accuracy_interval_95") is not None:
                    row["query ± 95%"] = r["query_accuracy_interval_95"]
            row.update(dict(zip(labels, r["block_accuracy"], strict=True)))
            rows.append(row)
        chance = {"learner": "chance", "mean": entry["chance"], "final": entry["chance"]}
        if report.get("query_steps"):
            chance["query"] = entry["chance"]
            if any("query ± 95%" in row for row in rows):
                chance["query ± 95%"] = None
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
                f"{plus_minus(seeds['mean_accuracy_mean'], seeds['mean_accuracy_interval_95'])}, final step "
                f"{plus_minus(seeds['final_accuracy_mean'], seeds['final_accuracy_interval_95'])} (95% over runs)"
            )
            if "query_accuracy" in seeds:
                query = seeds["query_accuracy"]
                text += (
                    f"; query accuracy {plus_minus(query['mean'], query['interval_95'])} (95% over runs), the best "
                    f"run {query['best']:.3f} ({query['best_run']})"
                )
        steps = step_table(entry)
        if steps:
            text += (
                "\n\nAccuracy on each step's batch, predicted before it is learned (± 95% over episodes):"
                f"\n\n{steps}"
            )
        prefixes = prefix_table(entry)
        if prefixes:
            text += f"\n\nOnline accuracy over the first n examples (± 95% over episodes):\n\n{prefixes}"
        parts.append(text)
    return "\n\n".join(parts) + "\n"


# Episodes this short (BLUR's 15 inner batches, few-shot episodes) get a table of every step.
STEP_TABLE_MAX_STEPS = 20


def step_table(entry: dict[str, Any]) -> str:
    """Markdown, one row per online step and one column per learner: its mean accuracy ± 95% over episodes.
    Empty for episodes longer than `STEP_TABLE_MAX_STEPS` or reports written before the per-step intervals."""
    learners = entry["learners"]
    if not all("curve_interval_95" in r for r in learners.values()):
        return ""
    length = len(next(iter(learners.values()))["curve"])
    if length > STEP_TABLE_MAX_STEPS:
        return ""
    return markdown_table(
        [
            {"step": t + 1}
            | {
                label: plus_minus(r["curve"][t], r["curve_interval_95"][t])
                for label, r in learners.items()
            }
            for t in range(length)
        ]
    )


def prefix_table(entry: dict[str, Any]) -> str:
    """Markdown: each learner's mean online accuracy over steps 1–n (± 95% interval over episodes) for the
    report's prefix lengths; with several runs, a last row of the meta-trained runs' mean ± 95% over runs.
    Empty for a report without prefix blocks."""
    learners = entry["learners"]
    if not all("prefix_accuracy" in r for r in learners.values()):
        return ""
    steps = list(next(iter(learners.values()))["prefix_accuracy"])
    if not steps:
        return ""
    rows = []
    for label, r in learners.items():
        row = {"learner": label}
        for n in steps:
            block = r["prefix_accuracy"][n]
            row[f"steps 1–{n}"] = plus_minus(block["mean"], block["interval_95"])
        rows.append(row)
    seeds = entry.get("seeds", {}).get("prefix_accuracy")
    if seeds:
        row = {"learner": f"meta-trained, mean of {len(entry['seeds']['runs'])} runs (± 95% over runs)"}
        for n in steps:
            row[f"steps 1–{n}"] = plus_minus(seeds[n]["mean"], seeds[n]["interval_95"])
        rows.append(row)
    return markdown_table(rows)


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
        if "curve" in entry.get("seeds", {}):
            curves[f"meta-trained, mean of {len(entry['seeds']['runs'])} runs"] = np.asarray(entry["seeds"]["curve"])
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
