"""Heterogeneous populations (the paper's `mpi_split`, spec §3.3): slices of the ES population, or of a
gradient meta-batch, each with its own dataset, transform and input/output shapes."""

from __future__ import annotations

import jax


def slice_keys(key: jax.Array, index: int, count: int) -> jax.Array:
    """`count` keys for slice `index` (slice 0 uses `key` itself, so a one-slice run is unchanged)."""
    return jax.random.split(key if index == 0 else jax.random.fold_in(key, index), count)


def split_counts(total: int, shares: tuple[int, ...], what: str) -> tuple[int, ...]:
    """`total` members split over slices in proportion to `shares`, every slice getting at least one."""
    if total < len(shares):
        raise ValueError(f"{what}={total} is smaller than the number of population slices ({len(shares)})")
    if any(s < 1 for s in shares):
        raise ValueError(f"population slice shares must be >= 1, got {shares}")
    counts = [max(1, total * s // sum(shares)) for s in shares]
    counts[-1] += total - sum(counts)  # rounding remainder to the last slice
    if counts[-1] < 1:
        raise ValueError(f"cannot split {what}={total} over shares {shares}")
    return tuple(counts)


def sample_slices(
    counts, samplers, sources, transform_keys, data_key: jax.Array, init_key: jax.Array
) -> list:
    """Per slice: (its episodes, its initial-state keys). Slice 0 uses the keys themselves, so a one-slice
    population draws exactly what an unsliced one would."""
    batches = []
    for index, (count, sampler, source) in enumerate(zip(counts, samplers, sources, strict=True)):
        slice_data_key = data_key if index == 0 else jax.random.fold_in(data_key, index)
        episodes = sampler.sample(source, slice_data_key, count, transform_keys[index])
        batches.append((episodes, slice_keys(init_key, index, count)))
    return batches
