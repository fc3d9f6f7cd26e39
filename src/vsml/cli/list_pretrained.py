"""`vsml list-pretrained`: one line per pretrained learning algorithm (`vsml.pretrained.load`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser(
        "list-pretrained",
        help="list the pretrained learning algorithms shipped with vsml (vsml.load_pretrained(NAME))",
        description="One line per pretrained LA: name, learner, what it was meta-trained on, its meta-test result.",
    )
    listing.add_argument(
        "--dir",
        type=Path,
        help="a folder of exported LAs (export-pretrained --out; load with vsml.load_pretrained(NAME, DIR)) "
        "instead of the shipped ones",
    )


def run(args: argparse.Namespace) -> int:
    from vsml.pretrained.load import describe_pretrained

    if args.dir is not None and not args.dir.is_dir():
        raise FileNotFoundError(f"--dir {args.dir} is not a folder of pretrained LAs (NAME.npz + NAME.json)")
    lines = describe_pretrained(args.dir)
    print("\n".join(lines) or f"no pretrained learning algorithms in {args.dir or 'this installation'}")
    return 0
