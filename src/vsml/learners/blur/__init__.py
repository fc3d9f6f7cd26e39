"""BLUR (Sandler et al., ICML 2021, arXiv 2104.04657): bidirectional synapses and a meta-learned Hebbian update.

Modules: `learner` (the `BLUR` learner, its genome and state) and `reference` (the authors' packed layout, a
test oracle that imports the learner's public types; the learner never imports it).
"""

from vsml.learners.blur.learner import (
    BLUR,
    BLURGenome,
    BLURState,
    backprop_blur,
    backprop_genome,
    count_genome_parameters,
    random_genome,
)

__all__ = [
    "BLUR",
    "BLURGenome",
    "BLURState",
    "backprop_blur",
    "backprop_genome",
    "count_genome_parameters",
    "random_genome",
]
