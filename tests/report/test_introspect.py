"""The introspection figure (VSML Sec. 5): one probability heatmap per contender and the recognition-by-k panel."""

from __future__ import annotations

import numpy as np

from vsml.evaluation.introspect import recognition_by_k
from vsml.report.introspect import plot_probabilities


def _fake_report(num_classes: int = 6, length: int = 12, ways: int = 3) -> dict:
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.arange(length) % ways).tolist()

    def entry(label: str) -> dict:
        probabilities = rng.dirichlet(np.ones(num_classes), size=length)
        return {
            "label": label,
            "by_k": recognition_by_k(probabilities, np.array(labels)),
            "example": {"probabilities": probabilities.tolist(), "labels": labels},
        }

    return {
        "dataset": "fake",
        "length": length,
        "ways": ways,
        "episodes": 1,
        "seed": 22,
        "chance": 1.0 / num_classes,
        "learner": entry("VSML, meta-trained V_M (3 ES it.)"),
        "sgd": entry("online SGD (lr 0.1)"),
    }


def test_plot_probabilities_writes_a_non_trivial_png(tmp_path):
    from matplotlib.image import imread

    path = plot_probabilities(_fake_report(), tmp_path / "sub" / "intro.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    image = imread(path)
    assert image.shape[1] > 2 * image.shape[0] and image[..., :3].std() > 0.1  # three panels, not blank
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    no_sgd = {**_fake_report(), "sgd": None}
    assert plot_probabilities(no_sgd, tmp_path / "one.png").stat().st_size > 10_000
