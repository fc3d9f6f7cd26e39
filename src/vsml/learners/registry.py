"""The learner registry: the name a config gives each learner (`learner.name`), and how reports label it.

Every `Learner` (the protocol of `base.py`) that configs can name is listed once here; `build_learner` turns a
config mapping into one, `learner_name` gives a learner's name back, and `learner_labels` the words tables and
plot legends use for it and its meta-parameters.
"""

from __future__ import annotations

from typing import Any

from vsml.config import config_from_dict
from vsml.learners.base import Learner
from vsml.learners.blur.learner import BLUR
from vsml.learners.fast_weights import FWP, FWMemory
from vsml.learners.hebbian import HebbianFW
from vsml.learners.metarnn import MetaRNN
from vsml.learners.sgd import OnlineSGD
from vsml.learners.vsml.learner import VSML

LEARNERS: dict[str, type] = {
    "vsml": VSML,
    "sgd": OnlineSGD,
    "blur": BLUR,
    "metarnn": MetaRNN,
    "hebbian": HebbianFW,
    "fwp": FWP,
    "fwmemory": FWMemory,
}
# How reports name each learner and its meta-parameters (a learner without an entry: its class name).
LEARNER_LABELS: dict[str, tuple[str, str]] = {
    "vsml": ("VSML", "V_M"),
    "blur": ("BLUR", "genome"),
    "metarnn": ("Meta-RNN", "weights"),
    "hebbian": ("Hebbian FW", "meta-parameters"),
    "fwp": ("FWP", "slow weights"),
    "fwmemory": ("FWMemory", "slow weights"),
}


def build_learner(settings: dict[str, Any]) -> Learner:
    """A learner from a config mapping `{name: <registry name>, <its settings>...}` with clear errors."""
    settings = dict(settings)
    name = settings.pop("name", None)
    if name not in LEARNERS:
        raise ValueError(f"learner.name must be one of {sorted(LEARNERS)}, got {name!r}")
    return config_from_dict(LEARNERS[name], settings, path="learner")


def learner_name(learner: Learner) -> str:
    """The registry name of `learner`'s class, or a clear error for a learner outside the registry."""
    for name, cls in LEARNERS.items():
        if type(learner) is cls:
            return name
    raise ValueError(f"{type(learner).__name__} is not in the learner registry {sorted(LEARNERS)}")


def learner_labels(learner: Learner) -> tuple[str, str]:
    """(name of the learner, name of its meta-parameters) for tables and plot legends."""
    for name, cls in LEARNERS.items():
        if type(learner) is cls and name in LEARNER_LABELS:
            return LEARNER_LABELS[name]
    return type(learner).__name__, "meta-parameters"
