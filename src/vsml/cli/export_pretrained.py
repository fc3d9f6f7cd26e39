"""`vsml export-pretrained RUN --name NAME`: a run as a pretrained LA (`vsml.pretrained.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsml.cli.common import writable_directory


def add_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-pretrained",
        help="turn a meta-trained, meta-tested run into a pretrained LA (NAME.npz + NAME.json)",
        description="Writes the run's meta-parameters and a JSON description (learner, meta-training chain and "
        "configs, commands and wall times, git commit, meta-test table from evaluation.json, a reference "
        "evaluation on scikit-learn's digits) into --out, or with --into-package into the installed package's "
        "pretrained folder (which holds the shipped LAs).",
    )
    export.add_argument("run", type=Path, help="run directory or checkpoint, meta-tested by `vsml evaluate`")
    export.add_argument("--name", required=True, help="the name load_pretrained will know it by")
    export.add_argument("--evaluation", type=Path, help="evaluation.json (default: the run directory's)")
    export.add_argument(
        "--commands", type=Path, help='JSON lines {"command": ..., "wall_seconds": ...} that made the run'
    )
    export.add_argument("--description", default="", help="one sentence on what it is")
    destination = export.add_mutually_exclusive_group(required=True)
    destination.add_argument("--out", type=Path, help="output folder (`vsml list-pretrained --dir` lists it)")
    destination.add_argument(
        "--into-package",
        action="store_true",
        help="write into the installed package's pretrained folder, beside the shipped LAs",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace an existing NAME in the output folder (the package's folder holds the shipped LAs)",
    )


def run(args: argparse.Namespace) -> int:
    from vsml.pretrained.export import export_pretrained

    if args.out is not None:
        writable_directory(args.out)
    paths = export_pretrained(
        args.run,
        args.name,
        out_dir=args.out,
        into_package=args.into_package,
        evaluation=args.evaluation,
        commands=args.commands,
        description=args.description,
        overwrite=args.force,
    )
    for path in paths:
        print(f"wrote {path}")
    return 0
