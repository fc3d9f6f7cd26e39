"""The outer loop, pure: meta-losses (`objectives`), the problem a population is scored on (`problem`), and the
meta-optimisers behind one protocol (`protocol.MetaOptimizer`: `es.OpenES`, `cmaes.CMAES`, `grad.MetaGradient`,
by config name in `registry`). The trainer, which adds files, logs and progress, is `vsml.run.trainer`.
"""

from vsml.meta.cmaes import CMAES, CMAESConfig, CMAESState, cmaes_ask, cmaes_init, cmaes_tell, ravel_meta
from vsml.meta.es import (
    ESInfo,
    OpenES,
    OpenESConfig,
    es_gradient,
    es_gradient_from_losses,
    es_update,
    make_es_optimizer,
    sample_antithetic_noise,
)
from vsml.meta.grad import GradConfig, MetaGradient
from vsml.meta.objectives import (
    META_LOSSES,
    QUERY_LOSSES,
    Objective,
    episode_meta_loss,
    final_step_accuracy,
    last_step_cross_entropy,
    mean_online_cross_entropy,
    meta_loss_by_name,
    online_accuracy,
    online_accuracy_curve,
    online_loss_curve,
    per_step_cross_entropy,
)
from vsml.meta.problem import EpisodeProblem
from vsml.meta.protocol import MetaOptimizer, MetaProblem, MetaState, meta_step
from vsml.meta.registry import META_OPTIMIZERS, build_meta_optimizer

__all__ = [
    "CMAES",
    "EpisodeProblem",
    "GradConfig",
    "META_OPTIMIZERS",
    "MetaGradient",
    "MetaOptimizer",
    "MetaProblem",
    "MetaState",
    "OpenES",
    "build_meta_optimizer",
    "meta_step",
    "CMAESConfig",
    "CMAESState",
    "ESInfo",
    "META_LOSSES",
    "QUERY_LOSSES",
    "Objective",
    "cmaes_ask",
    "cmaes_init",
    "cmaes_tell",
    "episode_meta_loss",
    "ravel_meta",
    "OpenESConfig",
    "es_gradient",
    "es_gradient_from_losses",
    "es_update",
    "final_step_accuracy",
    "last_step_cross_entropy",
    "make_es_optimizer",
    "mean_online_cross_entropy",
    "meta_loss_by_name",
    "online_accuracy",
    "online_accuracy_curve",
    "online_loss_curve",
    "per_step_cross_entropy",
    "sample_antithetic_noise",
]
