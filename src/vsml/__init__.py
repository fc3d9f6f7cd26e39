"""vsml: meta-learned learning algorithms (VSML, BLUR and baselines) in JAX.

from vsml import VSML, TaskSpec, run_episode
learner = VSML()
meta = learner.init_meta(key)                      # V_M, what the outer loop learns
logits = run_episode(learner, meta, key, xs, ys)   # online: predict, then learn from the label
"""

from vsml.evaluate import OnlineEvaluation, evaluate_online
from vsml.learners import LEARNERS, Learner, OnlineSGD, TaskSpec, build_learner, run_episode, run_episodes
from vsml.learners.blur import BLUR, BLURGenome, backprop_blur, backprop_genome
from vsml.learners.vsml import VSML

__version__ = "0.1.0"

__all__ = [
    "BLUR",
    "BLURGenome",
    "LEARNERS",
    "Learner",
    "OnlineEvaluation",
    "OnlineSGD",
    "TaskSpec",
    "VSML",
    "backprop_blur",
    "backprop_genome",
    "build_learner",
    "evaluate_online",
    "run_episode",
    "run_episodes",
]
