"""Markdown tables of results: one row per learner or dataset, numbers right-aligned."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MISSING = "—"  # shown for a value a row does not have
RESULTS_FILE = "results.json"  # every report's JSON, the one its README is rendered from
# Precision of the floats in results.json: decimals, significant digits below 1 (accuracies over <= 10^4
# episode-steps; `round_floats`).
RESULTS_DIGITS = 4


def markdown_table(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None, float_format: str = "{:.3f}"
) -> str:
    """A GitHub-flavoured markdown table of `rows`, one line per row.

    `columns` defaults to every key of every row, in order of first appearance. Floats are written with
    `float_format`; a missing key or None is shown as "—". Columns of numbers are right-aligned, others left.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        raise ValueError("markdown_table needs at least one column: pass rows with keys or `columns`")
    values = [[_scalar(row.get(column)) for column in columns] for row in rows]
    cells = [[_format_cell(value, float_format) for value in line] for line in values]
    present = [[line[i] for line in values if line[i] is not None] for i in range(len(columns))]
    numeric = [bool(column) and all(_is_number(v) for v in column) for column in present]
    header = [_escape(str(c)) for c in columns]
    widths = [max(3, len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(header)]

    def line(texts: Sequence[str]) -> str:
        padded = (t.rjust(w) if num else t.ljust(w) for t, w, num in zip(texts, widths, numeric, strict=True))
        return "| " + " | ".join(padded) + " |"

    # "---:" right-aligns a column in rendered markdown; the padding above does the same in the raw text.
    rules = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    alignment = line(rules)
    return "\n".join([line(header), alignment, *(line(c) for c in cells)])


def plus_minus(mean: float, interval: float) -> str:
    """A table cell "mean ± half-width" (the 95% intervals of every report), three decimals each."""
    return f"{mean:.3f} ± {interval:.3f}"


def round_floats(value: Any, digits: int) -> Any:
    """`value` with every float inside (dicts, lists) rounded to `digits` decimals, those below 1 in magnitude to
    `digits` significant digits instead (a cloning loss of 1.3e-10 must not become 0): results files to commit."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if abs(value) < 1 else round(value, digits)
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v, digits) for v in value]
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _scalar(value: object) -> object:
    # 0-d numpy/jax arrays (e.g. a metric straight out of jnp.mean) are shown as the numbers they hold.
    if value is not None and not isinstance(value, str) and hasattr(value, "item") and np.ndim(value) == 0:
        return value.item()
    return value


def _format_cell(value: object, float_format: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)
        return float_format.format(value) if math.isfinite(value) else str(value)
    return _escape(str(value))


def _escape(text: str) -> str:
    # A literal "|" would split the cell; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")
