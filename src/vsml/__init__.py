"""vsml: meta-learned learning algorithms (VSML, BLUR and baselines) in JAX.

from vsml import VSML, TaskSpec, run_episode
learner = VSML()
meta = learner.init_meta(key)                      # V_M, what the outer loop learns
logits = run_episode(learner, meta, key, xs, ys)   # online: predict, then learn from the label

la = load_pretrained("vsml_general")               # a shipped meta-trained LA (vsml.list_pretrained())
evaluate_online(la, X, y, episodes=16, length=500).curve   # its online learning curve on your arrays
"""

from vsml.evaluation.arrays import evaluate_online
from vsml.evaluation.online import OnlineEvaluation
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
from vsml.learners.blur.learner import BLUR, BLURGenome, backprop_blur, backprop_genome
from vsml.learners.sgd import online_adam, online_sgd
from vsml.learners.vsml import VSML
from vsml.pretrained.load import Pretrained, list_pretrained, load_pretrained

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
    "Pretrained",
    "TaskSpec",
    "VSML",
    "backprop_blur",
    "backprop_genome",
    "build_learner",
    "evaluate_online",
    "list_pretrained",
    "load_pretrained",
    "online_adam",
    "online_sgd",
    "run_episode",
    "run_episodes",
]
