"""Summary statistics of online learning curves: 95% intervals, moving averages, block means.

Plain numpy on the host; used by the evaluation code and, through it, by the reports."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The first-n-examples blocks of a meta-test (issue 24, Fig. 6: 1–50, 1–100, 1–500, 1–2000): how fast a learner
# learns, where the mean over a long episode says mostly how well it ends.
PREFIX_STEPS = (50, 100, 500, 2000)


def interval_95(values: np.ndarray) -> float:
    """Half-width of the normal 95% confidence interval of the mean of `values` (1.96·s/√n); 0 for one value."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        return 0.0
    return float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def over_runs(values: list[float]) -> dict[str, Any]:
    """One number of several runs (seeds): each run's value, their mean and its 95% interval over runs."""
    values = [float(v) for v in values]
    return {"values": values, "mean": float(np.mean(values)), "interval_95": interval_95(np.asarray(values))}


def moving_average(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last axis; the first window−1 points average what exists so far.

    Same length as `curve`, so step t still means "after t examples" and nothing is padded with zeros.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if window < 1:
        raise ValueError(f"moving_average window must be >= 1, got {window}")
    if window == 1 or curve.shape[-1] == 0:
        return curve
    cumsum = np.cumsum(curve, axis=-1)
    shifted = np.zeros_like(cumsum)
    shifted[..., window:] = cumsum[..., :-window]
    counts = np.minimum(np.arange(1, curve.shape[-1] + 1), window)
    return (cumsum - shifted) / counts


def block_means(curve: np.ndarray, num_blocks: int) -> np.ndarray:
    """Mean of `curve` over `num_blocks` consecutive blocks of steps (last axis) → [..., num_blocks].

    Blocks are as equal as possible (`np.array_split`: earlier blocks get the extra step); see `block_labels`.
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim == 0:
        raise ValueError("block_means needs a curve over steps, got a scalar")
    _check_num_blocks(curve.shape[-1], num_blocks)
    return np.stack([block.mean(axis=-1) for block in np.array_split(curve, num_blocks, axis=-1)], axis=-1)


def block_labels(num_steps: int, num_blocks: int) -> list[str]:
    """Column names of the blocks of `block_means`: "steps 1–10", "steps 11–20" for 20 steps in 2 blocks;
    a block of one step is "step 3"."""
    _check_num_blocks(num_steps, num_blocks)
    sizes = [len(b) for b in np.array_split(np.arange(num_steps), num_blocks)]
    ends = np.cumsum(sizes)
    return [
        f"step {end}" if size == 1 else f"steps {end - size + 1}–{end}"
        for size, end in zip(sizes, ends, strict=True)
    ]


def _check_num_blocks(num_steps: int, num_blocks: int) -> None:
    if not 1 <= num_blocks <= num_steps:
        raise ValueError(f"num_blocks must be in [1, {num_steps}] for {num_steps} steps, got {num_blocks}")


def prefix_accuracy(
    accuracy: np.ndarray, steps: tuple[int, ...] = PREFIX_STEPS
) -> dict[str, dict[str, float]]:
    """Mean online accuracy over the first n steps, for each n of `steps` that an episode has, with its 95%
    interval over episodes. `accuracy`: [episodes, T]; keys are n as strings (JSON)."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.ndim != 2:
        raise ValueError(f"prefix_accuracy needs [episodes, steps], got shape {accuracy.shape}")
    result = {}
    for n in steps:
        if n <= accuracy.shape[1]:
            per_episode = accuracy[:, :n].mean(axis=1)
            result[str(n)] = {"mean": float(per_episode.mean()), "interval_95": interval_95(per_episode)}
    return result
