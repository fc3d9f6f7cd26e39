"""The outer loop: meta-train a learner's meta-parameters with any `MetaOptimizer` (antithetic ES, spec §3.1;
backprop through the unrolled inner loop, §3.2; CMA-ES, blur.md §6), with periodic held-out evaluation, a JSONL
metrics log, atomic checkpoints and exact resumption. The trainer never asks which optimiser it holds.

Iteration i draws everything from `fold_in(PRNGKey(seed + 1), i)`, so a run resumed from a checkpoint at i
continues exactly as an uninterrupted one would: the checkpoint holds V_M, the optimiser state and i
(`meta.protocol.checkpoint_trees`, the same layout for every optimiser).

The population (ES pairs, CMA-ES candidates, the episodes of a gradient meta-batch) is split over every device
of every process (`meta/parallel.py`); each process runs this same loop and holds the same V_M. Process 0 alone
writes the config, metrics and checkpoints, and evaluates; the checkpoint has no per-process layout, so a run
resumes with any number of processes and devices.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from vsml.config import config_to_dict, dump_config
from vsml.evaluation.online import evaluate_on_source
from vsml.learners import build_learner
from vsml.learners.base import PyTree
from vsml.meta.objectives import Objective, check_learner_supports
from vsml.meta.parallel import is_main_process, replicate, same_on_every_process
from vsml.meta.problem import EpisodeProblem
from vsml.meta.protocol import MetaOptimizer, MetaState, checkpoint_trees, meta_step, restore_state
from vsml.meta.registry import build_meta_optimizer
from vsml.run.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    committed_steps,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from vsml.run.experiment import (
    ExperimentConfig,
    experiment_sampler,
    make_experiment_source,
    population_slices,
    stage_experiment,
)
from vsml.run.run_dir import (
    CONFIG_FILE,
    METRICS_FILE,
    check_same_experiment,
    claim_run_folder,
    clear_stale_temporaries,
    read_metrics,
    truncate_metrics,
)
from vsml.tasks.sampler import EpisodeSampler


class RunExistsError(FileExistsError):
    pass


@dataclass(frozen=True)
class IterationResult:
    mean_loss: float
    num_nonfinite: int  # ES: pairs left out; CMA-ES: candidates ranked last; grad: 1 if the step was skipped
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)  # the optimiser's other scalars (grad_norm, best_loss)


def meta_optimizer_of(config: ExperimentConfig) -> MetaOptimizer:
    """The experiment's meta-optimiser: `meta_optimizer: <name>` with the settings of its `<name>:` section."""
    return build_meta_optimizer(config.meta_optimizer, getattr(config, config.meta_optimizer))


