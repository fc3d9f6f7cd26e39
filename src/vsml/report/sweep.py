"""The learning-rate sweep report (`vsml sweep-lr`): `lr_sweep.json` and a markdown table of the JSON-able
report `vsml.evaluation.sweep.sweep_learning_rates` returns, with a note where the best rate is at the grid's edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vsml.atomic import write_text_atomically
from vsml.report.tables import markdown_table

JSON_NAME = "lr_sweep.json"
MARKDOWN_NAME = "lr_sweep.md"
_EDGE_NOTE = {
    "low": "lowest rate of the grid: add smaller rates",
    "high": "highest rate of the grid: add larger rates",
    "both": "only one rate: sweep a grid",
}


def sweep_table(report: dict[str, Any]) -> str:
    """Markdown: one row per dataset × learner with the best rate, its accuracy, chance and an edge warning."""
    rows = []
    for name, entry in report["datasets"].items():
        for label, result in entry["learners"].items():
            rows.append(
                {
                    "dataset": name,
                    "learner": label,
                    "best lr": f"{result['best_rate']:g}",
                    "accuracy": result["best_accuracy"],
                    "chance": entry["chance"],
                    "grid": ", ".join(f"{r:g}" for r in result["rates"]),
                    "note": _EDGE_NOTE.get(result["edge"], ""),
                }
            )
    title = (
        f"### Learning-rate sweep: mean online accuracy ({report['episodes']} {report['split']}-split episodes "
        f"of {report['length']} steps, seed {report['seed']})"
    )
    return f"{title}\n\n{markdown_table(rows)}\n"


def write_sweep(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """lr_sweep.json and lr_sweep.md in `out_dir` (created if missing), each written atomically."""
    out_dir = Path(out_dir)
    return [
        write_text_atomically(out_dir / JSON_NAME, json.dumps(report, indent=1)),
        write_text_atomically(out_dir / MARKDOWN_NAME, sweep_table(report)),
    ]
