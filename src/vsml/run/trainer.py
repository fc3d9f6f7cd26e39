"""The outer loop: meta-train a learner's meta-parameters by antithetic ES (spec §3.1) or by backprop through
the unrolled inner loop (§3.2), with periodic held-out evaluation, a JSONL metrics log, atomic checkpoints
and exact resumption.

Iteration i draws everything from `fold_in(PRNGKey(seed + 1), i)`, so a run resumed from a checkpoint at i
continues exactly as an uninterrupted one would: the checkpoint holds V_M, the optimiser state and i.

The population (ES pairs, CMA-ES candidates, the episodes of a gradient meta-batch) is split over every device
of every process (`meta/parallel.py`); each process runs this same loop and holds the same V_M. Process 0 alone
writes the config, metrics and checkpoints, and evaluates; the checkpoint has no per-process layout, so a run
resumes with any number of processes and devices.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from vsml.atomic import write_text_atomically
from vsml.config import config_to_dict, dump_config, read_yaml_mapping
from vsml.evaluation.online import evaluate_on_source
from vsml.learners import build_learner
from vsml.learners.base import AUTO, Learner, PyTree, map_in_batches, resolve_at_once
from vsml.meta.cmaes import cmaes_init, ravel_meta
from vsml.meta.cmaes_iteration import cmaes_iteration
from vsml.meta.es import (
    es_gradient_from_losses,
    make_es_optimizer,
    relative_noise_scale,
    sample_antithetic_noise,
)
from vsml.meta.grad import grad_iteration, make_grad_optimizer
from vsml.meta.objectives import Objective, as_objective, check_learner_supports, episode_meta_loss
from vsml.meta.parallel import is_main_process, replicate, same_on_every_process, shard_over_population
from vsml.meta.population import as_slices, sample_slices, split_counts
from vsml.run.checkpoint import (
    CheckpointError,
    checkpoint_metadata,
    checkpoint_paths,
    committed_steps,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from vsml.run.experiment import (
    ExperimentConfig,
    experiment_from_dict,
    experiment_sampler,
    make_experiment_source,
    population_slices,
)
from vsml.tasks.sampler import EpisodeSampler, Source

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


class RunExistsError(FileExistsError):
    pass


@dataclass(frozen=True)
class IterationResult:
    mean_loss: float
    num_nonfinite: int  # ES: pairs left out; grad: 1 if the step was skipped
    seconds: float
    grad_norm: float | None = None  # grad only, before clipping
    best_loss: float | None = None  # cmaes only: the generation's best candidate


def _member_losses(
    learner: Learner, objective: Objective, at_once: int | str | None, batch: tuple
) -> jax.Array:
    """Meta-loss of each population member on its own episode: [2P] (vmapped, sharded over devices; with
    `at_once`, a device runs that many members at a time; "auto": `resolve_at_once`). `batch` = (members, xs,
    ys, initial-state keys), each with the leading member axis."""
    members, xs, ys, init_keys = batch
    return map_in_batches(
        partial(episode_meta_loss, learner, objective),
        (members, init_keys, xs, ys),
        resolve_at_once(learner, at_once, xs, ys),
    )


@partial(
    jax.jit,
    static_argnames=("learner", "objective", "num_pairs", "sigma", "sampler", "optimizer", "members_at_once"),
)
def es_iteration(
    learner: Learner,
    objective: str | Objective,
    num_pairs: int | tuple[int, ...],
    sigma: float,
    sampler: EpisodeSampler | tuple[EpisodeSampler, ...],
    optimizer: optax.GradientTransformation,
    meta: PyTree,
    opt_state: optax.OptState,
    source: Source | tuple[Source, ...],
    key: jax.Array,
    transform_key: jax.Array | tuple[jax.Array, ...] | None = None,
    noise_scale: PyTree | None = None,
    members_at_once: int | str | None = AUTO,
) -> tuple[PyTree, optax.OptState, jax.Array, jax.Array]:
    """One antithetic ES step. Each pair has its own episode and initial-state key, shared by its two signs
    (common random numbers, §3.1). Returns (meta, opt_state, mean loss, number of non-finite pairs).
    `noise_scale` (a tree like meta, `es.relative_floor`) scales each parameter's noise and Adam step.

    A heterogeneous population (the paper's `mpi_split`, §3.3) passes tuples: slice s has `num_pairs[s]`
    pairs drawing from `source[s]` through `sampler[s]` (its own dataset, transform and shapes). Each slice is
    evaluated by its own vmapped call, compiled once for its shapes; ĝ averages over all pairs of all slices.
    """
    counts, samplers, sources, transform_keys = as_slices(num_pairs, sampler, source, transform_key)
    noise_key, data_key, init_key = jax.random.split(key, 3)
    eps = sample_antithetic_noise(noise_key, meta, sum(counts))
    batches = sample_slices(counts, samplers, sources, transform_keys, data_key, init_key)
    loss_plus, loss_minus = population_losses(
        learner, objective, counts, sigma, meta, eps, batches, noise_scale, members_at_once
    )
    return es_update_step(optimizer, sigma, meta, opt_state, eps, loss_plus, loss_minus, noise_scale)


def population_losses(
    learner: Learner,
    objective: str | Objective,
    counts: tuple[int, ...],
    sigma: float,
    meta: PyTree,
    eps: PyTree,
    batches: tuple,
    noise_scale: PyTree | None = None,
    members_at_once: int | str | None = AUTO,
) -> tuple[jax.Array, jax.Array]:
    """The inner loop of an ES step: L(θ ± σ·s·ε_i) of every pair `([P], [P])`, slice by slice (`counts[s]`
    pairs on `batches[s]` = (episodes, initial-state keys)), both signs of a pair on the same episode.
    `members_at_once` (es.members_at_once): how many members a device runs together (None: all; "auto": one
    or a few at a time on a CPU for large VSML networks, see `resolve_at_once`)."""
    # Only the members see the scale; ĝ is taken over the unscaled ε (the search variable u).
    scaled_eps = eps if noise_scale is None else jax.tree.map(lambda e, s: e * s[None], eps, noise_scale)

    def twice(a):
        return jnp.concatenate([a, a], axis=0)

    plus, minus, start = [], [], 0
    for count, (episodes, init_keys) in zip(counts, batches, strict=True):
        slice_eps = jax.tree.map(lambda e, a=start, n=count: e[a : a + n], scaled_eps)
        members = jax.tree.map(
            lambda t, e: jnp.concatenate([t[None] + sigma * e, t[None] - sigma * e]), meta, slice_eps
        )
        losses = shard_over_population(
            partial(_member_losses, learner, as_objective(objective), members_at_once),
            (members, twice(episodes.xs), twice(episodes.ys), twice(init_keys)),
        )
        plus.append(losses[:count])
        minus.append(losses[count:])
        start += count
    return jnp.concatenate(plus), jnp.concatenate(minus)


def es_update_step(
    optimizer: optax.GradientTransformation,
    sigma: float,
    meta: PyTree,
    opt_state: optax.OptState,
    eps: PyTree,
    loss_plus: jax.Array,
    loss_minus: jax.Array,
    noise_scale: PyTree | None = None,
) -> tuple[PyTree, optax.OptState, jax.Array, jax.Array]:
    """ĝ from the pairs' losses, then θ ← θ − s·Adam(ĝ); (meta, opt_state, mean loss, non-finite pairs)."""
    grad, info = es_gradient_from_losses(eps, loss_plus, loss_minus, sigma)
    updates, new_opt_state = optimizer.update(grad, opt_state, meta)
    if noise_scale is not None:
        updates = jax.tree.map(lambda u, s: u * s, updates, noise_scale)
    new_meta = optax.apply_updates(meta, updates)
    # If every pair failed there is no information: keep V_M and Adam's moments as they were.
    any_valid = info.num_nonfinite < loss_plus.shape[0]
    new_meta = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o), new_meta, meta)
    new_opt_state = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o), new_opt_state, opt_state)
    return new_meta, new_opt_state, info.mean_loss, info.num_nonfinite


