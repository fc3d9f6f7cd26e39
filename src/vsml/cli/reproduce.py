"""`vsml reproduce NAME`: run a named paper experiment end to end (`vsml.reproduce.recipes`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsml.cli.common import add_data_dir, add_quiet


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
    add_quiet(reproduce)


def run(args: argparse.Namespace) -> int:
    from vsml.reproduce.recipes import describe, plan, reproduce

    if args.list:
        print(describe(), end="")
        return 0
    if not args.name:
        raise ValueError("name an experiment, e.g. `vsml reproduce demo`; `vsml reproduce --list` lists them")
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
