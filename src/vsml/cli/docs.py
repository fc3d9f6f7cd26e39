"""`vsml docs [--check] [FILES...]`: fill the generated blocks and values of the Markdown files from the JSON they
name (`vsml.report.generated`), or with --check list the stale ones and exit 1 without writing."""

from __future__ import annotations

import argparse
from pathlib import Path

# The files the command fills by default, relative to the repository root.
DEFAULT_FILES = ("README.md", "docs/*.md", "reports/README.md", "reports/*/README.md")
STALE = 1  # --check's exit status when a block differs from its JSON


def add_parser(commands: argparse._SubParsersAction) -> None:
    docs = commands.add_parser(
        "docs",
        help="fill the generated numbers and tables of the Markdown files from their JSON (--check: list stale)",
        description="Rewrites, in place and atomically, every `<!-- generated: ... -->` marker's body from the "
        "committed JSON it names (syntax: docs/index.md, Generated numbers). With --check nothing is written: "
        f"each stale marker is listed as FILE:LINE and the exit status is {STALE}.",
    )
    docs.add_argument(
        "files",
        nargs="*",
        type=Path,
        help=f"Markdown files (default: {', '.join(DEFAULT_FILES)} under the repository root)",
    )
    docs.add_argument("--check", action="store_true", help="write nothing; list stale markers, exit 1 if any")


def default_files(root: Path) -> list[Path]:
    """README.md, docs/*.md, reports/README.md and reports/*/README.md under `root`, those that exist, sorted
    within each pattern."""
    return [path for pattern in DEFAULT_FILES for path in sorted(root.glob(pattern)) if path.is_file()]


def run(args: argparse.Namespace) -> int:
    from vsml.atomic import write_text_atomically
    from vsml.report.generated import render, repository_root, stale_markers

    root = repository_root(Path.cwd())
    files = args.files or default_files(root)
    stale = []
    for path in files:
        if not path.is_file():
            raise ValueError(f"no Markdown file {path}: name existing files, or none for the defaults")
        name = _shown(path, root)
        text = path.read_text()
        if args.check:
            stale += [f"{name}:{marker.line}: {marker.kind} {' '.join(marker.args)}" for marker in
                      stale_markers(text, root, name)]  # fmt: skip
            continue
        rendered = render(text, root, name)
        if rendered != text:
            write_text_atomically(path, rendered)
            print(f"updated {name}")
    if args.check:
        for line in stale:
            print(line)
        print(f"{len(stale)} stale marker(s); `vsml docs` rewrites them" if stale else "every marker is up to date")
        return STALE if stale else 0
    return 0


def _shown(path: Path, root: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
