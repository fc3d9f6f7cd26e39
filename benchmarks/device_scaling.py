"""ES iterations per second as the population is split over more devices and processes (meta/parallel.py).

A fixed small config: VSML (default 64 → 10 on scikit-learn's digits, label fed), `--pairs` antithetic pairs,
episodes of `--length` steps; or `--config` an experiment config (e.g. configs/fig6_mnist_rand_proj.yaml, its
dataset as configured) with the same pairs and length and `--set` overrides. For each layout PxD (P processes
on 127.0.0.1 with D CPU devices each, forced with `--xla_force_host_platform_device_count`) the script starts
fresh Python processes, compiles one iteration, then times `--iterations` more through `MetaTrainer.step` (no
evaluation, logs or checkpoints) and reports process 0's iterations/s: 1 / the median iteration time, and the
mean. The layouts run in turn, `--rounds`
times, and each keeps its best round, so that other jobs on the machine, which come and go, do not favour
one layout. Prints JSON: per layout the best round, its speed-up over the first layout's best, and every round.

Forced CPU devices share the machine's cores, so the speed-up is bounded by the number of cores (XLA's CPU
backend also spreads one device's work over several threads); on GPUs, one device per GPU.

    python benchmarks/device_scaling.py [--layouts 1x1,1x2,1x4,2x1] [--pairs 16] [--length 100] [--iterations 10]
                                        [--rounds 3] [--config configs/deep.yaml] [--set es.members_at_once=1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What each timed config is given on top of its own: no evaluation, logs or checkpoints while timing.
NEVER = 1_000_000
TIMING_OVERRIDES = (f"train.iterations={NEVER}", f"train.checkpoint_every={NEVER}", f"eval.every={NEVER}")


def benchmark_config(pairs: int, length: int) -> dict:
    return {
        "name": "device_scaling",
        "seed": 0,
        "learner": {"name": "vsml", "feed_label": True},
        "task": {"dataset": "digits", "episode_length": length},
        "es": {"num_pairs": pairs},
        "train": {"iterations": NEVER, "checkpoint_every": NEVER},
        "eval": {"datasets": ["digits"], "every": NEVER},
    }


def overrides(args: argparse.Namespace) -> list[str]:
    """`--set` and the timing settings for a `--config` run (last, so no `--set` brings back evaluation or
    checkpoints while timing)."""
    return [f"es.num_pairs={args.pairs}", f"task.episode_length={args.length}", *args.set, *TIMING_OVERRIDES]


def load_config(args: argparse.Namespace):
    """The experiment to time: `--config` with `overrides`, else the built-in digits config."""
    from vsml.run.experiment import experiment_from_dict, load_experiment

    if args.config is None:
        return experiment_from_dict(benchmark_config(args.pairs, args.length))
    return load_experiment(args.config, overrides(args))


def measure(args: argparse.Namespace) -> None:
    """One process of one layout: print process 0's timings as JSON."""
    if args.num_processes > 1:
        from vsml.meta.parallel import initialize_processes

        initialize_processes(args.coordinator, args.num_processes, args.process_id)
    import jax

    from vsml.run.trainer import MetaTrainer

    config = load_config(args)
    with tempfile.TemporaryDirectory() as run_dir:  # process 0 writes only config.yaml there
        trainer = MetaTrainer(config, run_dir)
        trainer.step()  # compiles
        seconds = []
        for _ in range(args.iterations):
            start = time.perf_counter()
            loss = trainer.step().mean_loss  # a float: waits for the iteration
            seconds.append(time.perf_counter() - start)
    if jax.process_index() == 0:
        median = statistics.median(seconds)
        record = {"devices": jax.device_count(), "processes": jax.process_count(), "median_seconds": median}
        record |= {"config_name": config.name, "members_at_once": config.es.members_at_once}  # as loaded
        record["iterations_per_s"] = 1.0 / median
        record["mean_iterations_per_s"] = len(seconds) / sum(seconds)
        print(json.dumps({**record, "last_loss": loss}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_layout(layout: str, args: argparse.Namespace) -> dict:
    """Start the processes of layout 'PxD' and return process 0's record."""
    processes, devices = (int(part) for part in layout.split("x"))
    from vsml.meta.parallel import with_cpu_devices

    # The caller's other XLA flags (e.g. the test suite's optimisation level) carry over; the device count is ours.
    env = {
        **os.environ,
        "XLA_FLAGS": with_cpu_devices(os.environ.get("XLA_FLAGS", ""), devices),
        "JAX_PLATFORMS": "cpu",
    }
    command = [
        sys.executable, __file__, "--measure", "--pairs", str(args.pairs), "--length", str(args.length),
        "--iterations", str(args.iterations), "--num-processes", str(processes),
        "--coordinator", f"127.0.0.1:{free_port()}",
        *([] if args.config is None else ["--config", str(args.config)]),
        *(f"--set={item}" for item in args.set),
    ]  # fmt: skip
    children = [
        subprocess.Popen([*command, "--process-id", str(index)], env=env, stdout=subprocess.PIPE, text=True)
        for index in range(processes)
    ]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit(f"layout {layout} failed: return codes {[child.returncode for child in children]}")
    return json.loads(outputs[0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--layouts", default="1x1,1x2,1x4,2x1", help="comma-separated PxD: processes x devices"
    )
    parser.add_argument("--pairs", type=int, default=16, help="antithetic pairs (2x members)")
    parser.add_argument("--length", type=int, default=100, help="episode length T")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per layout and round")
    parser.add_argument("--rounds", type=int, default=3, help="times each layout is run (its best is kept)")
    parser.add_argument("--config", type=Path, help="an experiment config instead of the built-in digits one")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="overrides of --config's settings"
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one process of a layout
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.set and args.config is None:
        parser.error("--set changes a --config; the built-in config takes only --pairs and --length")
    from vsml.config import resolve_config_path  # no JAX: the device count is not fixed yet

    try:  # a YAML file or a shipped config's name (configs/deep.yaml works too)
        if args.config is not None:
            resolve_config_path(args.config)
    except FileNotFoundError as error:
        parser.error(f"--config {args.config}: {error}")
    if args.measure:
        measure(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from timing import machine_fields

    layouts = args.layouts.split(",")
    rounds = {layout: [] for layout in layouts}
    for _ in range(args.rounds):
        for layout in layouts:
            rounds[layout].append(run_layout(layout, args))
    results = {}
    for layout, records in rounds.items():
        best = max(records, key=lambda record: record["iterations_per_s"])
        results[layout] = {**best, "rounds_iterations_per_s": [r["iterations_per_s"] for r in records]}
    base = results[layouts[0]]["iterations_per_s"]
    for record in results.values():
        record["speedup"] = record["iterations_per_s"] / base
    print(
        json.dumps(
            {
                "benchmark": "device_scaling",
                "config": benchmark_config(args.pairs, args.length)
                if args.config is None
                else str(args.config),
                "overrides": [] if args.config is None else overrides(args),
                "iterations": args.iterations,
                "rounds": args.rounds,
                "layouts": results,
                "cpu_cores": os.cpu_count(),
                "load_average": os.getloadavg(),
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
