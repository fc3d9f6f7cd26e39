"""`vsml evaluate RUN...`: meta-test runs (`vsml.evaluation.meta_test`), print and write the report
(`vsml.report.meta_test`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsml.cli.common import add_data_dir, add_overrides, add_quiet, comma_list, positive_int, report_directory


def add_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="meta-test a trained run against its untrained start, online SGD/Adam and chance",
        description="Online accuracy and loss per step on held-out episodes (mean and final step, ± 95% "
        "interval over episodes); writes evaluation.json, evaluation.md, evaluation.csv and learning-curve PNGs "
        "into the run directory (or --out). Several runs (seeds of one config) are meta-tested on the same "
        "episodes and also summarised as mean ± 95% over runs.",
    )
    evaluate.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="run directories or checkpoint files (several: seeds)",
    )
    evaluate.add_argument(
        "--datasets", help="comma-separated meta-test datasets (default: the config's eval.datasets)"
    )
    evaluate.add_argument(
        "--episodes",
        type=positive_int,
        help="number of held-out episodes (default: the config's eval.num_episodes)",
    )
    evaluate.add_argument(
        "--length",
        type=positive_int,
        help="online steps per episode (default: the config's eval.episode_length)",
    )
    evaluate.add_argument(
        "--no-baselines", action="store_true", help="skip the SGD/Adam learning-rate sweeps"
    )
    add_data_dir(evaluate)
    evaluate.add_argument("--out", type=Path, help="where to write the report (default: the run directory)")
    add_quiet(evaluate)
    add_overrides(evaluate, "change the meta-test setting, e.g. --set transform.shuffle=true (repeatable)")


def run(args: argparse.Namespace) -> int:
    from vsml.evaluation.meta_test import load_trained_run, meta_test_runs
    from vsml.report.meta_test import report_tables, write_report

    if len(args.runs) > 1 and not args.out:
        raise ValueError("several runs need --out: where to write their combined report")
    runs = [load_trained_run(path, args.overrides) for path in args.runs]
    out = report_directory(args.out, runs[0].path)
    datasets = (
        tuple(comma_list(args.datasets, "--datasets", "mnist,fashion_mnist")) if args.datasets else None
    )
    report = meta_test_runs(
        runs,
        [str(path) for path in args.runs],
        datasets,
        args.episodes,
        args.length,
        baselines=not args.no_baselines,
        data_dir=args.data_dir,
        progress=not args.quiet,
    )
    print(report_tables(report))
    for path in write_report(report, out):
        print(f"wrote {path}")
    return 0
