"""The seeds every evaluation shares, defined once.

Evaluation (spec §2) draws its held-out episodes from a fixed key, so every command, run and report that
meta-tests a learner sees the same episodes; hand-designed baselines are tuned on other episodes (another key,
the meta-training split) so that their chosen rate is not fitted to the episodes they are scored on.
"""

EVAL_SEED = 22  # spec §2: evaluation uses a fixed key (seed 22), the same episodes every time
TUNE_SEED = 1  # the key baselines are tuned with (`vsml evaluate`, `vsml introspect`, `vsml sweep-lr`)
