"""`vsml reproduce NAME`: run a named paper experiment end to end (`vsml.reproduce.recipes`)."""

from __future__ import annotations

import argparse
import shlex
import textwrap
from pathlib import Path

from vsml.cli.common import add_data_dir, add_quiet

# meta_efficiency.BUDGET_SECONDS / 60 (a test keeps them equal; importing it here would load JAX for --help)
DEFAULT_BUDGET_MINUTES = 15.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="run a named paper experiment end to end and write its report into reports/NAME/",
        description="Meta-train every run of experiment NAME (finished runs are reused, partial ones resumed), "
        "then meta-test, compare and introspect them as the paper does; writes README.md (the equivalent "
        "commands, scale, date, wall times, tables) and the PNGs into --reports-dir/NAME/. "
        "`vsml reproduce --list` names the experiments.",
    )
    reproduce.add_argument("name", nargs="?", metavar="NAME", help="experiment name (see --list)")
    reproduce.add_argument("--list", action="store_true", help="list the experiments with descriptions")
    reproduce.add_argument(
        "--scale",
        default="cpu-small",
        metavar="{cpu-small,paper}",
        help="cpu-small (the configs' reduced scale for 2 CPU cores, default) or paper (the configs as they "
        "are: a GPU job)",
    )
    reproduce.add_argument(
        "--runs-dir", type=Path, default=Path("runs/reproduce"), help="where runs go (default runs/reproduce)"
    )
    reproduce.add_argument(
        "--reports-dir", type=Path, default=Path("reports"), help="where NAME/ is written (default reports)"
    )
    add_data_dir(reproduce)
    reproduce.add_argument(
        "--dry-run", action="store_true", help="print the equivalent vsml commands; run nothing"
    )
    study = reproduce.add_argument_group("meta_efficiency only (a study of variants x seeds)")
    study.add_argument("--variants", help="comma-separated variant names (default: all)")
    study.add_argument("--seeds", help="comma-separated seeds (default: 0,1,2)")
    study.add_argument(
        "--confirm", action="store_true", help="run the default variant on the fresh confirmation seeds"
    )
    study.add_argument(
        "--budget-minutes", type=float, default=DEFAULT_BUDGET_MINUTES,
        help=f"wall clock per run (default {DEFAULT_BUDGET_MINUTES:g})",
    )  # fmt: skip
    add_quiet(reproduce)


def run(args: argparse.Namespace) -> int:
    from vsml.reproduce import meta_efficiency
    from vsml.reproduce.recipes import describe, plan, reproduce

    if args.list:
        print(describe(), end="")
        described = textwrap.fill(
            meta_efficiency.DESCRIPTION, 100, initial_indent="  ", subsequent_indent="  "
        )
        print(f"\n{meta_efficiency.NAME}\n{described}")
        return 0
    if not args.name:
        raise ValueError("name an experiment, e.g. `vsml reproduce demo`; `vsml reproduce --list` lists them")
    if args.name == meta_efficiency.NAME:
        return _run_study(args)
    commands = plan(args.name, args.scale, args.runs_dir, args.reports_dir, args.data_dir)
    if args.dry_run:
        print("\n".join(commands))
        return 0
    written = reproduce(
        args.name, args.scale, args.runs_dir, args.reports_dir, args.data_dir, progress=not args.quiet
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def _numbers(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--{what} takes comma-separated integers, e.g. 0,1,2; got {text!r}") from None


def _study_command(args: argparse.Namespace) -> str:
    words = ["vsml", "reproduce", args.name]
    words += [] if str(args.reports_dir) == "reports" else ["--reports-dir", str(args.reports_dir)]
    for flag, value in (("--variants", args.variants), ("--seeds", args.seeds)):
        words += [flag, value] if value else []
    words += ["--confirm"] if args.confirm else []
    words += [] if args.budget_minutes == DEFAULT_BUDGET_MINUTES else ["--budget-minutes", f"{args.budget_minutes:g}"]
    return " ".join(shlex.quote(word) for word in words)


def _run_study(args: argparse.Namespace) -> int:
    from vsml.reproduce import meta_efficiency

    if args.budget_minutes <= 0:
        raise ValueError(f"--budget-minutes must be positive, got {args.budget_minutes}")
    variants = tuple(args.variants.split(",")) if args.variants else None
    seeds = _numbers(args.seeds, "seeds") or meta_efficiency.SEEDS
    for name in variants or ():
        meta_efficiency.check_variant(name)
    if args.dry_run:
        names = variants or tuple(meta_efficiency.VARIANTS)
        print("\n".join(f"{name} seed {seed}" for name in names for seed in seeds))
        return 0
    written = meta_efficiency.reproduce_meta_efficiency(
        args.reports_dir, variants, seeds, confirm=args.confirm, budget_seconds=60 * args.budget_minutes,
        data_dir=args.data_dir, progress=not args.quiet,
        command=_study_command(args),
    )  # fmt: skip
    for path in written:
        print(f"wrote {path}")
    return 0
