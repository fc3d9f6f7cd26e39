"""vsml: meta-learned learning algorithms (VSML, BLUR and baselines) in JAX.

from vsml import VSML, TaskSpec, run_episode
learner = VSML()
meta = learner.init_meta(key)                      # V_M, what the outer loop learns
logits = run_episode(learner, meta, key, xs, ys)   # online: predict, then learn from the label
"""

from vsml.evaluate import OnlineEvaluation, evaluate_online
from vsml.learners import (
    FWP,
    LEARNERS,
    FWMemory,
    HebbianFW,
    Learner,
    MetaRNN,
    OnlineSGD,
    TaskSpec,
    build_learner,
    run_episode,
    run_episodes,
)
from vsml.learners.blur import BLUR, BLURGenome, backprop_blur, backprop_genome
from vsml.learners.sgd import online_adam, online_sgd
from vsml.learners.vsml import VSML

__version__ = "0.1.0"

__all__ = [
    "BLUR",
    "BLURGenome",
    "FWMemory",
    "FWP",
    "HebbianFW",
    "LEARNERS",
    "Learner",
    "MetaRNN",
    "OnlineEvaluation",
    "OnlineSGD",
    "TaskSpec",
    "VSML",
    "backprop_blur",
    "backprop_genome",
    "build_learner",
    "evaluate_online",
    "online_adam",
    "online_sgd",
    "run_episode",
    "run_episodes",
]
