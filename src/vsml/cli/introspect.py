"""`vsml introspect RUN`: class probabilities by earlier examples (`vsml.evaluation.introspect`), printed and
written (`vsml.report.introspect`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vsml.cli.common import add_data_dir, add_overrides, add_quiet, positive_int, report_directory
from vsml.evaluation.defaults import EVAL_SEED


def add_parser(commands: argparse._SubParsersAction) -> None:
    introspect = commands.add_parser(
        "introspect",
        help="class probabilities over short episodes: how fast a class is recognised (VSML paper Sec. 5)",
        description="Run a trained learner and online SGD (learning rate tuned on the training split) on the "
        "same short held-out episodes of a few classes; report the probability of the true class by the "
        "number k of earlier labelled examples of that class. For a BLUR run, also the asymmetry of its update "
        "Jacobian (BLUR paper Sec. 3.5). Writes introspection.json and introspection.png into --out.",
    )
    introspect.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="run directory or checkpoint file; several (seeds of one recipe): each on the same episodes, "
        "with their mean and 95%% interval over runs",
    )
    introspect.add_argument("--dataset", help="an array dataset (default: the config's first eval dataset)")
    introspect.add_argument(
        "--length", type=positive_int, default=30, help="online steps per episode (default 30)"
    )
    introspect.add_argument("--ways", type=positive_int, default=5, help="classes per episode (default 5)")
    introspect.add_argument(
        "--episodes", type=positive_int, default=32, help="held-out episodes (default 32)"
    )
    introspect.add_argument(
        "--seed", type=int, default=EVAL_SEED, help=f"episode key (default {EVAL_SEED}, spec §2)"
    )
    introspect.add_argument("--no-sgd", action="store_true", help="skip the online-SGD comparison")
    introspect.add_argument("--out", type=Path, help="where to write the report (default: the run directory)")
    add_data_dir(introspect)
    add_overrides(
        introspect, "change the meta-test setting, e.g. --set task.normalisation=dataset (repeatable)"
    )
    add_quiet(introspect, "no progress messages")


def run(args: argparse.Namespace) -> int:
    from vsml.evaluation.introspect import introspect_runs
    from vsml.evaluation.meta_test import load_trained_run
    from vsml.report.introspect import asymmetry_lines, introspection_table, write_introspection

    runs = [load_trained_run(path, args.overrides) for path in args.runs]
    out = report_directory(args.out, runs[0].path)
    report = introspect_runs(
        runs,
        [str(path) for path in args.runs],
        dataset=args.dataset,
        length=args.length,
        ways=args.ways,
        episodes=args.episodes,
        seed=args.seed,
        data_dir=args.data_dir,
        sgd=not args.no_sgd,
        log=None if args.quiet else lambda message: print(f"introspect: {message}", file=sys.stderr),
    )
    print(introspection_table(report))
    for line in asymmetry_lines(report):
        print(line)
    for path in write_introspection(report, out):
        print(f"wrote {path}")
    return 0
