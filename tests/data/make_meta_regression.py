"""Writes meta_regression.npz: V_M after 3 iterations of es, cmaes and grad on tiny configs, recorded before the
outer loop moved behind the MetaOptimizer protocol (issue 23), so that the redesign provably did not move
results. Run from the repository root: `python tests/data/make_meta_regression.py`. Only rerun it on purpose:
tests/meta/test_meta_regression.py compares against what it wrote. Rerun once since, on 2026-12-07, when
cmaes_ask moved from B D z to the basis-free B D Bᵀ z: only the cmaes digest changed (es, es_sliced, grad and
grad_sliced came out bit-identical)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

# The suite's compilation level (tests/conftest.py): Adam's first steps follow the sign of each meta-gradient
# entry, so the machine code of -O1 and -O3 can differ visibly on entries whose gradient is near zero. The suite
# also sets two compile-speed flags (LLVM's expensive passes, XLA:CPU's emitters) that were not set when these
# entries were written; the test passes under them at its tolerance.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=1".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.meta.meta_regression_configs import REGRESSION_CONFIGS, regression_trainer  # noqa: E402

if __name__ == "__main__":
    arrays, digests = {}, {}
    for name in REGRESSION_CONFIGS:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = regression_trainer(name, run_dir)
            trainer.run(progress=False)
            leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(trainer.meta)]
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = leaf
        digests[name] = hashlib.sha256(b"".join(leaf.tobytes() for leaf in leaves)).hexdigest()
    out = Path(__file__).with_name("meta_regression.npz")
    np.savez(out, **arrays)
    out.with_suffix(".json").write_text(json.dumps(digests, indent=1) + "\n")
    print(json.dumps(digests, indent=1))
