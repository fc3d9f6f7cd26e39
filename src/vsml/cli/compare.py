"""`vsml compare`: the dataset-generalisation grid (`vsml.evaluation.grid`), printed and written
(`vsml.report.grid`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsml.cli.common import (
    add_data_dir,
    add_overrides,
    add_quiet,
    comma_list,
    positive_int,
    writable_directory,
)
from vsml.evaluation.defaults import EVAL_SEED


def add_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare",
        help="the dataset-generalisation grid: runs and hand-designed optimisers on the same episodes",
        description="Mean online accuracy (± 95% interval over episodes) of every contender on every dataset, "
        "on the same held-out episodes; datasets a run was meta-trained on are marked. Hand-designed "
        "optimisers (sgd, adam, sgd-160, adam-160) get a learning rate tuned per dataset on the training "
        "split. Writes grid.json, grid.md and grid.png into --out.",
    )
    compare.add_argument(
        "contenders",
        nargs="+",
        metavar="RUN_OR_LEARNER",
        help="run directories, or sgd, adam, sgd-160, adam-160",
    )
    compare.add_argument("--datasets", required=True, help="comma-separated meta-test datasets")
    compare.add_argument(
        "--episodes", type=positive_int, default=16, help="held-out episodes per dataset (default 16)"
    )
    compare.add_argument(
        "--length", type=positive_int, default=500, help="online steps per episode (default 500)"
    )
    compare.add_argument(
        "--seed", type=int, default=EVAL_SEED, help=f"evaluation seed (default {EVAL_SEED}, spec §2)"
    )
    compare.add_argument("--out", type=Path, required=True, help="where to write the grid")
    add_data_dir(compare)
    add_overrides(
        compare, "change every contender's meta-test setting, e.g. transform.project=true (repeatable)"
    )
    compare.add_argument(
        "--invariances",
        action="store_true",
        help="the Sec. 4.3 invariance table: every dataset under 5 classes, 10 classes, 48×48, 21×21, a new "
        "random projection and shuffled pixels",
    )
    add_quiet(compare)


def run(args: argparse.Namespace) -> int:
    from vsml.evaluation.grid import contenders_from_arguments, generalisation_grid, invariance_grid
    from vsml.report.grid import grid_table, write_grid

    datasets = comma_list(args.datasets, "--datasets", "mnist,fashion_mnist")
    writable_directory(args.out)
    options = dict(
        num_episodes=args.episodes,
        length=args.length,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=not args.quiet,
    )
    if args.invariances:
        report = invariance_grid(args.contenders, datasets, overrides=args.overrides, **options)
    else:
        report = generalisation_grid(
            contenders_from_arguments(args.contenders, args.overrides), datasets, **options
        )
    caption = "Command: vsml compare " + " ".join(args.contenders) + f" --datasets {args.datasets}"
    caption += f" --episodes {args.episodes} --length {args.length} --seed {args.seed}"
    caption += "".join(f" --set {o}" for o in args.overrides) + (" --invariances" if args.invariances else "")
    print(grid_table(report))
    for path in write_grid(report, args.out, caption=caption):
        print(f"wrote {path}")
    return 0
