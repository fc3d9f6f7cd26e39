"""`vsml` command line: meta-train a learning algorithm, meta-test it, compare it with baselines."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _use_cpu_cores(count: int) -> None:
    """Expose `count` CPU devices so the ES population is split over the cores (spec §9: ≈1.2× on 2 cores).

    Must run before JAX creates its backend; an explicit setting in $XLA_FLAGS wins.
    """
    from vsml.meta.parallel import CPU_DEVICES_FLAG, with_cpu_devices

    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and CPU_DEVICES_FLAG not in flags:
        os.environ["XLA_FLAGS"] = with_cpu_devices(flags, count)


def _integer_or_environment(name: str):
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


def _positive_int(value: str) -> int:
    """An argparse `type` for counts and sizes: 0 or less is an error, not "use the default"."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _add_quiet(parser: argparse.ArgumentParser, help_text: str = "no progress bars") -> None:
    """`--quiet`, alias `--no-progress`: every command takes both spellings."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=help_text)


def _writable_directory(path: Path, what: str = "--out") -> Path:
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


def _report_directory(out: Path | None, run_dir: Path) -> Path:
    """Where a report on a run goes, checked before the work: --out, else the run's own directory."""
    return _writable_directory(out, "--out") if out else _writable_directory(run_dir, "the run directory")


