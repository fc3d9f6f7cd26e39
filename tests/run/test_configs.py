"""Every shipped experiment config (src/vsml/configs/) is valid, and so is its 2-CPU-core scale, whose one source
is `CPU_SCALE` (src/vsml/reproduce/cpu_scale.py): the headers point there and carry no `--set` command of
their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vsml.config import load_config, shipped_config_names, shipped_configs_dir
from vsml.learners import build_learner
from vsml.meta.cloning import CloneConfig
from vsml.meta.population import split_counts
from vsml.reproduce import meta_efficiency
from vsml.reproduce import recipes as rp
from vsml.reproduce.cpu_scale import CPU_SCALE
from vsml.run.experiment import FEW_SHOT_DATASETS, load_experiment, population_slices
from vsml.tasks import DATASET_NAMES
from vsml.tasks.teachers import parse_teacher_name

ROOT = shipped_configs_dir()
ALL_CONFIGS = sorted(ROOT.rglob("*.yaml"))
# configs/cloning/ holds `vsml clone` configs (tests/meta/test_cloning.py), not experiments.
CONFIGS = [p for p in ALL_CONFIGS if "cloning" not in p.parts]
CLONE_CONFIGS = [p for p in ALL_CONFIGS if "cloning" in p.parts]


def config_id(path: Path) -> str:
    return path.relative_to(ROOT).with_suffix("").as_posix()


def header(path: Path) -> str:
    """The config's leading comment, without the `#`s, continuation lines joined."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return "\n".join(lines).replace("\\\n", " ")


def cpu_scale_overrides(name: str, warm_dir: Path) -> list[str]:
    """`CPU_SCALE[name]`'s overrides, with its warm start (a run folder named after the config it names)."""
    entry = CPU_SCALE[name]
    warm_start = [f"train.init_from={warm_dir / entry.warm_start}"] if entry.warm_start else []
    return [*entry.overrides, *warm_start]


def test_every_shipped_config_has_a_cpu_scale():
    assert set(CPU_SCALE) == set(shipped_config_names())
    assert {config_id(p) for p in CONFIGS} <= set(CPU_SCALE)  # every experiment config, explicitly
    for name, entry in CPU_SCALE.items():
        assert entry.warm_start is None or entry.warm_start in CPU_SCALE, name
        assert all(isinstance(o, str) and "=" in o for o in entry.overrides), name


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_and_its_cpu_scale_are_valid(path, tmp_path):
    for overrides in ([], cpu_scale_overrides(config_id(path), tmp_path)):
        config = load_experiment(path, overrides)
        build_learner(config.learner)
        slices = population_slices(config)
        members = config.es.num_pairs if config.meta_optimizer == "es" else config.grad.num_episodes
        split_counts(members, tuple(s.share for s in slices), "members")
        stages = [stage.population or () for stage in config.curriculum]
        for name in [s.dataset for s in (*slices, *sum(stages, ()))] + list(config.eval.datasets):
            known = name in DATASET_NAMES or name in FEW_SHOT_DATASETS or parse_teacher_name(name) is not None
            assert known, name


@pytest.mark.parametrize("path", CLONE_CONFIGS, ids=config_id)
def test_clone_config_and_its_cpu_scale_are_valid(path):
    load_config(CloneConfig, path, CPU_SCALE[config_id(path)].overrides)


def test_paper_configs_have_a_reduced_cpu_scale():
    """Every paper-scale config is cut down for 2 CPU cores; the CPU-sized ones run as they are."""
    cpu_sized = {
        "demo_digits",
        "es_from_clone",
        "cloning/backprop",
        "cloning/backprop_random_init",
        "meta_efficiency",
        "vsml_general",
    }
    for name, entry in CPU_SCALE.items():
        assert bool(entry.overrides) == (name not in cpu_sized), name


# A `vsml meta-train`/`vsml clone` command with `--set`s, or a continuation line of one: a second source of
# the CPU scale. (`vsml evaluate --set ...` lines, the meta-test settings of invariances.yaml, are not that.)
_SCALE_COMMAND = re.compile(r"^\s*(vsml (meta-train|clone)\b.*--set|--set)", re.M)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=config_id)
def test_header_points_at_cpu_scale_and_has_no_command_of_its_own(path):
    name, text = config_id(path), header(path)
    assert f'CPU_SCALE["{name}"] in src/vsml/reproduce/cpu_scale.py' in " ".join(text.split()), name
    assert not _SCALE_COMMAND.search(text), f"{path}: a --set command in its header (CPU_SCALE is the source)"
    assert "reduced scale" not in text.lower() and "reduced budget" not in text.lower(), name
    # `vsml reproduce X` is named exactly for the experiments that train this config
    trained_by = {
        exp_name
        for exp_name, exp in rp.EXPERIMENTS.items()
        if any(rp.config_name(step.config) == name for step in exp.training)
    } | ({meta_efficiency.NAME} if name == meta_efficiency.BASE_CONFIG else set())  # the study's one task
    assert set(re.findall(r"`vsml reproduce (\w+)`", text)) == trained_by, name
