"""The outer loop's one protocol: every meta-optimiser is a `MetaOptimizer` over a `MetaProblem`.

In the spirit of optax's `GradientTransformation` (pure `init`/`update` over a NamedTuple state) and evosax's
init/ask/tell, and of learned_optimization's split between the learned rule, the task and the outer trainer:

    state = optimizer.init(meta, key)                  # θ₀ and the optimiser's own state
    state, info = meta_step(optimizer, state, key, problem)   # one iteration, jitted; info: scalars to log
    meta = optimizer.meta_of(state)                    # the current θ (CMA-ES: the search mean)

A `MetaProblem` is what the population is scored on: it draws each iteration's episodes and runs members on
them (`problem.EpisodeProblem` runs a learner on real episodes; the statistical tests of ES use a quadratic).
The optimiser decides how members meet episodes — antithetic pairs on a shared episode (OpenES), every
candidate on every episode (CMA-ES), one differentiable mean over a meta-batch (gradients) — and how the
iteration key is split, so that one trainer drives any of them without asking which it holds.

Pure: no YAML, files, printing or progress bars here; the trainer (`vsml.run.trainer`) does those.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Protocol

import jax

Array = jax.Array
PyTree = Any


class MetaState(NamedTuple):
    """What a meta-optimiser carries from one iteration to the next (a pytree of arrays)."""

    meta: PyTree  # the current meta-parameters θ (CMA-ES: its search mean, as θ's pytree)
    opt_state: PyTree  # the optimiser's own state: Adam's moments, CMA-ES's distribution, ...
    # Constant over a run and rebuilt by `init` from θ₀ (ES's relative noise scale), so never checkpointed.
    fixed: PyTree = None


class MetaProblem(Protocol):
    """The episodes a population is scored on, split into slices (the paper's `mpi_split`, spec §3.3) that each
    have their own data, transform and shapes. A pytree: its data are leaves, its settings static."""

    @property
    def shares(self) -> tuple[int, ...]:
        """Relative share of the population (ES pairs, episodes of a meta-batch) each slice gets."""
        ...

    def sample(self, counts: tuple[int, ...], data_key: Array, init_key: Array) -> list[PyTree]:
        """Per slice s, a batch of `counts[s]` episodes (with their initial-state keys), leading axis counts[s]."""
        ...

    def member_losses(self, slice_index: int, members: PyTree, batch: PyTree, at_once: int | str | None) -> Array:
        """Meta-loss `[M]` of member i (leaves with a leading axis M) on episode i of `batch` (leading axis M)."""
        ...

    def candidate_losses(self, slice_index: int, members: PyTree, batch: PyTree) -> Array:
        """Meta-loss `[M]` of each member, the mean over every episode of `batch`."""
        ...

    def mean_loss(
        self, slice_index: int, meta: PyTree, batch: PyTree, at_once: int | str | None, remat: bool | int
    ) -> Array:
        """Mean meta-loss `[]` of `meta` over the episodes of `batch`, differentiable in `meta`."""
        ...

    @property
    def differentiable(self) -> bool:
        """False when the meta-loss is piecewise constant (e.g. query error), so its gradient is zero."""
        ...


class MetaOptimizer(Protocol):
    """A meta-optimiser: a frozen dataclass of static settings (hashable by value, so `meta_step` compiles once
    per setting, not once per instance) with pure functions."""

    name: str  # its config name: `meta_optimizer: <name>` selects it, its settings are the `<name>:` section
    label: str  # how tables and plots name it

    def init(self, meta: PyTree, key: Array) -> MetaState: ...

    def step(self, state: MetaState, key: Array, problem: MetaProblem) -> tuple[MetaState, dict[str, Array]]:
        """One iteration. `info` has at least "loss" (the population's mean meta-loss) and "num_nonfinite"."""
        ...

    def meta_of(self, state: MetaState) -> PyTree: ...

    def check(self, problem: MetaProblem, meta: PyTree) -> None:
        """Raise ValueError, naming the setting to change, if this optimiser cannot meta-train `problem`."""
        ...

    def slice_counts(self, shares: tuple[int, ...]) -> tuple[int, ...]:
        """Members (pairs, candidates' episodes, meta-batch episodes) per population slice."""
        ...

    def episode_length(self, base: int, iteration: int) -> int:
        """T at `iteration` (a curriculum may grow it from `base`, the configured length)."""
        ...

    @property
    def has_curriculum(self) -> bool: ...

    def describe_nonfinite(self, count: int) -> str:
        """What `count` non-finite members meant for this iteration's update, in words."""
        ...


class MetaOptimizerDefaults:
    """What most meta-optimisers share: θ is the state's `meta`, and no curriculum (T stays as configured)."""

    def meta_of(self, state: MetaState) -> PyTree:
        return state.meta

    def episode_length(self, base: int, iteration: int) -> int:
        return base

    @property
    def has_curriculum(self) -> bool:
        return False


@partial(jax.jit, static_argnums=0)
def meta_step(
    optimizer: MetaOptimizer, state: MetaState, key: Array, problem: MetaProblem
) -> tuple[MetaState, dict[str, Array]]:
    """`optimizer.step`, compiled once per (optimizer settings, problem settings, shapes)."""
    return optimizer.step(state, key, problem)


def restore_state(state: MetaState, trees: dict[str, PyTree]) -> MetaState:
    """`state` with the checkpointed meta-parameters and optimiser state (`checkpoint_trees`) put back."""
    return state._replace(meta=trees["meta"], opt_state=trees["opt_state"])


def checkpoint_trees(optimizer: MetaOptimizer, state: MetaState) -> dict[str, PyTree]:
    """What a checkpoint holds: θ and the optimiser state (the layout runs have always had)."""
    return {"meta": optimizer.meta_of(state), "opt_state": state.opt_state}


__all__ = [
    "MetaOptimizer",
    "MetaOptimizerDefaults",
    "MetaProblem",
    "MetaState",
    "checkpoint_trees",
    "meta_step",
    "restore_state",
]
