"""Learning algorithms behind one interface (`base.Learner`), and the registry configs name them by."""

from __future__ import annotations

from typing import Any

from vsml.learners.base import Learner, TaskSpec, run_episode, run_episode_from_state, run_episodes
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


def build_learner(settings: dict[str, Any]) -> Learner:
    """A learner from a config mapping `{name: <registry name>, <its settings>...}` with clear errors."""
    from vsml.config import config_from_dict  # config imports nothing from here; kept local to avoid a cycle

    settings = dict(settings)
    name = settings.pop("name", None)
    if name not in LEARNERS:
        raise ValueError(f"learner.name must be one of {sorted(LEARNERS)}, got {name!r}")
    return config_from_dict(LEARNERS[name], settings, path="learner")


def learner_name(learner: Learner) -> str:
    for name, cls in LEARNERS.items():
        if type(learner) is cls:
            return name
    raise ValueError(f"{type(learner).__name__} is not in the learner registry {sorted(LEARNERS)}")


__all__ = [
    "BLUR",
    "FWP",
    "FWMemory",
    "HebbianFW",
    "LEARNERS",
    "Learner",
    "MetaRNN",
    "OnlineSGD",
    "TaskSpec",
    "VSML",
    "build_learner",
    "learner_name",
    "run_episode",
    "run_episode_from_state",
    "run_episodes",
]
