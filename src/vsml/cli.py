"""`vsml` command line: meta-train a learning algorithm, meta-test it, compare it with baselines."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _use_cpu_cores(count: int) -> None:
    """Expose `count` CPU devices so the ES population is split over the cores (spec §9: ≈1.2× on 2 cores).

    Must run before JAX creates its backend; an explicit setting in $XLA_FLAGS wins.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsml", description="Meta-learned learning algorithms (VSML, BLUR and baselines) in JAX."
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU devices to split the population over (default: the number of cores)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "meta-train",
        help="meta-train a learning algorithm from a YAML config",
        description="Meta-train the learner of CONFIG by evolution strategies; writes checkpoints, "
        "metrics.jsonl and config.yaml into --out.",
    )
    train.add_argument("config", type=Path, help="experiment YAML (see configs/)")
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set es.num_pairs=32 (repeatable)",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    train.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="meta-test a trained run against its untrained start, online SGD/Adam and chance",
        description="Online accuracy on held-out episodes; writes evaluation.json, evaluation.md and "
        "learning-curve PNGs into the run directory (or --out).",
    )
    evaluate.add_argument("run", type=Path, help="run directory or checkpoint file")
    evaluate.add_argument(
        "--datasets", help="comma-separated meta-test datasets (default: the config's eval.datasets)"
    )
    evaluate.add_argument("--episodes", type=int, help="number of held-out episodes")
    evaluate.add_argument("--length", type=int, help="online steps per episode")
    evaluate.add_argument(
        "--no-baselines", action="store_true", help="skip the SGD/Adam learning-rate sweeps"
    )
    evaluate.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    evaluate.add_argument("--out", type=Path, help="where to write the report (default: the run directory)")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the meta-test setting, e.g. --set transform.shuffle=true (repeatable)",
    )
    return parser


def _meta_train(args: argparse.Namespace) -> int:
    from vsml.experiment import load_experiment
    from vsml.meta.trainer import MetaTrainer

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    config = load_experiment(args.config, overrides)
    trainer = MetaTrainer(config, args.out, resume=args.resume)
    if trainer.iteration >= config.train.iterations:
        print(
            f"{args.out} is already at iteration {trainer.iteration} of {config.train.iterations}; nothing to do"
        )
        return 0
    last = trainer.run(progress=not args.no_progress)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float))
    print(f"meta-training done: iteration {trainer.iteration}; {summary}")
    if trainer.total_nonfinite:
        print(f"warning: {trainer.total_nonfinite} population pairs had non-finite losses and were skipped")
    print(f"run directory: {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from vsml.meta_test import load_trained_run, meta_test, report_tables, write_report

    run = load_trained_run(args.run, args.overrides)
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip()) if args.datasets else None
    report = meta_test(
        run,
        datasets=datasets,
        num_episodes=args.episodes,
        length=args.length,
        baselines=not args.no_baselines,
        data_dir=args.data_dir,
    )
    print(report_tables(report))
    for path in write_report(report, args.out or run.path):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _use_cpu_cores(args.cpu_devices)
    handlers = {"meta-train": _meta_train, "evaluate": _evaluate}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        # Bad input gets one clear line, not a traceback; the message names the thing and the fix.
        print(f"vsml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (the last checkpoint is intact)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
