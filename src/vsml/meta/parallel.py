"""Spreading the population over every device of every process, on JAX's own distributed runtime.

The authors ran ES over 128 MPI workers; here one SPMD program does it. All devices of all processes
(`jax.devices()`, after `jax.distributed.initialize` when there are several) form one mesh axis. The ES / CMA-ES
members, or the episodes of a gradient meta-batch, are split along it (`shard_over_population`); meta-parameters,
optimiser state and data sources are replicated on it (`replicate`). The per-member losses come back as one
global array, so the update that follows them in the same jitted step sees every member and is computed
identically on every process: no process holds a different V_M, and nothing but XLA's collectives
(gloo on CPUs, NCCL on GPUs) moves data. A population that does not divide evenly is padded with copies of its
first member, whose results are dropped, so every slice of a heterogeneous population (its own shapes) uses the
same mesh.

On one CPU, `--xla_force_host_platform_device_count=N` (the CLI's `--cpu-devices`) makes N devices of its cores.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vsml.learners.base import PyTree

POPULATION_AXIS = "population"
CPU_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def with_cpu_devices(flags: str, count: int) -> str:
    """$XLA_FLAGS `flags` with `count` forced CPU devices (a count already there is replaced). Takes effect only
    in a process whose JAX has not created its backend yet: set it before the first computation, or in a
    subprocess's environment."""
    kept = [flag for flag in flags.split() if not flag.startswith(CPU_DEVICES_FLAG)]
    return " ".join([*kept, f"{CPU_DEVICES_FLAG}={count}"])


def population_mesh() -> Mesh:
    """One axis over every device of every process (the same mesh, in the same order, on each process)."""
    return Mesh(np.asarray(jax.devices()), (POPULATION_AXIS,))


def replicate(tree: PyTree) -> PyTree:
    """Place `tree` on every device of the population mesh, as the jitted steps return their state, so the second
    iteration does not recompile for a different input placement. With several processes each must pass the
    same values (they do: the same seed, the same checkpoint, the same data files)."""
    return jax.device_put(tree, NamedSharding(population_mesh(), PartitionSpec()))


def _pad_members(members: PyTree, padding: int) -> PyTree:
    """Append `padding` copies of the first member (real inputs, so the spare work stays finite)."""
    return jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.broadcast_to(a[:1], (padding, *a.shape[1:]))]), members
    )


def shard_over_population(fn: Callable, members: PyTree, *shared: PyTree) -> PyTree:
    """`fn(members, *shared)`, where every leaf of `members` has the same leading population axis and `fn` maps it
    to outputs with that axis (members are independent). Each device runs its block of members; `shared` (e.g.
    the episodes every CMA-ES candidate runs, or V_M for a meta-batch of episodes) is on every device.

    Inside a jitted step the result is one global array over all processes. On one device this is `fn` itself.
    """
    devices = jax.device_count()
    if devices == 1:
        return fn(members, *shared)
    size = jax.tree.leaves(members)[0].shape[0]
    padding = -size % devices
    if padding:
        members = _pad_members(members, padding)
    spec = PartitionSpec(POPULATION_AXIS)
    # check_vma=False: the learners' scans start from per-member constants (zeros), which shard_map's
    # varying-axis check would otherwise ask us to mark as varying by hand.
    sharded = jax.shard_map(
        fn,
        mesh=population_mesh(),
        in_specs=(spec, *(PartitionSpec() for _ in shared)),
        out_specs=spec,
        check_vma=False,
    )
    outputs = sharded(members, *shared)
    return jax.tree.map(lambda a: a[:size], outputs) if padding else outputs


# ----- several processes -------------------------------------------------------------------------------------


def initialize_processes(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process run (`jax.distributed.initialize`); call before anything else touches JAX.

    Arguments left as None are found by JAX: `JAX_COORDINATOR_ADDRESS`, or the cluster's own variables under
    SLURM (`srun`), Open MPI (`mpirun`) and Cloud TPU. On CPUs the collectives go through gloo.
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in 0 … {num_processes - 1}, got {process_id}")
    if coordinator is not None and not coordinator.rpartition(":")[2].isdigit():
        raise ValueError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:12345), got {coordinator!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except ValueError as error:  # what JAX could not find: name our flags
        raise ValueError(
            f"{error} Pass --coordinator HOST:PORT, --num-processes N and --process-id I (or $VSML_COORDINATOR, "
            "$VSML_NUM_PROCESSES, $VSML_PROCESS_ID), or launch under srun / mpirun so JAX finds them"
        ) from error


def is_main_process() -> bool:
    """Process 0 writes checkpoints, metrics and the config; the others compute alongside it."""
    return jax.process_index() == 0


def same_on_every_process(value: int, what: str) -> None:
    """Raise on every process if `value` differs between processes (e.g. run folders that are not shared)."""
    if jax.process_count() == 1:
        return
    values = np.asarray(multihost_utils.process_allgather(np.int64(value))).reshape(-1)
    if np.any(values != values[0]):
        raise ValueError(
            f"the processes disagree on {what}: {values.tolist()} (by process). Every process must see the same "
            "run directory: put --out on a filesystem shared by all hosts"
        )


__all__ = [
    "POPULATION_AXIS",
    "initialize_processes",
    "is_main_process",
    "population_mesh",
    "replicate",
    "same_on_every_process",
    "shard_over_population",
]
