"""`python -m vsml`: the `vsml` command."""

from vsml.cli.main import entry_point

entry_point()
