"""`vsml sweep-lr`: learning-rate sweeps of the online SGD/Adam baselines (`vsml.evaluation.sweep`), printed and
written (`vsml.report.sweep`)."""

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
from vsml.evaluation.defaults import TUNE_SEED


def add_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep-lr",
        help="tune the learning rates of the online SGD/Adam baselines",
        description="Mean online accuracy of each learning rate for every dataset x optimizer x architecture, "
        "on the same episodes; writes lr_sweep.json and lr_sweep.md into --out.",
    )
    sweep.add_argument("--datasets", required=True, help="comma-separated datasets, e.g. mnist,fashion_mnist")
    sweep.add_argument("--optimizers", default="sgd,adam", help="comma-separated: sgd, adam (default: both)")
    sweep.add_argument(
        "--hidden",
        default="0,160",
        help="comma-separated architectures: 0 = linear, 160 = one tanh layer of 160, 128x64 = two layers "
        "(default: 0,160)",
    )
    sweep.add_argument(
        "--rates",
        help="comma-separated learning rates for every optimizer, e.g. 0.001,0.01,0.1 "
        "(default: the grids `vsml evaluate` sweeps, per optimizer)",
    )
    sweep.add_argument("--episodes", type=positive_int, default=32, help="episodes per rate (default: 32)")
    sweep.add_argument(
        "--length",
        type=positive_int,
        default=500,
        help="online steps per episode (default 500); tune at the length you compare at",
    )
    sweep.add_argument(
        "--seed",
        type=int,
        default=TUNE_SEED,
        help=f"episode key (default: {TUNE_SEED}, the key `vsml evaluate` tunes with)",
    )
    sweep.add_argument(
        "--split", default="train", choices=("train", "test"), help="dataset split (default: train)"
    )
    sweep.add_argument("--out", type=Path, required=True, help="directory for lr_sweep.json and lr_sweep.md")
    add_data_dir(sweep)
    add_overrides(
        sweep, "transform.* or task.normalisation, e.g. --set transform.pad_input_to=[28,28,1] (repeatable)"
    )
    add_quiet(sweep)


def run(args: argparse.Namespace) -> int:
    from vsml.config import apply_overrides
    from vsml.evaluation.sweep import sweep_learning_rates
    from vsml.report.sweep import sweep_table, write_sweep
    from vsml.run.experiment import experiment_from_dict

    for override in args.overrides:
        if not override.strip().startswith(SWEEP_OVERRIDE_KEYS):
            raise ValueError(
                f"--set {override!r}: sweep-lr accepts only transform.* and task.normalisation, "
                "e.g. --set transform.pad_input_to=[28,28,1]"
            )
    config = experiment_from_dict(apply_overrides({}, args.overrides))
    writable_directory(args.out)
    rates = None
    if args.rates is not None:
        rates = [parse_learning_rate(r) for r in comma_list(args.rates, "--rates", "0.001,0.01,0.1")]
    report = sweep_learning_rates(
        comma_list(args.datasets, "--datasets", "mnist,fashion_mnist"),
        optimizers=[o.lower() for o in comma_list(args.optimizers, "--optimizers", "sgd,adam")],
        hidden_sizes_options=[parse_hidden_sizes(h) for h in comma_list(args.hidden, "--hidden", "0,160")],
        rates=rates,
        num_episodes=args.episodes,
        length=args.length,
        seed=args.seed,
        data_dir=args.data_dir,
        transform=config.transform,
        normalisation=config.task.normalisation,
        split=args.split,
        quiet=args.quiet,
    )
    print(sweep_table(report))
    for path in write_sweep(report, args.out):
        print(f"wrote {path}")
    return 0


def parse_hidden_sizes(item: str) -> tuple[int, ...]:
    """ "0" -> () (linear), "160" -> (160,), "128x64" -> (128, 64)."""
    try:
        sizes = tuple(int(part) for part in item.lower().split("x"))
    except ValueError:
        sizes = None
    if sizes == (0,):
        return ()
    if not sizes or any(h < 1 for h in sizes):
        raise ValueError(
            f"--hidden item {item!r} is not an architecture: use 0 (linear), 160 (one tanh layer) or 128x64"
        )
    return sizes


def parse_learning_rate(item: str) -> float:
    try:
        return float(item)
    except ValueError:
        raise ValueError(f"--rates item {item!r} is not a number: e.g. --rates 0.001,0.01,0.1") from None


# A sweep trains no meta-learner, so only the settings that change its episodes may be overridden.
SWEEP_OVERRIDE_KEYS = ("transform.", "task.normalisation=")
