"""Tiny configs of each meta-optimiser whose V_M after 3 iterations is pinned in tests/data/meta_regression.npz."""

from __future__ import annotations

from vsml.run.experiment import experiment_from_dict
from vsml.run.trainer import MetaTrainer

_BASE = {
    "seed": 3,
    "task": {"dataset": "digits", "episode_length": 6},
    "train": {"iterations": 3, "checkpoint_every": 3},
    "eval": {"datasets": ["digits"], "every": 3, "num_episodes": 2, "episode_length": 6},
}

REGRESSION_CONFIGS = {
    "es": {"learner": {"name": "vsml", "feed_label": True}, "meta_optimizer": "es", "es": {"num_pairs": 3}},
    "cmaes": {
        "learner": {"name": "blur", "hidden_sizes": [8]},
        "meta_optimizer": "cmaes",
        "cmaes": {"population_size": 6, "num_episodes": 2},
    },
    # Two population slices (one projected) and the relative noise scale: the sliced ES path.
    "es_sliced": {
        "learner": {"name": "vsml", "feed_label": True},
        "meta_optimizer": "es",
        "es": {"num_pairs": 3, "relative_floor": 0.5},
        "population": [{"dataset": "digits", "transform": {"project": True}}, {"dataset": "digits"}],
    },
    "grad_sliced": {
        "learner": {"name": "vsml", "feed_label": True},
        "meta_optimizer": "grad",
        "grad": {"num_episodes": 2},
        "population": [{"dataset": "digits", "transform": {"project": True}}, {"dataset": "digits"}],
    },
    "grad": {"learner": {"name": "vsml", "feed_label": True}, "meta_optimizer": "grad", "grad": {"num_episodes": 2}},
}


def regression_trainer(name: str, run_dir) -> MetaTrainer:
    data = {"name": f"regression_{name}", **_BASE, **REGRESSION_CONFIGS[name]}
    return MetaTrainer(experiment_from_dict(data), run_dir)