def _add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable `--set KEY=VALUE` option every command shares."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsml", description="Meta-learned learning algorithms (VSML, BLUR and baselines) in JAX."
    )
    parser.add_argument(
        "--cpu-devices",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="CPU devices to split the population over (default: the number of cores)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "meta-train",
        help="meta-train a learning algorithm from a YAML config",
        description="Meta-train the learner of CONFIG by its meta_optimizer (es: evolution strategies, cmaes, "
        "or grad: backprop through the unrolled inner loop); writes checkpoints, "
        "metrics.jsonl and config.yaml into --out.",
    )
    train.add_argument("config", type=Path, help="experiment YAML (see configs/)")
    train.add_argument("--out", type=Path, required=True, help="run directory")
    _add_overrides(train, "override a config value, e.g. --set es.num_pairs=32 (repeatable)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    train.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    _add_quiet(train)
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
        type=_integer_or_environment("VSML_NUM_PROCESSES"),
        default=os.environ.get("VSML_NUM_PROCESSES"),
        metavar="N",
        help="number of processes (default: $VSML_NUM_PROCESSES)",
    )
    processes.add_argument(
        "--process-id",
        type=_integer_or_environment("VSML_PROCESS_ID"),
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

    evaluate = commands.add_parser(
        "evaluate",
        help="meta-test a trained run against its untrained start, online SGD/Adam and chance",
        description="Online accuracy and loss per step on held-out episodes (mean and final step, ± 95% "
        "interval over episodes); writes evaluation.json, evaluation.md, evaluation.csv and learning-curve PNGs "
        "into the run directory (or --out). Several runs (seeds of one config) are meta-tested on the same "
        "episodes and also summarised as mean ± 95% over runs.",
    )
    evaluate.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="run directories or checkpoint files (several: seeds)",
    )
    evaluate.add_argument(
        "--datasets", help="comma-separated meta-test datasets (default: the config's eval.datasets)"
    )
    evaluate.add_argument(
        "--episodes",
        type=_positive_int,
        help="number of held-out episodes (default: the config's eval.num_episodes)",
    )
    evaluate.add_argument(
        "--length",
        type=_positive_int,
        help="online steps per episode (default: the config's eval.episode_length)",
    )
    evaluate.add_argument(
        "--no-baselines", action="store_true", help="skip the SGD/Adam learning-rate sweeps"
    )
    evaluate.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    evaluate.add_argument("--out", type=Path, help="where to write the report (default: the run directory)")
    _add_quiet(evaluate)
    _add_overrides(evaluate, "change the meta-test setting, e.g. --set transform.shuffle=true (repeatable)")

    sweep = commands.add_parser(
        "sweep-lr",
        help="tune the learning rates of the online SGD/Adam baselines",
        description="Mean online accuracy of each learning rate for every dataset x optimizer x architecture, "
        "on the same episodes; writes lr_sweep.json and lr_sweep.md into --out.",
    )
    sweep.add_argument("--datasets", required=True, help="comma-separated datasets, e.g. mnist,fashion_mnist")
    sweep.add_argument("--optimizers", default="sgd,adam", help="comma-separated: sgd, adam (default: both)")
    sweep.add_argument(
        "--hidden",
        default="0,160",
        help="comma-separated architectures: 0 = linear, 160 = one tanh layer of 160, 128x64 = two layers "
        "(default: 0,160)",
    )
    sweep.add_argument(
        "--rates",
        help="comma-separated learning rates for every optimizer, e.g. 0.001,0.01,0.1 "
        "(default: the grids `vsml evaluate` sweeps, per optimizer)",
    )
    sweep.add_argument("--episodes", type=_positive_int, default=32, help="episodes per rate (default: 32)")
    sweep.add_argument(
        "--length",
        type=_positive_int,
        default=500,
        help="online steps per episode (default 500); tune at the length you compare at",
    )
    sweep.add_argument(
        "--seed", type=int, default=1, help="episode key (default: 1, the key `vsml evaluate` tunes with)"
    )
    sweep.add_argument(
        "--split", default="train", choices=("train", "test"), help="dataset split (default: train)"
    )
    sweep.add_argument("--out", type=Path, required=True, help="directory for lr_sweep.json and lr_sweep.md")
    sweep.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    _add_overrides(
        sweep, "transform.* or task.normalisation, e.g. --set transform.pad_input_to=[28,28,1] (repeatable)"
    )
    _add_quiet(sweep)
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
    reproduce.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    reproduce.add_argument(
        "--dry-run", action="store_true", help="print the equivalent vsml commands; run nothing"
    )
    _add_quiet(reproduce)
    compare = commands.add_parser(
        "compare",
        help="the dataset-generalisation grid: runs and hand-designed optimisers on the same episodes",
        description="Mean online accuracy (± 95% interval over episodes) of every contender on every dataset, "
        "on the same held-out episodes; datasets a run was meta-trained on are marked. Hand-designed "
        "optimisers (sgd, adam, sgd-160, adam-160) get a learning rate tuned per dataset on the training "
        "split. Writes grid.json, grid.md and grid.png into --out.",
    )
    compare.add_argument(
        "contenders",
        nargs="+",
        metavar="RUN_OR_LEARNER",
        help="run directories, or sgd, adam, sgd-160, adam-160",
    )
    compare.add_argument("--datasets", required=True, help="comma-separated meta-test datasets")
    compare.add_argument(
        "--episodes", type=_positive_int, default=16, help="held-out episodes per dataset (default 16)"
    )
    compare.add_argument(
        "--length", type=_positive_int, default=500, help="online steps per episode (default 500)"
    )
    compare.add_argument("--seed", type=int, default=22, help="evaluation seed (default 22, spec §2)")
    compare.add_argument("--out", type=Path, required=True, help="where to write the grid")
    compare.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    _add_overrides(
        compare, "change every contender's meta-test setting, e.g. transform.project=true (repeatable)"
    )
    compare.add_argument(
        "--invariances",
        action="store_true",
        help="the Sec. 4.3 invariance table: every dataset under 5 classes, 10 classes, 48×48, 21×21, a new "
        "random projection and shuffled pixels",
    )
    _add_quiet(compare)

    introspect = commands.add_parser(
        "introspect",
        help="class probabilities over short episodes: how fast a class is recognised (VSML paper Sec. 5)",
        description="Run a trained learner and online SGD (learning rate tuned on the training split) on the "
        "same short held-out episodes of a few classes; report the probability of the true class by the "
        "number k of earlier labelled examples of that class. For a BLUR run, also the asymmetry of its update "
        "Jacobian (BLUR paper Sec. 3.5). Writes introspection.json and introspection.png into --out.",
    )
    introspect.add_argument("run", type=Path, metavar="RUN", help="run directory or checkpoint file")
    introspect.add_argument("--dataset", help="an array dataset (default: the config's first eval dataset)")
    introspect.add_argument(
        "--length", type=_positive_int, default=30, help="online steps per episode (default 30)"
    )
    introspect.add_argument("--ways", type=_positive_int, default=5, help="classes per episode (default 5)")
    introspect.add_argument(
        "--episodes", type=_positive_int, default=32, help="held-out episodes (default 32)"
    )
    introspect.add_argument("--seed", type=int, default=22, help="episode key (default 22, spec §2)")
    introspect.add_argument("--no-sgd", action="store_true", help="skip the online-SGD comparison")
    introspect.add_argument("--out", type=Path, help="where to write the report (default: the run directory)")
    introspect.add_argument(
        "--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)"
    )
    _add_overrides(
        introspect, "change the meta-test setting, e.g. --set task.normalisation=dataset (repeatable)"
    )
    _add_quiet(introspect, "no progress messages")

    clone = commands.add_parser(
        "clone",
        help="clone online backprop into a VSML V_M, then let it train networks forward-only (paper Sec. 3.2)",
        description="Learning-algorithm cloning (spec vsml.md §4): regress the VSML sub-RNN's messages and "
        "state onto a backprop teacher, then run the cloned VSML free on MNIST / Fashion-MNIST against the "
        "teacher from the same initial weights. Writes a checkpoint (V_M and codec; usable as "
        "train.init_from), clone.json, clone.md and learning-curve PNGs into --out.",
    )
    clone.add_argument("config", type=Path, help="cloning YAML (see configs/cloning/)")
    clone.add_argument("--out", type=Path, required=True, help="run directory")
    _add_overrides(clone, "override a config value, e.g. --set train.steps=100 (repeatable)")
    clone.add_argument("--eval-only", action="store_true", help="evaluate the checkpoint already in --out")
    clone.add_argument("--no-eval", action="store_true", help="clone only; skip the free-running evaluation")
    clone.add_argument("--data-dir", help="dataset folder (default: $VSML_DATA, then ../shared/datasets)")
    _add_quiet(clone)

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
    export = commands.add_parser(
        "export-pretrained",
        help="turn a meta-trained, meta-tested run into a pretrained LA (NAME.npz + NAME.json)",
        description="Writes the run's meta-parameters and a JSON description (learner, meta-training chain and "
        "configs, commands and wall times, git commit, meta-test table from evaluation.json, a reference "
        "evaluation on scikit-learn's digits) into --out (default: the package's pretrained folder).",
    )
    export.add_argument("run", type=Path, help="run directory or checkpoint, meta-tested by `vsml evaluate`")
    export.add_argument("--name", required=True, help="the name load_pretrained will know it by")
    export.add_argument("--evaluation", type=Path, help="evaluation.json (default: the run directory's)")
    export.add_argument(
        "--commands", type=Path, help='JSON lines {"command": ..., "wall_seconds": ...} that made the run'
    )
    export.add_argument("--description", default="", help="one sentence on what it is")
    export.add_argument("--out", type=Path, help="output folder (default: the package's pretrained folder)")
    export.add_argument(
        "--force",
        action="store_true",
        help="replace an existing NAME in the output folder (the default folder holds the shipped LAs)",
    )
    return parser


