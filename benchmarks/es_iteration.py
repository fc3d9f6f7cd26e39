"""Seconds per antithetic-ES iteration of the Fig. 6 config, with a breakdown, in the same run.

configs/fig6_mnist_rand_proj.yaml (VSML, dense 784 → 10; half the population under a fixed random projection;
`--config` another, e.g. configs/deep.yaml) at P pairs (the paper: 1024; default here 16, for a CPU) and
episode length T. The iteration
(`vsml.meta.protocol.meta_step` of `vsml.meta.es.OpenES`, as the trainer runs it) is rebuilt from the same
functions as four separately jitted pieces:

    noise        ε ~ N(0, I) for P pairs (`es.sample_antithetic_noise`)
    episodes     each slice's episodes and initial-state keys, projection included (`EpisodeProblem.sample`)
    inner loop   the meta-loss of all 2P members θ ± σε, each learning online over its episode
                 (`es.antithetic_losses`)
    update       ĝ (`es.es_gradient_from_losses`), Adam, and the all-pairs-failed guard (`es.es_update`)

Each piece and the whole fused step are timed (block_until_ready, best of R calls; the check below is
their compile and warm-up call). Prints JSON: the seconds of each piece, their sum against the fused iteration
as a ratio, and iterations/s. The pieces run on the fused iteration's keys, so their mean loss must match the
fused one (checked before timing). `--compare` times the fused iteration at other `es.members_at_once` settings
too, each checked the same way, its calls interleaved with the main setting's. The population is split over
`jax.device_count()` devices as in the CLI (e.g. `XLA_FLAGS=--xla_force_host_platform_device_count=2`; "auto"
then resolves on each device's share). Absolute figures depend on the machine and its load; the ratios are the
numbers to compare. The inner loop dominates and a run costs about 2 + 2R iterations per setting: with 16 pairs
on 2 CPU cores one iteration of the Fig. 6 config took ~1.4 s at T = 100 and ~7 s at the default T = 500;
`--length 100` or fewer `--pairs` for a quick look.

Data: `--dataset mnist` needs the MNIST files (see `vsml.tasks.datasets.resolve_data_dir`); by default MNIST is
used if it loads, else scikit-learn's digits (8x8 inputs: a 64 → 10 layer); the JSON says which.

    python benchmarks/es_iteration.py [--pairs 16] [--length 500] [--repeats 3] [--dataset mnist|digits|...]
        [--config configs/deep.yaml] [--members-at-once auto|all|N] [--compare all,1,2,4]
        [--set learner.dense_kernel=pallas ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
from timing import at_once_label, best_time, best_times, machine_fields

from vsml.config import resolve_config_path
from vsml.learners import build_learner
from vsml.learners.base import resolve_at_once
from vsml.meta.es import (
    OpenES,
    antithetic_losses,
    es_gradient_from_losses,
    es_update,
    make_es_optimizer,
    sample_antithetic_noise,
)
from vsml.meta.objectives import Objective
from vsml.meta.problem import EpisodeProblem
from vsml.meta.protocol import meta_step
from vsml.run.experiment import (
    ExperimentConfig,
    experiment_sampler,
    load_experiment,
    make_experiment_source,
    population_slices,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "vsml" / "configs" / "fig6_mnist_rand_proj.yaml"
FALLBACK_DATASET = "digits"
LOSS_TOLERANCE = 1e-3  # relative: the pieces and the fused program differ only in how XLA fuses them


def with_dataset(config: ExperimentConfig, name: str) -> ExperimentConfig:
    """The config with every population slice (and the task) drawing from dataset `name`."""
    slices = tuple(dataclasses.replace(sl, dataset=name) for sl in population_slices(config))
    task = dataclasses.replace(config.task, dataset=name)
    return dataclasses.replace(config, task=task, population=slices if config.population else ())


def load_sources(
    config: ExperimentConfig, dataset: str | None
) -> tuple[ExperimentConfig, tuple, str, str | None]:
    """(config, one train source per slice, the dataset used, why the default fell back or None)."""
    names = [dataset] if dataset is not None else [population_slices(config)[0].dataset, FALLBACK_DATASET]
    fallback_reason = None
    for name in names:
        candidate = with_dataset(config, name)
        try:
            sources = tuple(
                make_experiment_source(candidate, sl.dataset, "train", transform=sl.transform)
                for sl in population_slices(candidate)
            )
        except (OSError, ValueError) as error:  # missing files: try the fallback (an explicit choice raises)
            if name == names[-1]:
                raise
            fallback_reason = f"{name}: {type(error).__name__}: {error}"[:300]
            continue
        return candidate, sources, name, fallback_reason
    raise AssertionError("unreachable")


def members_at_once(text: str) -> int | str | None:
    """--members-at-once: a positive count, 'auto' or 'all' (None: every member at once)."""
    text = text.strip()
    if text in ("auto", "all"):
        return None if text == "all" else text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count, 'auto' or 'all', got {text!r}")
    return int(text)


def shown_path(path: Path) -> str:
    """`path` relative to the repository when it is inside it (as the stored reports name their configs)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16, help="antithetic pairs P (2P members); paper: 1024")
    parser.add_argument(
        "--length", type=int, default=500, help="episode length T (the paper meta-trains at 500)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dataset", default=None, help=f"default: the config's (mnist) if it loads, else {FALLBACK_DATASET}"
    )
    parser.add_argument(
        "--members-at-once",
        type=members_at_once,
        default="auto",
        help="es.members_at_once for the pieces and the fused step: a count, 'auto' (the default, as the config) "
        "or 'all'; unless 'all', the fused step with all members at once is timed too, and the ratio printed",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more config overrides, e.g. learner.dense_kernel=pallas or learner.recurrent_matmul=tf32",
    )
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="the experiment config (default: the Fig. 6 config)"
    )
    parser.add_argument(
        "--compare",
        type=lambda text: [members_at_once(c.strip()) for c in text.split(",") if c.strip()],
        default=[members_at_once("all")],  # argparse does not run `type` on a non-string default
        help="comma-separated members_at_once settings to time the fused step at too, interleaved with "
        "--members-at-once (default: all; each printed as seconds and its time over the main setting's)",
    )
    args = parser.parse_args()
    at_once = args.members_at_once
    try:
        resolve_config_path(args.config)  # a YAML file or a shipped config's name (configs/deep.yaml works too)
    except FileNotFoundError as error:
        parser.error(f"--config {args.config}: {error}")
    compare = [c for c in dict.fromkeys(args.compare) if c != at_once]  # the main setting is timed anyway

    overrides = [f"es.num_pairs={args.pairs}", f"task.episode_length={args.length}", *args.set]
    config = load_experiment(args.config, overrides)
    config, sources, dataset, fallback_reason = load_sources(config, args.dataset)
    slices = population_slices(config)
    samplers = tuple(experiment_sampler(config, args.length, sl.transform) for sl in slices)
    transform_keys = tuple(jax.random.fold_in(jax.random.PRNGKey(config.seed), i) for i in range(len(slices)))
    learner = build_learner(config.learner)
    objective = Objective(config.task.loss, config.task.query_steps)
    problem = EpisodeProblem(
        learner, objective, samplers, tuple(sl.share for sl in slices), sources, transform_keys
    )
    es = OpenES(dataclasses.replace(config.es, members_at_once=at_once))
    counts = es.slice_counts(problem.shares)
    optimizer = make_es_optimizer(config.es)
    sigma, total = config.es.sigma, sum(counts)
    meta = learner.init_meta(jax.random.PRNGKey(config.seed))
    state = es.init(meta)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), 0)  # the trainer's iteration-0 key
    noise_key, data_key, init_key = jax.random.split(key, 3)  # as es.es_gradient splits it

    # ----- the pieces: OpenES.step's body, cut where one piece's output is the next one's input --------------

    @jax.jit
    def noise(noise_key):
        return sample_antithetic_noise(noise_key, meta, total)

    @jax.jit
    def episodes(problem, data_key, init_key):
        return problem.sample(counts, data_key, init_key)

    @jax.jit
    def inner_loop(problem, meta, eps, batches):
        return antithetic_losses(problem, meta, eps, batches, counts, sigma, None, at_once)

    @jax.jit
    def update(meta, opt_state, eps, loss_plus, loss_minus):
        grad, info = es_gradient_from_losses(eps, loss_plus, loss_minus, sigma)
        return *es_update(optimizer, meta, opt_state, grad, info), info.mean_loss

    def fused(members_at_once=at_once):
        optimizer = OpenES(dataclasses.replace(config.es, members_at_once=members_at_once))
        return meta_step(optimizer, state, key, problem)[1]["loss"]

    eps = noise(noise_key)
    batches = episodes(problem, data_key, init_key)
    loss_plus, loss_minus = inner_loop(problem, meta, eps, batches)
    parts_loss = float(update(meta, state.opt_state, eps, loss_plus, loss_minus)[2])
    fused_loss = float(fused())
    if not abs(parts_loss - fused_loss) <= LOSS_TOLERANCE * max(1.0, abs(fused_loss)):
        raise SystemExit(
            f"the pieces give mean loss {parts_loss}, the fused iteration {fused_loss}: refusing to time"
        )

    seconds = {
        "noise": best_time(lambda: noise(noise_key), args.repeats, warm_up=False),
        "episodes": best_time(lambda: episodes(problem, data_key, init_key), args.repeats, warm_up=False),
        "inner_loop": best_time(lambda: inner_loop(problem, meta, eps, batches), args.repeats, warm_up=False),
        "update": best_time(
            lambda: update(meta, state.opt_state, eps, loss_plus, loss_minus), args.repeats, warm_up=False
        ),
    }
    parts = sum(seconds.values())
    first = batches[0][0]  # the first slice's episodes, one per pair, each run by both signs of the pair
    per_device = -(-2 * counts[0] // jax.device_count())  # shard_over_population's block (padded)
    xs, ys = (jnp.concatenate([a, a])[:per_device] for a in (first.xs, first.ys))

    def resolved(setting: int | str | None) -> int | None:
        """What a device runs together in the first slice (its share of members, `resolve_at_once`)."""
        return resolve_at_once(learner, setting, xs, ys)

    # The other settings: each checked against the main one's loss (same members and episodes), then timed
    # with the main setting, calls interleaved.
    variants = {"fused": fused}
    for setting in compare:
        loss = float(fused(setting))
        if not abs(loss - fused_loss) <= LOSS_TOLERANCE * max(1.0, abs(fused_loss)):
            raise SystemExit(f"members_at_once={setting} gives mean loss {loss}, {at_once}: {fused_loss}")
        variants[at_once_label(setting)] = partial(fused, setting)
    times = best_times(variants, args.repeats, warm_up=False)
    t_fused = times.pop("fused")
    comparison = {
        "members_at_once": at_once,
        "members_at_once_resolved": resolved(at_once),
        "compare": {
            at_once_label(setting): {
                "members_at_once_resolved": resolved(setting),
                "seconds": times[at_once_label(setting)],
                "over_fused_time": times[at_once_label(setting)] / t_fused,
            }
            for setting in compare
        },
    }
    if "all" in times:  # the fields of earlier runs (reports/speed_cpu/es_iteration_*.json)
        comparison["fused_all_at_once_seconds"] = times["all"]
        comparison["all_at_once_over_fused_time"] = times["all"] / t_fused
    input_shape = tuple(int(d) for d in batches[0][0].xs.shape[3 if samplers[0].batch_size > 1 else 2 :])
    print(
        json.dumps(
            {
                "benchmark": "es_iteration",
                "config": shown_path(args.config),
                "devices": jax.device_count(),
                "members_per_device_first_slice": per_device,
                "dataset": dataset,
                "dataset_fallback_reason": fallback_reason,
                "input_shape": list(input_shape),
                "learner": config.learner,
                "meta_parameters": sum(int(leaf.size) for leaf in jax.tree.leaves(meta)),
                "pairs": total,
                "members": 2 * total,
                "slices": list(counts),
                "length": args.length,
                "repeats": args.repeats,
                **{f"{name}_seconds": value for name, value in seconds.items()},
                "parts_seconds": parts,
                "fused_seconds": t_fused,
                "parts_over_fused_time": parts / t_fused,
                "inner_loop_fraction_of_parts": seconds["inner_loop"] / parts,
                "iterations_per_s": 1.0 / t_fused,
                "member_steps_per_s": 2 * total * args.length / t_fused,
                "mean_loss_parts": parts_loss,
                "mean_loss_fused": fused_loss,
                **comparison,
                **machine_fields(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
