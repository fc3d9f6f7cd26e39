"""Tests for markdown tables, learning-curve PNGs and block means."""

from __future__ import annotations

import re

import matplotlib.axes
import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest

from vsml.evaluation.statistics import block_labels, block_means, interval_95, moving_average, prefix_accuracy
from vsml.report.plots import plot_learning_curves, plot_meta_training
from vsml.report.tables import MISSING, markdown_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cells(line: str) -> list[str]:
    """The cells of one markdown table line, split on unescaped pipes."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def test_markdown_table_header_alignment_and_formats():
    rows = [
        {"learner": "sgd", "accuracy": 0.91234, "steps": 200},
        {"learner": "vsml", "accuracy": np.float32(0.5), "steps": np.int64(3), "note": "a|b"},
        {"learner": "adam", "accuracy": None, "steps": 7},
    ]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert _cells(lines[0]) == ["learner", "accuracy", "steps", "note"]
    # Numbers are right-aligned ("---:"), text left-aligned ("---").
    rules = _cells(lines[1])
    assert [r.endswith(":") for r in rules] == [False, True, True, False]
    assert all(set(r) <= {"-", ":"} and len(r) >= 3 for r in rules)
    assert _cells(lines[2]) == ["sgd", "0.912", "200", MISSING]
    assert _cells(lines[3]) == ["vsml", "0.500", "3", "a\\|b"]  # a literal pipe must not split the cell
    assert _cells(lines[4]) == ["adam", MISSING, "7", MISSING]  # None and an absent key both read "—"
    # Every line has the same width, so the raw text reads as a table too.
    assert len({len(line) for line in lines}) == 1


def test_markdown_table_columns_and_float_format():
    rows = [{"a": 1.23456, "b": "x", "c": 2}]
    table = markdown_table(rows, columns=["c", "a", "z"], float_format="{:.1f}")
    header, _, row = table.splitlines()
    assert _cells(header) == ["c", "a", "z"]
    assert _cells(row) == ["2", "1.2", MISSING]
    assert markdown_table([], columns=["a"]).count("\n") == 1  # header and rule only
    with pytest.raises(ValueError, match="column"):
        markdown_table([])


def test_block_means_values():
    curve = np.array([0, 0, 1, 1, 1, 0, 1, 1], dtype=float)
    np.testing.assert_allclose(block_means(curve, 4), [0.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(block_means(curve, 1), [0.625])
    # Uneven splits: earlier blocks take the extra step, as the labels say.
    np.testing.assert_allclose(block_means(np.arange(10.0), 3), [1.5, 5.0, 8.0])
    assert block_labels(10, 3) == ["steps 1–4", "steps 5–7", "steps 8–10"]
    assert block_labels(20, 2) == ["steps 1–10", "steps 11–20"]
    assert block_labels(3, 3) == ["step 1", "step 2", "step 3"]
    # A batch of curves [N, T] gives per-curve block means [N, blocks].
    np.testing.assert_allclose(block_means(np.stack([curve, 1 - curve]), 2), [[0.5, 0.75], [0.5, 0.25]])
    with pytest.raises(ValueError, match="num_blocks"):
        block_means(curve, 9)
    with pytest.raises(ValueError, match="num_blocks"):
        block_means(curve, 0)


def test_prefix_accuracy_is_the_mean_over_the_first_n_steps_with_an_interval_over_episodes():
    accuracy = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=float)
    blocks = prefix_accuracy(accuracy, (2, 4, 5))  # an episode has no 5th step: that block is left out
    assert list(blocks) == ["2", "4"]
    assert blocks["2"]["mean"] == pytest.approx(0.5) and blocks["4"]["mean"] == pytest.approx(0.75)
    assert blocks["2"]["interval_95"] == pytest.approx(interval_95(np.array([0.5, 0.0, 1.0])))
    assert prefix_accuracy(accuracy[:, :1]) == {}  # shorter than every default block
    with pytest.raises(ValueError, match="episodes, steps"):
        prefix_accuracy(accuracy[0])


def test_moving_average_is_trailing_and_keeps_length():
    np.testing.assert_allclose(moving_average(np.array([0.0, 1, 2, 3, 4]), 2), [0, 0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(moving_average(np.array([3.0, 0, 0]), 5), [3, 1.5, 1])
    np.testing.assert_array_equal(moving_average(np.arange(4.0), 1), np.arange(4.0))


def test_plot_learning_curves_writes_a_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    steps = 300
    curves = {"sgd": np.linspace(0.1, 0.8, steps), "vsml": rng.uniform(0.2, 1.0, steps)}
    std = {"sgd": np.full(steps, 0.05)}
    target = tmp_path / "figures" / "nested" / "curves.png"

    path = plot_learning_curves(curves, target, title="MNIST", chance=0.1, smooth=20, std=std)

    assert path == target
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 100 and image.shape[1] > 100
    assert sorted(p.name for p in target.parent.iterdir()) == ["curves.png"]  # no temp file left behind


def test_plot_learning_curves_overwrites_and_accepts_str_paths(tmp_path):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    path = plot_learning_curves({"a": np.array([0.0, 1.0])}, str(target))
    assert path == target and path.read_bytes()[:8] == PNG_MAGIC


def test_plot_learning_curves_leaves_nothing_when_saving_fails(tmp_path, monkeypatch):
    def failing_savefig(self, file, **kwargs):
        file.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing_savefig)
    target = tmp_path / "out" / "c.png"
    with pytest.raises(OSError, match="disk full"):
        plot_learning_curves({"a": np.ones(5)}, target)
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("curves", "kwargs", "match"),
    [
        ({}, {}, "at least one"),
        ({"a": np.ones((2, 3))}, {}, "1-D"),
        ({"a": np.ones(3)}, {"std": {"b": np.ones(3)}}, "not in"),
        ({"a": np.ones(3)}, {"std": {"a": np.ones(4)}}, "shape"),
        ({"a": np.ones(3)}, {"smooth": 0}, "smooth"),
    ],
)
def test_plot_learning_curves_rejects_bad_input(tmp_path, curves, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_learning_curves(curves, tmp_path / "c.png", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_plot_meta_training_places_points_at_their_iterations(tmp_path, monkeypatch):
    runs = {
        "from clone": [
            {"iteration": i, "loss": 1.0, **({"eval_acc": 0.5} if i % 25 == 0 else {})} for i in range(1, 101)
        ],
        "from random": [{"iteration": 25, "eval_acc": 0.1}, {"iteration": 50, "eval_acc": 0.2}],
    }
    drawn = {}
    original = matplotlib.axes.Axes.plot

    def spy(self, x, y, *args, **kwargs):
        drawn[kwargs.get("label")] = np.asarray(x).tolist()
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    path = plot_meta_training(runs, "eval_acc", tmp_path / "es.png", "ES", 0.1, start={"from clone": 0.2})
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert drawn["from clone"] == [0, 25, 50, 75, 100] and drawn["from random"] == [25, 50]
    with pytest.raises(ValueError, match="no records of 'eval_loss'"):
        plot_meta_training(runs, "eval_loss", tmp_path / "x.png")
    with pytest.raises(ValueError, match="steps\\['a'\\] has shape"):
        plot_learning_curves({"a": np.ones(3)}, tmp_path / "y.png", steps={"a": np.arange(4)})


def test_online_evaluation_intervals_per_step_and_of_the_query():
    from vsml.evaluation.online import OnlineEvaluation

    accuracy = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.5], [1.0, 1.0, 0.5]])
    result = OnlineEvaluation(accuracy, np.zeros_like(accuracy), np.array([0.5, 0.7, 0.6, 0.8]))
    expected = [1.96 * np.std(column, ddof=1) / 2 for column in accuracy.T]
    np.testing.assert_allclose(result.curve_interval, expected)
    assert result.curve_interval[1] == 0.0  # every episode right at step 2
    assert result.query_accuracy_interval == pytest.approx(1.96 * np.std([0.5, 0.7, 0.6, 0.8], ddof=1) / 2)
    assert OnlineEvaluation(accuracy, accuracy).query_accuracy_interval is None


def test_over_runs_is_each_value_their_mean_and_its_interval():
    from vsml.evaluation.statistics import over_runs

    summary = over_runs([0.5, 0.7])
    assert summary["values"] == [0.5, 0.7] and summary["mean"] == pytest.approx(0.6)
    assert summary["interval_95"] == pytest.approx(interval_95(np.array([0.5, 0.7])))


def test_round_floats_keeps_small_quantities():
    from vsml.report.tables import round_floats

    rounded = round_floats({"loss": [1.267086574552323e-10, 0.0], "acc": 0.123456, "n": 3, "big": 12.345678}, 4)
    assert rounded == {"loss": [1.267e-10, 0.0], "acc": 0.1235, "n": 3, "big": 12.3457}


def test_round_floats_edges():
    from vsml.report.tables import round_floats

    assert round_floats([-1.234567e-7, 0.99996, -12.345678, -0.0], 4) == [-1.235e-07, 1.0, -12.3457, -0.0]
