"""Spreading a population over the local devices (on a CPU: `--xla_force_host_platform_device_count`)."""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

POPULATION_AXIS = "population"


def usable_device_count(population: int) -> int:
    """The largest number of local devices that divides the population evenly."""
    count = jax.local_device_count()
    while population % count:
        count -= 1
    return count


def population_mesh(population: int) -> Mesh:
    count = usable_device_count(population)
    return Mesh(jax.local_devices()[:count], (POPULATION_AXIS,))


def replicate(tree, population: int):
    """Place `tree` on every device of the population mesh, as the jitted ES step returns it, so the second
    iteration does not recompile for a different input placement."""
    return jax.device_put(tree, NamedSharding(population_mesh(population), PartitionSpec()))


def shard_over_population(fn: Callable, population: int) -> Callable:
    """`fn` maps arrays with a leading population axis to arrays with the same leading axis; run each device's
    slice on that device (a no-op wrapper on one device). Members are independent, so no communication."""
    count = usable_device_count(population)
    if count == 1:
        return fn
    mesh = population_mesh(population)
    spec = PartitionSpec(POPULATION_AXIS)
    # check_vma=False: the learners' scans start from per-member constants (zeros), which shard_map's
    # varying-axis check would otherwise ask us to mark as varying by hand.
    return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
