"""The outer loop: meta-losses (`objectives`) and meta-optimisers (`es`, ...) over any `Learner` (DESIGN.md).

Only the pure building blocks are re-exported here; the trainer and the parallel helpers are imported from
their own modules (`vsml.run.trainer`, `vsml.meta.parallel`), so importing `vsml.meta` stays light.
"""

from vsml.meta.cmaes import CMAESConfig, CMAESState, cmaes_ask, cmaes_init, cmaes_tell, ravel_meta
from vsml.meta.es import (
    ESInfo,
    OpenESConfig,
    es_gradient,
    es_gradient_from_losses,
    es_update,
    evaluate_antithetic_population,
    make_es_optimizer,
    sample_antithetic_noise,
)
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

__all__ = [
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
    "evaluate_antithetic_population",
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
