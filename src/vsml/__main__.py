"""`python -m vsml`: the `vsml` command."""

from vsml.cli import entry_point

entry_point()
