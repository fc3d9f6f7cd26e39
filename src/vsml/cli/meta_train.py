"""`vsml meta-train CONFIG --out R`: meta-train a learning algorithm (`vsml.run.trainer.MetaTrainer`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vsml.cli.common import add_data_dir, add_overrides, add_quiet, integer_or_environment, writable_directory


def add_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "meta-train",
        help="meta-train a learning algorithm from a YAML config",
        description="Meta-train the learner of CONFIG by its meta_optimizer (es: evolution strategies, cmaes, "
        "or grad: backprop through the unrolled inner loop); writes checkpoints, "
        "metrics.jsonl and config.yaml into --out.",
    )
    train.add_argument(
        "config",
        type=Path,
        help="experiment YAML: a path, or a shipped config's name (e.g. demo_digits, blur/mnist_cmaes)",
    )
    train.add_argument("--out", type=Path, required=True, help="run directory")
    add_overrides(train, "override a config value, e.g. --set es.num_pairs=32 (repeatable)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    add_data_dir(train)
    add_quiet(train)
    processes = train.add_argument_group(
        "several processes (hosts)",
        "One run over the devices of several processes, on jax.distributed: start the same command once per "
        "process. Each flag defaults to its environment variable; any still unset is left to JAX, which reads "
        "$JAX_COORDINATOR_ADDRESS and detects SLURM (srun), Open MPI (mpirun) and Cloud TPU by itself. "
        "Process 0 writes checkpoints and metrics; --out must be on a filesystem every process sees. A run "
        "resumes with any number of processes.",
    )
    processes.add_argument(
        "--coordinator",
        default=os.environ.get("VSML_COORDINATOR"),
        metavar="HOST:PORT",
        help="address of process 0 and a free port on it (default: $VSML_COORDINATOR)",
    )
    processes.add_argument(
        "--num-processes",
        type=integer_or_environment("VSML_NUM_PROCESSES"),
        default=os.environ.get("VSML_NUM_PROCESSES"),
        metavar="N",
        help="number of processes (default: $VSML_NUM_PROCESSES)",
    )
    processes.add_argument(
        "--process-id",
        type=integer_or_environment("VSML_PROCESS_ID"),
        default=os.environ.get("VSML_PROCESS_ID"),
        metavar="I",
        help="this process, 0 … N-1 (default: $VSML_PROCESS_ID)",
    )
    processes.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run even with none of the three set, leaving all to JAX's detection "
        "(e.g. `srun vsml meta-train … --distributed`)",
    )


def run(args: argparse.Namespace) -> int:
    flags = (args.coordinator, args.num_processes, args.process_id)
    if args.distributed or any(flag is not None for flag in flags):
        # First: jax.distributed must start before anything creates a JAX backend.
        from vsml.meta.parallel import initialize_processes

        initialize_processes(*flags)
    from vsml.meta.parallel import is_main_process
    from vsml.run.checkpoint import latest_checkpoint
    from vsml.run.experiment import load_experiment
    from vsml.run.trainer import METRICS_FILE, MetaTrainer

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    config = load_experiment(args.config, overrides)
    writable_directory(args.out)  # on every process, so that they all stop together
    if is_main_process() and latest_checkpoint(args.out) is None:
        if args.resume:
            print(f"{args.out} holds no checkpoint yet: starting a new run there", file=sys.stderr)
        if (args.out / METRICS_FILE).exists():
            print(
                f"{args.out / METRICS_FILE} is from a start interrupted before its first checkpoint: replaced",
                file=sys.stderr,
            )
    trainer = MetaTrainer(config, args.out, resume=args.resume)
    if trainer.iteration >= config.train.iterations:
        print(
            f"{args.out} is already at iteration {trainer.iteration} of {config.train.iterations}; nothing to do"
        )
        return 0
    last = trainer.run(progress=not args.quiet)
    if not is_main_process():  # process 0 reports for the run
        return 0
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float))
    print(f"meta-training done: iteration {trainer.iteration}; {summary}")
    if trainer.total_nonfinite:
        print(f"warning: {trainer.total_nonfinite} population pairs had non-finite losses and were skipped")
    print(f"run directory: {args.out}")
    return 0
