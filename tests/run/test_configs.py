"""Every shipped experiment config (src/vsml/configs/) is valid, and so are the reduced-scale overrides its header
documents."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vsml.config import shipped_configs_dir
from vsml.learners import build_learner
from vsml.meta.population import split_counts
from vsml.run.experiment import FEW_SHOT_DATASETS, load_experiment, population_slices
from vsml.tasks import DATASET_NAMES

# configs/cloning/ holds `vsml clone` configs (tests/meta/test_cloning.py), not experiments.
CONFIGS = sorted(p for p in shipped_configs_dir().rglob("*.yaml") if "cloning" not in p.parts)


def documented_overrides(path: Path) -> list[str]:
    """The `--set` values of the reduced-scale command in the config's header comment."""
    header = "\n".join(line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#"))
    command = re.search(r"vsml meta-train .*?(?=\n[^ ]|\Z)", header.replace("\\\n", " "), re.S)
    if command is None:
        return []
    words = shlex.split(command.group(0))
    return [words[i + 1] for i, word in enumerate(words) if word == "--set"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_and_its_reduced_scale_are_valid(path):
    for overrides in ([], documented_overrides(path)):
        config = load_experiment(path, overrides)
        build_learner(config.learner)
        slices = population_slices(config)
        members = config.es.num_pairs if config.meta_optimizer == "es" else config.grad.num_episodes
        split_counts(members, tuple(s.share for s in slices), "members")
        for name in [s.dataset for s in slices] + list(config.eval.datasets):
            assert name in DATASET_NAMES or name in FEW_SHOT_DATASETS, name


def test_paper_configs_document_a_reduced_scale():
    for path in CONFIGS:
        if path.name != "demo_digits.yaml":
            assert documented_overrides(path), f"{path} has no reduced-scale command in its header"
