"""The report of a meta-test suite run (`vsml.evaluation.suite`): results.json, a README table and a plot of
learning curves, all rendered from the results dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vsml.atomic import write_text_atomically
from vsml.evaluation.suite import WHOLE
from vsml.report.tables import RESULTS_DIGITS, RESULTS_FILE, markdown_table, plus_minus, round_floats

PLOT_FILE = "curves.png"


def _cell(summary: dict[str, Any]) -> str:
    return plus_minus(summary["mean"], summary["interval"])


def suite_table(results: dict[str, Any]) -> str:
    """One row per data set: the learner and the better tuned baseline per window (mean ± 95 % over episodes)."""
    first = f"first_{results['window']}"
    verdict = results["acceptance"]
    ahead = set(verdict[f"ahead_over_{first}"])
    within = next(v for k, v in verdict.items() if k.startswith("within_") and k.endswith("_over_whole"))
    rows = []
    for r in results["datasets"]:
        best = r["best_baseline"]
        rows.append({
            "data set": r["name"] + ("" if r["held_out"] else " (not held out)"),
            "steps": r["steps"],
            f"LA, steps 1–{results['window']}": _cell(r["learner"][first]),
            f"best baseline, steps 1–{results['window']}": f"{_cell(best[first])} ({best[first]['baseline']})",
            "LA, whole": _cell(r["learner"][WHOLE]),
            "best baseline, whole": f"{_cell(best[WHOLE])} ({best[WHOLE]['baseline']})",
            "ahead early": "yes" if r["name"] in ahead else "no",
            "within, whole": {True: "yes", False: "no"}.get(within.get(r["name"]), "—"),
        })  # fmt: skip
    return markdown_table(rows)


def _plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vsml.evaluation.statistics import moving_average

    records = results["datasets"]
    columns = min(3, len(records))
    rows = -(-len(records) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.ravel(), records, strict=False):
        window = max(1, r["steps"] // 20)
        steps = np.arange(1, r["steps"] + 1)
        ax.plot(steps, moving_average(np.asarray(r["curve"]), window), label=results.get("learner", "learned LA"))
        best = r["best_baseline"][WHOLE]
        ax.plot(steps, moving_average(np.asarray(best["curve"]), window), label=f"{best['baseline']} (tuned)")
        ax.set_title(r["name"], fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(f"online accuracy (mean of {window})")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(records) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_suite_report(results: dict[str, Any], out_dir: str | Path, command: str) -> list[Path]:
    """results.json (floats rounded), README.md (the table and the verdict, naming `command`) and the plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rounded = round_floats(results, RESULTS_DIGITS)
    head = {k: v for k, v in rounded.items() if k != "datasets"}
    lines = [json.dumps(head)[:-1] + ', "datasets": [']  # one line per data set keeps the file diffable
    lines += [f" {json.dumps(record)}," for record in rounded["datasets"]]
    lines[-1] = lines[-1].rstrip(",")
    written = [write_text_atomically(out / RESULTS_FILE, "\n".join([*lines, "]}"]) + "\n")]
    written.append(_plot(results, out / PLOT_FILE))
    verdict = results["acceptance"]
    first = f"first_{results['window']}"
    text = [
        f"# Meta-test suite `{results['suite']}`: {results.get('learner', 'a learned LA')}",
        "",
        f"Written by `{command}` from `{RESULTS_FILE}`. {results['episodes']} episodes per data set (seed "
        f"{results['seed']}); mean online accuracy ± 95 % interval over episodes. Each baseline's rate is tuned "
        "on these very episodes, separately per window (src/vsml/evaluation/suite.py).",
        "",
        suite_table(results),
        "",
        f"Ahead over steps 1–{results['window']} (non-overlapping intervals): "
        f"{', '.join(verdict[f'ahead_over_{first}']) or 'none'}; criteria met: ahead {verdict['ahead_met']}, "
        f"within over whole episodes {verdict['within_met']}, floors {verdict['min_accuracy_met']}.",
        "",
        f"![learning curves]({PLOT_FILE})",
        "",
    ]
    written.append(write_text_atomically(out / "README.md", "\n".join(text)))
    return written
