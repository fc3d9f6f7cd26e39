"""How tables and plot legends name learners, meta-optimisers and hand-designed baselines: defined once.

The learners' own display names live beside their registry names (`vsml.learners.registry.LEARNER_LABELS`).
"""

from __future__ import annotations

from collections.abc import Sequence

from vsml.learners.base import Learner
from vsml.learners.registry import learner_labels

META_OPTIMIZER_LABELS = {"es": "ES", "grad": "meta-gradient", "cmaes": "CMA-ES"}
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam"}  # the hand-designed online optimisers (spec §5)


def meta_trained_label(learner: Learner, iteration: int, meta_optimizer: str) -> str:
    """A meta-trained learner's name in reports, e.g. "VSML, meta-trained V_M (450 ES it.)"."""
    name, meta_name = learner_labels(learner)
    return f"{name}, meta-trained {meta_name} ({iteration} {META_OPTIMIZER_LABELS[meta_optimizer]} it.)"


def architecture_label(hidden_sizes: Sequence[int]) -> str:
    """The architecture's name in reports: linear, tanh MLP 160, tanh MLP 128-64."""
    return "tanh MLP " + "-".join(str(h) for h in hidden_sizes) if hidden_sizes else "linear"


def optimizer_label(optimizer: str) -> str:
    """A hand-designed online optimiser's name: "online SGD", "online Adam"."""
    return f"online {OPTIMIZER_LABELS[optimizer]}"


def hand_designed_label(optimizer: str, hidden_sizes: Sequence[int]) -> str:
    """A hand-designed optimiser on an architecture: "online SGD, linear", "online Adam, tanh MLP 160"."""
    return f"{optimizer_label(optimizer)}, {architecture_label(hidden_sizes)}"
