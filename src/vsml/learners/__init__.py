"""Learning algorithms behind one interface (`base.Learner`), and the registry configs name them by."""

from vsml.learners.base import Learner, TaskSpec, run_episode, run_episode_from_state, run_episodes
from vsml.learners.blur import BLUR
from vsml.learners.fast_weights import FWP, FWMemory
from vsml.learners.hebbian import HebbianFW
from vsml.learners.metarnn import MetaRNN
from vsml.learners.registry import LEARNER_LABELS, LEARNERS, build_learner, learner_labels, learner_name
from vsml.learners.sgd import OnlineSGD
from vsml.learners.vsml import VSML

__all__ = [
    "BLUR",
    "FWP",
    "FWMemory",
    "HebbianFW",
    "LEARNERS",
    "LEARNER_LABELS",
    "Learner",
    "MetaRNN",
    "OnlineSGD",
    "TaskSpec",
    "VSML",
    "build_learner",
    "learner_labels",
    "learner_name",
    "run_episode",
    "run_episode_from_state",
    "run_episodes",
]