def _list_pretrained(args: argparse.Namespace) -> int:
    from vsml.pretrained.load import describe_pretrained

    if args.dir is not None and not args.dir.is_dir():
        raise FileNotFoundError(f"--dir {args.dir} is not a folder of pretrained LAs (NAME.npz + NAME.json)")
    lines = describe_pretrained(args.dir)
    print("\n".join(lines) or f"no pretrained learning algorithms in {args.dir or 'this installation'}")
    return 0


def _export_pretrained(args: argparse.Namespace) -> int:
    from vsml.pretrained.export import export_pretrained

    if args.out is not None:
        _writable_directory(args.out)
    paths = export_pretrained(
        args.run,
        args.name,
        out_dir=args.out,
        evaluation=args.evaluation,
        commands=args.commands,
        description=args.description,
        overwrite=args.force,
    )
    for path in paths:
        print(f"wrote {path}")
    return 0


def _clone(args: argparse.Namespace) -> int:
    from vsml.config import load_config
    from vsml.evaluation.clone import clone_markdown, run_clone
    from vsml.meta.cloning import CloneConfig

    if args.eval_only and args.no_eval:
        raise ValueError("--eval-only and --no-eval exclude each other")
    config = load_config(CloneConfig, args.config, args.overrides)
    _writable_directory(args.out)
    summary = run_clone(
        config,
        args.out,
        evaluate=not args.no_eval,
        train=not args.eval_only,
        progress=not args.quiet,
        data_dir=args.data_dir,
    )
    print(clone_markdown(summary))
    print(f"wrote {args.out / 'clone.md'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vsml.evaluation.grid import (
        contenders_from_arguments,
        generalisation_grid,
        grid_table,
        invariance_grid,
        write_grid,
    )

    datasets = _comma_list(args.datasets, "--datasets", "mnist,fashion_mnist")
    _writable_directory(args.out)
    options = dict(
        num_episodes=args.episodes,
        length=args.length,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=not args.quiet,
    )
    if args.invariances:
        report = invariance_grid(args.contenders, datasets, overrides=args.overrides, **options)
    else:
        report = generalisation_grid(
            contenders_from_arguments(args.contenders, args.overrides), datasets, **options
        )
    caption = "Command: vsml compare " + " ".join(args.contenders) + f" --datasets {args.datasets}"
    caption += f" --episodes {args.episodes} --length {args.length} --seed {args.seed}"
    caption += "".join(f" --set {o}" for o in args.overrides) + (" --invariances" if args.invariances else "")
    print(grid_table(report))
    for path in write_grid(report, args.out, caption=caption):
        print(f"wrote {path}")
    return 0


