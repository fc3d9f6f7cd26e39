"""The ES figure of reports/cloning_cpu_small/: held-out digits accuracy during ES meta-training from the cloned
backprop V_M and from a random V_M, the two ES runs of `vsml reproduce cloning`.

    python reports/cloning_cpu_small/es_figure.py [--runs-dir runs/reproduce/cpu-small]

Reads each run's metrics.jsonl (the evaluation every `eval.every` iterations), evaluates its starting V_M the same
way (iteration 0), and writes es_from_clone_vs_random.json and .png beside this file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from vsml.atomic import write_text_atomically
from vsml.report.plots import plot_meta_training
from vsml.report.tables import RESULTS_DIGITS, round_floats
from vsml.run.experiment import load_experiment
from vsml.run.run_dir import read_metrics
from vsml.run.trainer import MetaTrainer

HERE = Path(__file__).resolve().parent
METRIC = "eval_accuracy_digits"
RUNS = {  # label -> run name in `vsml reproduce cloning`'s runs folder
    "cloned V_M, relative ES": "es_from_clone",
    "random V_M, plain ES": "es_from_random",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs/reproduce/cpu-small")
    runs_dir = Path(parser.parse_args().runs_dir)
    curves = {}
    for label, name in RUNS.items():
        run = runs_dir / name
        with tempfile.TemporaryDirectory() as scratch:  # the trainer's evaluation of the starting V_M
            start = MetaTrainer(load_experiment(run / "config.yaml"), scratch).evaluate()[METRIC]
        logged = [(r["iteration"], r[METRIC]) for r in read_metrics(run) if METRIC in r]
        curves[label] = {"run": str(run), "iterations": [0] + [i for i, _ in logged],
                         "accuracy": [start] + [a for _, a in logged]}  # fmt: skip
    results = round_floats({"metric": METRIC, "runs": curves}, RESULTS_DIGITS)
    write_text_atomically(HERE / "es_from_clone_vs_random.json", json.dumps(results, indent=1))
    plot_meta_training(
        {label: [{"iteration": i, METRIC: a} for i, a in zip(c["iterations"], c["accuracy"], strict=True)]
         for label, c in curves.items()},  # fmt: skip
        METRIC,
        HERE / "es_from_clone_vs_random.png",
        "ES meta-training on digits from the cloned backprop V_M and from a random V_M "
        "(held-out digits, 32 episodes x 100 online steps)",
        chance=0.1,
        ylabel="mean online accuracy, held-out digits",
    )


if __name__ == "__main__":
    main()
