"""What the `vsml` commands share: argument types, the --quiet and --set flags, checks of output directories."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# The data folder's lookup order (vsml.tasks.datasets.resolve_data_dir), as every command's --data-dir states it.
DATA_DIR_HELP = "dataset folder (default: $VSML_DATA, then ../shared/datasets from the current directory)"


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)


def integer_or_environment(name: str):
    """An argparse `type` for a flag whose default is $name: argparse parses a string default only for the
    subcommand that uses it, so a malformed variable cannot break the other subcommands; empty means unset."""

    def parse(value: str) -> int | None:
        if not value.strip():
            return None
        try:
            return int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer (the flag or ${name}), got {value!r}"
            ) from None

    return parse


def positive_int(value: str) -> int:
    """An argparse `type` for counts and sizes: 0 or less is an error, not "use the default"."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def add_quiet(parser: argparse.ArgumentParser, help_text: str = "no progress bars") -> None:
    """`--quiet`, alias `--no-progress`: every command takes both spellings."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=help_text)


def writable_directory(path: Path, what: str = "--out") -> Path:
    """Check that `path`, the `what` directory (--out, or the run directory a report goes to by default), is a
    directory this process can write or create: before the work whose results go there, not after. Creates
    nothing (bad input must leave nothing behind)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file; --out names a directory (it is created if missing)")
    existing = next(p for p in (path, *path.parents) if p.exists())  # the directory it would be created in
    if not existing.is_dir():
        raise ValueError(f"cannot create {what} {path}: {existing} is a file; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        action = "not writable" if existing == path else f"not creatable ({existing} is not writable)"
        raise ValueError(f"{what} {path} is {action} by this user; write elsewhere with --out")
    return path


def report_directory(out: Path | None, run_dir: Path) -> Path:
    """Where a report on a run goes, checked before the work: --out, else the run's own directory."""
    return writable_directory(out, "--out") if out else writable_directory(run_dir, "the run directory")


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable `--set KEY=VALUE` option every command shares."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def comma_list(text: str, flag: str, example: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(
            f"{flag} {text!r} has an empty item: give a comma-separated list, e.g. {flag} {example}"
        )
    return items
