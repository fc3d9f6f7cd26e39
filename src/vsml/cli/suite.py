"""`vsml suite LA`: meta-test a learned LA on a fixed suite of unseen data sets against SGD and Adam tuned on
the same episodes (`vsml.evaluation.suite`), print the table and write the report (`vsml.report.suite`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from vsml.cli.common import add_data_dir, add_quiet, writable_directory


def add_parser(commands: argparse._SubParsersAction) -> None:
    suite = commands.add_parser(
        "suite",
        help="meta-test a learned LA on a fixed suite of unseen data sets against strictly tuned SGD and Adam",
        description="Every data set of the suite (default: general, the flagship LA's) with its split and "
        "protocol; online SGD and Adam (linear and one 160-tanh layer) with rates tuned on the very episodes they "
        "are scored on, per window (first steps; whole episode). Writes results.json, README.md and curves.png.",
    )
    suite.add_argument("learner", help="a pretrained LA's name (vsml list-pretrained), a run folder or checkpoint")
    suite.add_argument("--suite", default="general", help="a shipped suite's name or a YAML file (default general)")
    suite.add_argument("--out", type=Path, required=True, help="where to write the report")
    add_data_dir(suite)
    add_quiet(suite, "no progress lines")


def run(args: argparse.Namespace) -> int:
    from vsml.evaluation.suite import evaluate_suite, load_suite
    from vsml.pretrained.load import list_pretrained, load_pretrained
    from vsml.report.suite import suite_table, write_suite_report

    suite = load_suite(args.suite)
    out = writable_directory(args.out)
    if args.learner in list_pretrained():
        pretrained = load_pretrained(args.learner)
        learner, meta, name = pretrained.learner, pretrained.meta, args.learner
    else:
        from vsml.evaluation.meta_test import load_trained_run

        trained = load_trained_run(args.learner)
        learner, meta, name = trained.learner, trained.meta, f"{args.learner} (iteration {trained.iteration})"
    progress = None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True)
    results = {"learner": name, **evaluate_suite(learner, meta, suite, data_dir=args.data_dir, progress=progress)}
    print(suite_table(results))
    command = shlex.join(["vsml", *sys.argv[1:]]) if sys.argv[1:2] == ["suite"] else f"vsml suite {args.learner}"
    for path in write_suite_report(results, out, command):
        print(f"wrote {path}")
    return 0
