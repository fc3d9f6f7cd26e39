"""`vsml` command line: meta-train a learning algorithm, meta-test it, compare it with baselines.

Each command lives in its own module of `vsml.cli` (`meta_train`, `evaluate`, ...): `add_parser` declares its
flags, `run` parses, calls the library and prints. This module assembles the parser, runs the chosen command,
turns bad input into one line on stderr (exit 2) and Ctrl-C into exit 130 with what was kept.
"""

from __future__ import annotations

import argparse
import os
import sys

from vsml.cli import (
    clone,
    compare,
    docs,
    evaluate,
    export_pretrained,
    introspect,
    list_pretrained,
    meta_train,
    reproduce,
    suite,
    sweep_lr,
)
from vsml.cli.common import positive_int

# Every command by name, in the order `vsml --help` lists them; each module has `add_parser` and `run`.
COMMANDS = {
    "meta-train": meta_train,
    "evaluate": evaluate,
    "sweep-lr": sweep_lr,
    "reproduce": reproduce,
    "compare": compare,
    "introspect": introspect,
    "suite": suite,
    "clone": clone,
    "list-pretrained": list_pretrained,
    "export-pretrained": export_pretrained,
    "docs": docs,
}


def _use_cpu_cores(count: int) -> None:
    """Expose `count` CPU devices so the ES population is split over the cores (spec §9: ≈1.2× on 2 cores).

    Must run before JAX creates its backend; an explicit setting in $XLA_FLAGS wins.
    """
    from vsml.meta.parallel import CPU_DEVICES_FLAG, with_cpu_devices

    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and CPU_DEVICES_FLAG not in flags:
        os.environ["XLA_FLAGS"] = with_cpu_devices(flags, count)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsml", description="Meta-learned learning algorithms (VSML, BLUR and baselines) in JAX."
    )
    parser.add_argument(
        "--cpu-devices",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="CPU devices to split the population over (default: the number of cores)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that a flag the command does not take is reported by that command's parser (its
    usage line and `vsml COMMAND: error:`), not by the top-level one."""
    parser = _build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _use_cpu_cores(args.cpu_devices)
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, OSError, ImportError) as error:
        # Bad input (and unreadable or unwritable paths: OSError names the file) gets one clear line, not a
        # traceback; the message names the thing and the fix.
        print(f"vsml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return INTERRUPTED


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command left behind, and how to go on."""
    if args.command == "meta-train":
        from vsml.run.checkpoint import latest_checkpoint

        checkpoint = latest_checkpoint(args.out)
        if checkpoint is None:
            return f"no checkpoint was written to {args.out} yet; the same command starts the run afresh"
        return (
            f"the last checkpoint ({checkpoint.name}) is intact; continue with the same command and --resume"
        )
    if args.command == "reproduce":
        return "the same command reuses finished runs and resumes the partial one from its last checkpoint"
    return "every file it had written is complete (they are written atomically)"


def entry_point() -> None:
    """The `vsml` console command."""
    code = main()
    if code == INTERRUPTED:
        # Leave without the interpreter's teardown: after Ctrl-C during compilation XLA's threads are still
        # running, and tearing the runtime down under them segfaulted (exit 139 instead of 130). Every file the
        # commands write is already complete (written atomically).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
