"""The `vsml clone` report: the clone (trained into its run folder by `vsml.run.clone.clone_into`, or read from
it) run free against its teacher (`vsml.evaluation.clone.evaluate_clone`), written as `clone.json`, `clone.md`
and per dataset and architecture the per-step record (`curves_*.npz`) and its learning-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vsml.atomic import write_atomically, write_text_atomically
from vsml.config import config_to_dict
from vsml.evaluation.clone import evaluate_clone, load_clone
from vsml.meta.cloning import CloneConfig
from vsml.report.plots import plot_learning_curves
from vsml.report.tables import markdown_table
from vsml.run.checkpoint import checkpoint_metadata, latest_checkpoint
from vsml.run.clone import clone_into
from vsml.tasks.datasets import load_dataset


def architecture_name(hidden_sizes: tuple[int, ...]) -> str:
    return "shallow" if not hidden_sizes else "deep (" + "-".join(str(h) for h in hidden_sizes) + ")"


def run_clone(
    config: CloneConfig,
    out_dir: str | Path,
    *,
    evaluate: bool = True,
    train: bool = True,
    progress: bool = True,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Clone (unless `train=False`: use the run's checkpoint), then evaluate free-running; writes
    checkpoint, `clone.json`, `clone.md` and one learning-curve PNG per dataset and architecture."""
    out = Path(out_dir)
    checkpoint = latest_checkpoint(out)
    if train and checkpoint is not None:
        raise FileExistsError(
            f"{out} already holds a cloning checkpoint; choose a new --out, or pass --eval-only to evaluate it again"
        )
    if not train and checkpoint is None:
        raise FileNotFoundError(
            f"{out} holds no cloning checkpoint; run `vsml clone CONFIG --out {out}` first"
        )
    if evaluate:
        for dataset in config.eval.datasets:  # a missing dataset fails now, not after a long cloning run
            load_dataset(dataset, data_dir)
    if train:
        params, history = clone_into(config, out, progress)
    else:
        params = load_clone(out, config)
        history = checkpoint_metadata(out).get("history", {})
    summary: dict[str, Any] = {"config": config_to_dict(config), "history": history, "results": []}
    if evaluate:
        cells = [(d, a) for d in config.eval.datasets for a in config.eval.architectures]
        for dataset, hidden in tqdm(cells, desc="clone free-running", unit="run", disable=not progress):
            result = evaluate_clone(
                params, dataset, hidden,
                steps=config.eval.steps,
                learning_rate=config.teacher.learning_rate,
                num_micro_ticks=config.num_micro_ticks,
                weight_std=config.eval.weight_std,
                test_examples=config.eval.test_examples,
                tail=config.eval.tail,
                seed=config.eval.seed,
                data_dir=data_dir,
            )  # fmt: skip
            correct = result.pop("online_correct")
            name = f"{dataset}_{architecture_name(hidden).split(' ')[0]}"
            # The per-step record, so a figure can be redrawn without rerunning 60,000 steps.
            write_atomically(
                out / f"curves_{name}.npz",
                lambda file, c=correct: np.savez(
                    file, clone=np.asarray(c["clone"]), teacher=np.asarray(c["teacher"])
                ),
            )
            plot_clone_curves(out / f"curves_{name}.npz", config, result["architecture"], dataset)
            summary["results"].append(result)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "clone.json", json.dumps(summary, indent=1))
    write_text_atomically(out / "clone.md", clone_markdown(summary))
    return summary


def plot_clone_curves(record: Path, config: CloneConfig, architecture: str, dataset: str) -> Path:
    """The learning curves of one free-running cell from its per-step record (`curves_*.npz`), as a PNG
    beside it (also how a figure is redrawn without rerunning the steps)."""
    with np.load(record) as correct:
        clone, teacher = np.asarray(correct["clone"], float), np.asarray(correct["teacher"], float)
    window = max(1, min(1000, len(clone) // 20))
    teacher_label = f"online backprop (teacher, α={config.teacher.learning_rate:g})"
    clone_label = "cloned VSML (forward only)"
    return plot_learning_curves(
        {teacher_label: teacher, clone_label: clone},
        record.with_suffix(".png"),
        title=f"{dataset} {architecture}: the clone run free vs its teacher\n(same initial weights; init "
        f"{config.init}, {config.train.steps} cloning steps; averaged over {window} steps)",
        smooth=window,
        chance=0.1,
        # The two often coincide: the teacher wide underneath, the clone dashed on top.
        line_styles={teacher_label: {"linewidth": 4.0, "alpha": 0.5}, clone_label: {"linestyle": "--"}},
    )


def clone_markdown(summary: dict[str, Any]) -> str:
    """The report of a cloning run: held-out cloning losses, then the free-running table."""
    return "# Learning-algorithm cloning of backprop\n\n" + clone_tables(summary)


def clone_tables(summary: dict[str, Any]) -> str:
    """`clone_markdown` without its heading (a generated block of a README: `table FILE clone`)."""
    history = summary.get("history") or {}
    lines = []
    if history.get("heldout_before"):
        rows = [
            {"held-out loss part": k, "before cloning": history["heldout_before"][k],
             "after cloning": history["heldout_after"][k]}
            for k in history["heldout_before"]
        ]  # fmt: skip
        lines += [markdown_table(rows, float_format="{:.3g}"), ""]
    rows = [
        {
            "dataset": r["dataset"],
            "network": r["architecture"],
            "online steps": r["steps"],
            "clone test acc": r["clone"]["test_accuracy"],
            "teacher test acc": r["teacher"]["test_accuracy"],
            f"clone online (last {r['tail']})": r["clone"]["online_accuracy_tail"],
            f"teacher online (last {r['tail']})": r["teacher"]["online_accuracy_tail"],
            "same prediction": r["same_online_prediction"],
        }
        for r in summary["results"]
    ]
    if rows:
        lines += [markdown_table(rows), ""]
    config = summary["config"]
    lines.append(
        f"Config: init {config['init']}, α = {config['teacher']['learning_rate']}, "
        f"{config['train']['steps']} cloning steps, weight std {config['eval']['weight_std']}, "
        f"seed {config['eval']['seed']}."
    )
    return "\n".join(lines) + "\n"
