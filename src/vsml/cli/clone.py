"""`vsml clone CONFIG --out R`: clone online backprop into a VSML V_M and run it free
(`vsml.report.clone.run_clone`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsml.cli.common import add_data_dir, add_overrides, add_quiet, writable_directory


def add_parser(commands: argparse._SubParsersAction) -> None:
    clone = commands.add_parser(
        "clone",
        help="clone online backprop into a VSML V_M, then let it train networks forward-only (paper Sec. 3.2)",
        description="Learning-algorithm cloning (spec vsml.md §4): regress the VSML sub-RNN's messages and "
        "state onto a backprop teacher, then run the cloned VSML free on MNIST / Fashion-MNIST against the "
        "teacher from the same initial weights. Writes a checkpoint (V_M and codec; usable as "
        "train.init_from), clone.json, clone.md and learning-curve PNGs into --out.",
    )
    clone.add_argument(
        "config", type=Path, help="cloning YAML: a path, or a shipped config's name (e.g. cloning/backprop)"
    )
    clone.add_argument("--out", type=Path, required=True, help="run directory")
    add_overrides(clone, "override a config value, e.g. --set train.steps=100 (repeatable)")
    clone.add_argument("--eval-only", action="store_true", help="evaluate the checkpoint already in --out")
    clone.add_argument("--no-eval", action="store_true", help="clone only; skip the free-running evaluation")
    add_data_dir(clone)
    add_quiet(clone)


def run(args: argparse.Namespace) -> int:
    from vsml.config import load_config
    from vsml.meta.cloning import CloneConfig
    from vsml.report.clone import clone_markdown, run_clone

    if args.eval_only and args.no_eval:
        raise ValueError("--eval-only and --no-eval exclude each other")
    config = load_config(CloneConfig, args.config, args.overrides)
    writable_directory(args.out)
    summary = run_clone(
        config,
        args.out,
        evaluate=not args.no_eval,
        train=not args.eval_only,
        progress=not args.quiet,
        data_dir=args.data_dir,
    )
    print(clone_markdown(summary))
    print(f"wrote {args.out / 'clone.md'}")
    return 0