class MetaTrainer:
    """Holds what one run needs: the learner, its data sources, V_M, the optimiser state and the run folder."""

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.learner = build_learner(config.learner)
        self.objective = Objective(config.task.loss, config.task.query_steps)
        check_learner_supports(self.learner, self.objective)
        slices = population_slices(config)
        self.uses_es = config.meta_optimizer == "es"
        self.uses_cmaes = config.meta_optimizer == "cmaes"
        if self.uses_cmaes:  # every candidate runs every slice's episodes: no split
            self.slice_counts = (config.cmaes.num_episodes,) * len(slices)
        else:
            members, what = (
                (config.es.num_pairs, "es.num_pairs")
                if self.uses_es
                else (config.grad.num_episodes, "grad.num_episodes")
            )
            self.slice_counts = split_counts(members, tuple(sl.share for sl in slices), what)
        self.slice_transforms = tuple(sl.transform for sl in slices)
        self.train_sources = tuple(
            make_experiment_source(config, sl.dataset, "train", transform=sl.transform) for sl in slices
        )
        self._samplers: dict[int, tuple[EpisodeSampler, ...]] = {}
        # Each slice's fixed projection / permutation (spec §3.3), reproducible from the seed.
        self.transform_keys = tuple(
            jax.random.fold_in(jax.random.PRNGKey(config.seed), i) for i in range(len(slices))
        )
        self.eval_sources = {
            name: make_experiment_source(config, name, "test") for name in config.eval.datasets
        }
        self.eval_sampler = experiment_sampler(config, config.eval.episode_length)
        self.meta = self.learner.init_meta(jax.random.PRNGKey(config.seed))
        if config.train.init_from is not None:
            try:
                _, trees, _ = load_checkpoint(config.train.init_from, {"meta": self.meta}, partial=True)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"train.init_from: {error}. It names the run (or checkpoint) whose meta-parameters start "
                    "this one: make that run first (e.g. `vsml clone` or `vsml meta-train` into it), point "
                    "--set train.init_from=PATH at an existing one, or --set train.init_from=null"
                ) from None
            self.meta = trees["meta"]
        # Fixed at the start (warm start or seed), before any resume replaces meta, so a resumed run searches
        # the same space.
        self.noise_scale = (
            relative_noise_scale(self.meta, config.es.relative_floor)
            if self.uses_es and config.es.relative_floor is not None
            else None
        )
        if self.uses_cmaes:  # the search distribution's state plays the optimiser state's role
            flat, self.unravel = ravel_meta(self.meta)
            self.optimizer = None
            self.opt_state = cmaes_init(config.cmaes, flat)
        else:
            self.optimizer = (
                make_es_optimizer(config.es) if self.uses_es else make_grad_optimizer(config.grad)
            )
            self.opt_state = self.optimizer.init(self.meta)
        self.iteration = 0
        self.total_nonfinite = 0
        self._prepare_run_dir(resume)
        # The checkpoint holds plain arrays, no per-process layout: any number of processes and devices can
        # resume it. Every process must have read the same one.
        same_on_every_process(self.iteration, "the iteration to start from")
        self.meta, self.opt_state, self.noise_scale = replicate((self.meta, self.opt_state, self.noise_scale))
        self.train_sources = replicate(self.train_sources)

    # ----- run folder ------------------------------------------------------------------------------------------

    def _prepare_run_dir(self, resume: bool) -> None:
        checkpoint = latest_checkpoint(self.run_dir) if self.run_dir.exists() else None
        # All processes raise together below (a process that alone saw a run would leave the others waiting).
        same_on_every_process(int(checkpoint is not None), "whether --out holds a checkpoint")
        if checkpoint is not None and not resume:
            raise RunExistsError(
                f"{self.run_dir} already holds a run (checkpoint {checkpoint.name}); pass --resume to continue "
                "it, or choose another --out directory"
            )
        if is_main_process():
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            self._check_same_experiment()
            self._restore(checkpoint)
        elif is_main_process():
            # A run interrupted before its first checkpoint starts afresh: its log must not read twice.
            (self.run_dir / METRICS_FILE).unlink(missing_ok=True)
        if is_main_process():
            dump_config(self.config, self.run_dir / CONFIG_FILE)

    def _check_same_experiment(self) -> None:
        """A resumed run must be the same experiment; only RESUMABLE_CHANGES (how far, what is kept) may differ."""
        saved_path = self.run_dir / CONFIG_FILE
        differing = differences_from_saved_config(self.run_dir, self.config)
        if differing:
            own = saved_path if saved_path.exists() else "as recorded in its checkpoints"
            raise ValueError(
                f"cannot resume {self.run_dir}: its config differs in {', '.join(differing)}. Resume with the "
                f"run's own config ({own}), changing only {' or '.join(RESUMABLE_CHANGES)}, or start a new "
                "--out directory"
            )

    def _restore(self, checkpoint: Path) -> None:
        templates = {"meta": self.meta, "opt_state": self.opt_state}
        try:
            step, trees, metadata = load_checkpoint(checkpoint, templates)
        except CheckpointError as error:
            older = committed_steps(self.run_dir)[:-1]
            if not older or not _loads(checkpoint_paths(self.run_dir, older[-1])[1], templates):
                raise  # nothing older, or it fails too (e.g. another learner's meta-parameters): no way round
            raise CheckpointError(
                f"{error}. To resume from the checkpoint before it (iteration {older[-1]}), move "
                f"{checkpoint.name} and {checkpoint.with_suffix('.npz').name} out of {self.run_dir} and "
                "--resume again"
            ) from error
        self.meta, self.opt_state = trees["meta"], trees["opt_state"]
        self.iteration = step
        self.total_nonfinite = int(metadata.get("total_nonfinite", 0))
        if is_main_process():
            _truncate_metrics(self.run_dir / METRICS_FILE, step)

    def save(self) -> Path | None:
        """Write a checkpoint of the current iteration (process 0 only; the others return None)."""
        if not is_main_process():
            return None
        metadata = {
            "experiment": config_to_dict(self.config),
            "total_nonfinite": self.total_nonfinite,
            "learner": self.config.learner,
        }
        return save_checkpoint(
            self.run_dir,
            self.iteration,
            {"meta": self.meta, "opt_state": self.opt_state},
            metadata,
            keep_last=self.config.train.keep_checkpoints,
        )

    def log(self, record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # ----- the loop --------------------------------------------------------------------------------------------

    def iteration_key(self, iteration: int) -> jax.Array:
        return jax.random.fold_in(jax.random.PRNGKey(self.config.seed + 1), iteration)

    def episode_length(self, iteration: int) -> int:
        """T at `iteration`: fixed, or BLUR's unroll curriculum with gradients (blur.md §6: 10, then +5 every N)."""
        cfg = self.config
        if cfg.meta_optimizer != "grad":
            return cfg.task.episode_length
        return cfg.task.episode_length + cfg.grad.curriculum_increment * (
            iteration // cfg.grad.curriculum_every
        )

    def samplers(self, iteration: int) -> tuple[EpisodeSampler, ...]:
        """One sampler per population slice for the episode length at `iteration` (each length compiles once)."""
        length = self.episode_length(iteration)
        if length not in self._samplers:
            self._samplers[length] = tuple(
                experiment_sampler(self.config, length, transform) for transform in self.slice_transforms
            )
        return self._samplers[length]

    def step(self) -> IterationResult:
        cfg = self.config
        start = time.perf_counter()
        key = self.iteration_key(self.iteration)
        samplers = self.samplers(self.iteration)
        grad_norm = best = None
        if self.uses_es:
            self.meta, self.opt_state, loss, nonfinite = es_iteration(
                self.learner, self.objective, self.slice_counts, cfg.es.sigma, samplers,
                self.optimizer, self.meta, self.opt_state, self.train_sources, key, self.transform_keys,
                self.noise_scale, cfg.es.members_at_once,
            )  # fmt: skip
        elif self.uses_cmaes:
            self.opt_state, loss, best, nonfinite = cmaes_iteration(
                self.learner, self.objective, cfg.cmaes, self.slice_counts, samplers, self.unravel, self.opt_state,
                self.train_sources, key, self.transform_keys,
            )  # fmt: skip
            self.meta = self.unravel(self.opt_state.mean)  # evaluated and checkpointed: the search's centre
            best = float(best)
        else:
            self.meta, self.opt_state, loss, grad_norm, nonfinite = grad_iteration(
                self.learner, self.objective, self.slice_counts, samplers, cfg.grad.remat,
                self.optimizer, self.meta, self.opt_state, self.train_sources, key, self.transform_keys,
                cfg.grad.episodes_at_once,
            )  # fmt: skip
            grad_norm = float(grad_norm)
        result = IterationResult(float(loss), int(nonfinite), time.perf_counter() - start, grad_norm, best)
        self.iteration += 1
        self.total_nonfinite += result.num_nonfinite
        return result

    def evaluate(self) -> dict[str, float]:
        """Held-out online metrics of the current meta-parameters, run on this process's first device (V_M
        is small; the episodes are not split over devices)."""
        cfg = self.config.eval
        metrics = {}
        meta = jax.device_get(self.meta)  # plain arrays: a local computation, also under several processes
        for name, source in self.eval_sources.items():
            result = evaluate_on_source(
                self.learner,
                meta,
                source,
                num_episodes=cfg.num_episodes,
                length=cfg.episode_length,
                sampler=self.eval_sampler,
                seed=cfg.seed,
                query_steps=self.config.task.query_steps,
            )
            if result.query_accuracy is not None:
                metrics[f"eval_query_accuracy_{name}"] = result.mean_query_accuracy
            metrics[f"eval_accuracy_{name}"] = result.mean_accuracy
            metrics[f"eval_final_accuracy_{name}"] = result.final_accuracy
            metrics[f"eval_loss_{name}"] = result.mean_loss
        return metrics

    def _nonfinite_message(self, count: int) -> str:
        if self.uses_es:
            return (
                f"iteration {self.iteration}: {count} of {self.config.es.num_pairs} pairs had a non-finite loss "
                "and were left out of the update"
            )
        if self.uses_cmaes:
            return f"iteration {self.iteration}: {count} candidates had a non-finite fitness (ranked last)"
        return f"iteration {self.iteration}: non-finite meta-loss or gradient; update skipped"

    def run(self, iterations: int | None = None, progress: bool = True) -> dict[str, Any]:
        """Meta-train until `train.iterations` (or `iterations` more steps, to simulate an interruption)."""
        cfg = self.config
        target = (
            cfg.train.iterations
            if iterations is None
            else min(cfg.train.iterations, self.iteration + iterations)
        )
        last: dict[str, Any] = {}
        bar = tqdm(
            total=cfg.train.iterations,
            initial=self.iteration,
            desc=f"meta-train ({cfg.meta_optimizer})",
            disable=not progress or not is_main_process(),
            dynamic_ncols=True,
        )
        with bar:
            while self.iteration < target:
                result = self.step()
                record: dict[str, Any] = {
                    "iteration": self.iteration,
                    "loss": result.mean_loss,
                    "num_nonfinite": result.num_nonfinite,
                    "seconds": round(result.seconds, 4),
                }
                if result.grad_norm is not None:
                    record["grad_norm"] = result.grad_norm
                if result.best_loss is not None:
                    record["best_loss"] = result.best_loss
                if cfg.meta_optimizer == "grad" and cfg.grad.curriculum_increment:
                    record["episode_length"] = self.episode_length(self.iteration - 1)
                if result.num_nonfinite and is_main_process():
                    tqdm.write(self._nonfinite_message(result.num_nonfinite))
                evaluated = self.iteration % cfg.eval.every == 0 or self.iteration == cfg.train.iterations
                if evaluated and is_main_process():  # only process 0 logs: the others need not evaluate
                    record.update(self.evaluate())
                # Logged before the checkpoint, so a checkpoint always has its metrics line (kept on resume).
                if evaluated or self.iteration % cfg.train.log_every == 0:
                    self.log(record)
                if self.iteration % cfg.train.checkpoint_every == 0 or self.iteration == target:
                    self.save()
                bar.set_postfix(loss=f"{result.mean_loss:.3f}", **_short_eval(record))
                bar.update(1)
                last = record
        if jax.process_count() > 1:  # the others wait for process 0's last evaluation and log (a collective:
            multihost_utils.sync_global_devices("vsml meta-train done")  # no 300 s shutdown-barrier timeout)
        return last


def _short_eval(record: dict[str, Any]) -> dict[str, str]:
    return {
        k.removeprefix("eval_accuracy_"): f"{v:.3f}" for k, v in record.items() if k.startswith("eval_acc")
    }


# Config keys a resumed run may change: how far it goes and how many checkpoints it keeps.
RESUMABLE_CHANGES = ("train.iterations", "train.keep_checkpoints")

# Config keys that change how fast a run goes, not what it computes (tested equal).
SPEED_ONLY_KEYS = (
    "es.members_at_once",
    "grad.episodes_at_once",
    "learner.dense_block_synapses",
    "learner.dense_kernel",
)


def differences_from_saved_config(
    run_dir: str | Path, config: ExperimentConfig, ignore: tuple[str, ...] = RESUMABLE_CHANGES
) -> list[str]:
    """Dotted keys where `config` differs from the config.yaml saved in `run_dir` (or, without it, the one its
    newest checkpoint records; none if there is neither),
    leaving out the `ignore` keys (`section.key`) and the settings that change only the speed
    (`SPEED_ONLY_KEYS`: a run may resume with another choice, or with a default changed since)."""
    saved_path = Path(run_dir) / CONFIG_FILE
    if saved_path.exists():
        saved = read_yaml_mapping(saved_path)
    elif latest_checkpoint(run_dir) is not None:
        # config.yaml deleted or never written: every checkpoint also records its experiment.
        saved = checkpoint_metadata(run_dir).get("experiment")
        if not isinstance(saved, dict):
            return []
    else:
        return []
    saved = config_to_dict(experiment_from_dict(saved))
    current = config_to_dict(config)
    for data in (saved, current):
        for dotted in (*ignore, *SPEED_ONLY_KEYS):
            section, key = dotted.split(".")
            data[section].pop(key, None)
    return differing_keys(saved, current)


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested config mappings differ (floats compared with `math.isclose`), sorted."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b):
        return []
    return [] if a == b else [prefix.rstrip(".")]


def _loads(checkpoint: Path, templates: dict[str, PyTree]) -> bool:
    try:
        load_checkpoint(checkpoint, templates)
    except (CheckpointError, OSError):
        return False
    return True


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop log records written after the checkpoint we resume from, so the log reads like one clean run."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iteration", 0) <= iteration:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut off by the interruption
    write_text_atomically(path, "".join(line + "\n" for line in kept))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def meta_train(
    config: ExperimentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True
) -> PyTree:
    """Meta-train `config` into `run_dir`; returns the final meta-parameters."""
    trainer = MetaTrainer(config, run_dir, resume=resume)
    trainer.run(progress=progress)
    return trainer.meta


__all__ = ["MetaTrainer", "RunExistsError", "es_iteration", "meta_train", "read_metrics"]