class MetaTrainer:
    """Holds what one run needs: the learner, its data sources, V_M, the optimiser state and the run folder."""

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.learner = build_learner(config.learner)
        self.objective = Objective(config.task.loss, config.task.query_steps)
        check_learner_supports(self.learner, self.objective)
        self.optimizer = meta_optimizer_of(config)
        self.stage = 0  # the curriculum stage (len(config.curriculum): the experiment's own task)
        self.stage_losses: list[float] = []  # the training loss of each iteration of the stage so far
        self._use_stage(0)
        self.eval_sources = {
            name: make_experiment_source(config, name, "test") for name in config.eval.datasets
        }
        self.eval_sampler = experiment_sampler(config, config.eval.episode_length)
        meta = self.learner.init_meta(jax.random.PRNGKey(config.seed))
        if config.train.init_from is not None:
            try:
                _, trees, _ = load_checkpoint(config.train.init_from, {"meta": meta}, partial=True)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"train.init_from: {error}. It names the run (or checkpoint) whose meta-parameters start "
                    "this one: make that run first (e.g. `vsml clone` or `vsml meta-train` into it), point "
                    "--set train.init_from=PATH at an existing one, or --set train.init_from=null"
                ) from None
            meta = trees["meta"]
        self.optimizer.check(self.problem(0), meta)
        # Initialised from the starting V_M (warm start or seed) before any resume replaces it, so a resumed
        # run searches the same space (ES's relative noise scale).
        self.state: MetaState = self.optimizer.init(meta, jax.random.PRNGKey(config.seed))
        self.iteration = 0
        self.total_nonfinite = 0
        self._prepare_run_dir(resume)
        # The checkpoint holds plain arrays, no per-process layout: any number of processes and devices can
        # resume it. Every process must have read the same one.
        same_on_every_process(self.iteration, "the iteration to start from")
        self.state = replicate(self.state)

    def _use_stage(self, stage: int) -> None:
        """Meta-train on curriculum stage `stage`'s task from now on: its population slices, data and lengths."""
        self.stage = stage
        self.task_config = stage_experiment(self.config, stage)
        slices = population_slices(self.task_config)
        self.slice_shares = tuple(sl.share for sl in slices)
        self.slice_transforms = tuple(sl.transform for sl in slices)
        self.train_sources = replicate(
            tuple(
                make_experiment_source(self.task_config, sl.dataset, "train", transform=sl.transform)
                for sl in slices
            )
        )
        self._samplers: dict[int, tuple[EpisodeSampler, ...]] = {}
        # Each slice's fixed projection / permutation (spec §3.3), reproducible from the seed (slice i of every
        # stage gets the same one).
        self.transform_keys = tuple(
            jax.random.fold_in(jax.random.PRNGKey(self.config.seed), i) for i in range(len(slices))
        )

    def _advance_curriculum(self, loss: float) -> None:
        if self.stage == len(self.config.curriculum):
            return
        self.stage_losses.append(loss)
        classes = self.samplers(self.iteration)[0].num_classes(self.train_sources[0])
        if self.config.curriculum[self.stage].finished(self.stage_losses, classes):
            self.stage_losses = []
            self._use_stage(self.stage + 1)

    @property
    def meta(self) -> PyTree:
        """The current meta-parameters (what is evaluated and checkpointed)."""
        return self.optimizer.meta_of(self.state)

    @property
    def opt_state(self) -> PyTree:
        return self.state.opt_state

    # ----- run folder ------------------------------------------------------------------------------------------

    def _prepare_run_dir(self, resume: bool) -> None:
        # One writer per folder: process 0 locks it before reading it, for the trainer's life (run/run_dir.py).
        self.run_lock = claim_run_folder(self.run_dir)
        try:
            checkpoint = latest_checkpoint(self.run_dir)
            # All processes raise together (a process that alone saw a run would leave the others waiting).
            same_on_every_process(int(checkpoint is not None), "whether --out holds a checkpoint")
            if checkpoint is not None and not resume:
                raise RunExistsError(
                    f"{self.run_dir} already holds a run (checkpoint {checkpoint.name}); pass --resume to "
                    "continue it, or choose another --out directory"
                )
            if self.run_lock is not None:  # under the lock: no live writer's temporary file is taken
                clear_stale_temporaries(self.run_dir, self.run_lock)
            if checkpoint is not None:
                self._check_same_experiment()
                self._restore(checkpoint)
            elif is_main_process():
                # A run interrupted before its first checkpoint starts afresh: its log must not read twice.
                (self.run_dir / METRICS_FILE).unlink(missing_ok=True)
            if is_main_process():
                dump_config(self.config, self.run_dir / CONFIG_FILE)
        except BaseException:
            if self.run_lock is not None:
                self.run_lock.release()
            raise

    def _check_same_experiment(self) -> None:
        """A resumed run must be the experiment its newest checkpoint records (config.yaml may have been
        edited); only RESUMABLE_CHANGES (how far, what is kept) and speed-only settings may differ."""
        check_same_experiment(self.run_dir, self.config)

    def _restore(self, checkpoint: Path) -> None:
        templates = checkpoint_trees(self.optimizer, self.state)
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
        self.state = restore_state(self.state, trees)
        self.iteration = step
        self.total_nonfinite = int(metadata.get("total_nonfinite", 0))
        progress = metadata.get("curriculum", {"stage": 0, "losses": []})  # none before curricula existed
        self.stage_losses = [float(loss) for loss in progress["losses"]]
        if progress["stage"] != self.stage:
            self._use_stage(progress["stage"])
        if is_main_process():
            truncate_metrics(self.run_dir / METRICS_FILE, step)

    def save(self) -> Path | None:
        """Write a checkpoint of the current iteration (process 0 only; the others return None)."""
        if not is_main_process():
            return None
        metadata = {
            "experiment": config_to_dict(self.config),
            "total_nonfinite": self.total_nonfinite,
            "learner": self.config.learner,
            # Where the curriculum stands, so a resumed run ends the stage where an uninterrupted one would.
            "curriculum": {"stage": self.stage, "losses": self.stage_losses},
        }
        return save_checkpoint(
            self.run_dir,
            self.iteration,
            checkpoint_trees(self.optimizer, self.state),
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
        """T at `iteration`: the configured length, or the optimiser's curriculum from it (BLUR with gradients,
        blur.md §6: 10, then +5 every N)."""
        return self.optimizer.episode_length(self.task_config.task.episode_length, iteration)

    def samplers(self, iteration: int) -> tuple[EpisodeSampler, ...]:
        """One sampler per population slice for the episode length at `iteration` (each length compiles once)."""
        length = self.episode_length(iteration)
        if length not in self._samplers:
            self._samplers[length] = tuple(
                experiment_sampler(self.task_config, length, transform) for transform in self.slice_transforms
            )
        return self._samplers[length]

    def problem(self, iteration: int) -> EpisodeProblem:
        """What iteration `iteration` meta-trains on: the population's slices at that iteration's length."""
        return EpisodeProblem(
            self.learner,
            self.objective,
            self.samplers(iteration),
            self.slice_shares,
            self.train_sources,
            self.transform_keys,
        )

    def step(self) -> IterationResult:
        start = time.perf_counter()
        self.state, info = meta_step(
            self.optimizer, self.state, self.iteration_key(self.iteration), self.problem(self.iteration)
        )
        info = jax.device_get(info)
        extra = {k: float(v) for k, v in info.items() if k not in ("loss", "num_nonfinite")}
        result = IterationResult(
            float(info["loss"]), int(info["num_nonfinite"]), time.perf_counter() - start, extra
        )
        self.iteration += 1
        self.total_nonfinite += result.num_nonfinite
        self._advance_curriculum(result.mean_loss)
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
        return f"iteration {self.iteration}: {self.optimizer.describe_nonfinite(count)}"

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
                stage = self.stage  # the stage this iteration meta-trains on (step() may end it)
                result = self.step()
                record: dict[str, Any] = {
                    "iteration": self.iteration,
                    "loss": result.mean_loss,
                    "num_nonfinite": result.num_nonfinite,
                    "seconds": round(result.seconds, 4),
                }
                record.update(result.extra)
                if self.optimizer.has_curriculum:
                    record["episode_length"] = self.episode_length(self.iteration - 1)
                if self.config.curriculum:
                    record["stage"] = stage
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


def _loads(checkpoint: Path, templates: dict[str, PyTree]) -> bool:
    try:
        load_checkpoint(checkpoint, templates)
    except (CheckpointError, OSError):
        return False
    return True


def meta_train(
    config: ExperimentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True
) -> PyTree:
    """Meta-train `config` into `run_dir`; returns the final meta-parameters."""
    trainer = MetaTrainer(config, run_dir, resume=resume)
    trainer.run(progress=progress)
    return trainer.meta


__all__ = ["MetaTrainer", "RunExistsError", "meta_optimizer_of", "meta_train", "read_metrics"]