def _meta_train(args: argparse.Namespace) -> int:
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
    _writable_directory(args.out)  # on every process, so that they all stop together
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


def _evaluate(args: argparse.Namespace) -> int:
    from vsml.evaluation.meta_test import (
        combine_runs,
        load_trained_run,
        meta_test,
        meta_test_setting,
        report_tables,
        write_report,
    )

    if len(args.runs) > 1 and not args.out:
        raise ValueError("several runs need --out: where to write their combined report")
    runs = [load_trained_run(path, args.overrides) for path in args.runs]
    out = _report_directory(args.out, runs[0].path)
    datasets = (
        tuple(_comma_list(args.datasets, "--datasets", "mnist,fashion_mnist")) if args.datasets else None
    )
    settings = []
    for run in runs:
        names, episodes, length = meta_test_setting(run.config, datasets, args.episodes, args.length)
        settings.append((sorted(names), episodes, length))
    if any(setting != settings[0] for setting in settings[1:]):  # before hours of meta-testing, not after
        raise ValueError(
            "the runs' configs meta-test on different settings (datasets, episodes, length: "
            + "; ".join(f"{path}: {setting}" for path, setting in zip(args.runs, settings, strict=True))
            + "); give them the same ones with --datasets, --episodes and --length"
        )
    reports = [
        meta_test(
            run,
            datasets=datasets,
            num_episodes=args.episodes,
            length=args.length,
            baselines=not args.no_baselines and index == 0,  # the baselines do not depend on the run's seed
            data_dir=args.data_dir,
            progress=not args.quiet,
        )
        for index, run in enumerate(runs)
    ]
    report = reports[0] if len(runs) == 1 else combine_runs(reports, [str(path) for path in args.runs])
    print(report_tables(report))
    for path in write_report(report, out):
        print(f"wrote {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
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


def _introspect(args: argparse.Namespace) -> int:
    from vsml.evaluation.introspect import (
        asymmetry_lines,
        introspect_run,
        introspection_table,
        write_introspection,
    )
    from vsml.evaluation.meta_test import load_trained_run

    run = load_trained_run(args.run, args.overrides)
    out = _report_directory(args.out, run.path)
    report = introspect_run(
        run,
        dataset=args.dataset,
        length=args.length,
        ways=args.ways,
        episodes=args.episodes,
        seed=args.seed,
        data_dir=args.data_dir,
        sgd=not args.no_sgd,
        log=None if args.quiet else lambda message: print(f"introspect: {message}", file=sys.stderr),
    )
    print(introspection_table(report))
    for line in asymmetry_lines(report):
        print(line)
    for path in write_introspection(report, out):
        print(f"wrote {path}")
    return 0


def _comma_list(text: str, flag: str, example: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(
            f"{flag} {text!r} has an empty item: give a comma-separated list, e.g. {flag} {example}"
        )
    return items


def _hidden_sizes(item: str) -> tuple[int, ...]:
    """ "0" -> () (linear), "160" -> (160,), "128x64" -> (128, 64)."""
    try:
        sizes = tuple(int(part) for part in item.lower().split("x"))
    except ValueError:
        sizes = None
    if sizes == (0,):
        return ()
    if not sizes or any(h < 1 for h in sizes):
        raise ValueError(
            f"--hidden item {item!r} is not an architecture: use 0 (linear), 160 (one tanh layer) or 128x64"
        )
    return sizes


def _learning_rate(item: str) -> float:
    try:
        return float(item)
    except ValueError:
        raise ValueError(f"--rates item {item!r} is not a number: e.g. --rates 0.001,0.01,0.1") from None


# A sweep trains no meta-learner, so only the settings that change its episodes may be overridden.
_SWEEP_OVERRIDE_KEYS = ("transform.", "task.normalisation=")


def _sweep_lr(args: argparse.Namespace) -> int:
    from vsml.config import apply_overrides
    from vsml.evaluation.sweep import sweep_learning_rates, sweep_table, write_sweep
    from vsml.run.experiment import experiment_from_dict

    for override in args.overrides:
        if not override.strip().startswith(_SWEEP_OVERRIDE_KEYS):
            raise ValueError(
                f"--set {override!r}: sweep-lr accepts only transform.* and task.normalisation, "
                "e.g. --set transform.pad_input_to=[28,28,1]"
            )
    config = experiment_from_dict(apply_overrides({}, args.overrides))
    _writable_directory(args.out)
    rates = None
    if args.rates is not None:
        rates = [_learning_rate(r) for r in _comma_list(args.rates, "--rates", "0.001,0.01,0.1")]
    report = sweep_learning_rates(
        _comma_list(args.datasets, "--datasets", "mnist,fashion_mnist"),
        optimizers=[o.lower() for o in _comma_list(args.optimizers, "--optimizers", "sgd,adam")],
        hidden_sizes_options=[_hidden_sizes(h) for h in _comma_list(args.hidden, "--hidden", "0,160")],
        rates=rates,
        num_episodes=args.episodes,
        length=args.length,
        seed=args.seed,
        data_dir=args.data_dir,
        transform=config.transform,
        normalisation=config.task.normalisation,
        split=args.split,
        quiet=args.quiet,
    )
    print(sweep_table(report))
    for path in write_sweep(report, args.out):
        print(f"wrote {path}")
    return 0


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
    handlers = {
        "meta-train": _meta_train,
        "evaluate": _evaluate,
        "reproduce": _reproduce,
        "sweep-lr": _sweep_lr,
        "compare": _compare,
        "introspect": _introspect,
        "clone": _clone,
        "list-pretrained": _list_pretrained,
        "export-pretrained": _export_pretrained,
    }
    try:
        return handlers[args.command](args)
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
