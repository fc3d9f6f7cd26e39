"""`CPU_SCALE` (vsml/reproduce/cpu_scale.py) is the one source of the cpu-small settings: the recipes take
theirs from it, it imports only the standard library, and the commands it prints are real `vsml` commands.
(tests/run/test_configs.py checks that each entry gives a valid config and that the headers point here.)"""

from __future__ import annotations

import ast
import shlex
import sys
from pathlib import Path

import pytest

from vsml.cli.main import _build_parser
from vsml.config import resolve_config_path
from vsml.reproduce import cpu_scale
from vsml.reproduce import recipes as rp
from vsml.reproduce.cpu_scale import CLASSES_2_5_10, CPU_SCALE, commands
from vsml.run.experiment import load_experiment


def test_cpu_scale_imports_only_the_standard_library():
    tree = ast.parse(Path(cpu_scale.__file__).read_text(encoding="utf-8"))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    allowed = sys.stdlib_module_names | {"__future__"}
    assert modules and all(m.split(".")[0] in allowed for m in modules), modules


def test_recipes_take_their_cpu_small_settings_from_cpu_scale():
    steps = {
        (step.run, step.config, step.overrides["cpu-small"], tuple(step.warm_start.items()))
        for exp in rp.EXPERIMENTS.values()
        for step in rp.training_at(exp, "cpu-small")
    }
    configs = {rp.config_name(config) for _, config, _, _ in steps}
    for run, config, overrides, warm_start in steps:
        entry = CPU_SCALE[rp.config_name(config)]
        # the entry's overrides first, in order; after them only what makes a variant run (ES from random, a seed)
        assert overrides[: len(entry.overrides)] == entry.overrides, run
        extra = overrides[len(entry.overrides) :]
        seeded = run.startswith(("fig6_seed", "blur_mnist_random_init_seed")) and extra == (f"seed={run[-1]}",)
        variant = run in ("es_from_random", "blur_mnist_backprop_init")
        assert not extra or variant or seeded, run
        if entry.warm_start is not None:  # the warm start is the run of the config CPU_SCALE names
            (scale, warm_run), *_ = warm_start
            warm_config = next(c for r, c, _, _ in steps if r == warm_run)
            assert (scale, rp.config_name(warm_config)) == ("cpu-small", entry.warm_start), run
    assert {"fig6_mnist_rand_proj", "baselines/metarnn_mnist", "blur/mnist_cmaes", "omniglot"} <= configs


def test_fig6_cpu_scale_is_the_meta_efficiency_task_with_its_curriculum_from_scratch():
    from vsml.reproduce.meta_efficiency import BASE_CONFIG, VARIANTS, stage_config

    entry = CPU_SCALE["fig6_mnist_rand_proj"]
    assert entry.warm_start is None and f"curriculum={CLASSES_2_5_10}" in entry.overrides
    assert {"es.num_pairs=64", "transform.resize=[8, 8]", "learner.feed_label=true"} <= set(entry.overrides)
    # The study measured this curriculum (variant classes_2_to_10) on its task, the same learner and ES.
    assert VARIANTS["classes_2_to_10"].stages[0].overrides == (f"curriculum={CLASSES_2_5_10}",)
    study = stage_config(0, VARIANTS["classes_2_to_10"].stages[0])
    fig6 = load_experiment(resolve_config_path("fig6_mnist_rand_proj"), [*entry.overrides, "seed=0"])
    assert BASE_CONFIG == "meta_efficiency"
    for section in ("learner", "task", "es", "transform", "population", "curriculum"):
        assert getattr(fig6, section) == getattr(study, section), section


def test_the_demo_meta_trains_with_the_default_recipe_of_the_meta_efficiency_study():
    """`make demo` uses the study's default (issue 24); Fig. 6's recipe stays the one its report ran (the class
    curriculum at the authors' Adam rate, test above) until that report is run again."""
    from vsml.reproduce.meta_efficiency import DEFAULT_VARIANT, VARIANTS, stage_config

    (stage,) = VARIANTS[DEFAULT_VARIANT].stages
    assert f"curriculum={CLASSES_2_5_10}" in stage.overrides
    study = stage_config(0, stage)
    demo = load_experiment(resolve_config_path("demo_digits"))
    assert demo.curriculum == study.curriculum and len(demo.curriculum) == 2
    assert (demo.es, demo.learner, demo.task.normalisation) == (study.es, study.learner, study.task.normalisation)
    assert demo.es.learning_rate == 0.1


@pytest.mark.parametrize("name", sorted(CPU_SCALE))
def test_printed_commands_are_real_commands(name):
    printed = commands(name, "r")
    parser = _build_parser()
    for command in printed:
        words = shlex.split(command)
        assert words[0] == "vsml"
        parser.parse_args(words[1:])
    words = shlex.split(printed[-1])
    verb = "clone" if name.startswith("cloning/") else "meta-train"
    assert words[1:5] == [verb, name, "--out", f"r/{name}"]
    sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    warm = CPU_SCALE[name].warm_start
    assert sets == [*CPU_SCALE[name].overrides, *([f"train.init_from=r/{warm}"] if warm else [])]
    assert len(printed) == 1 + (warm is not None)


def test_main_prints_and_rejects_unknown_names(capsys):
    assert cpu_scale.main(["fig6_mnist_rand_proj"]) == 0
    out = capsys.readouterr().out
    assert "vsml meta-train fig6_mnist_rand_proj" in out and "curriculum" in out
    assert cpu_scale.main(["fig6"]) == 2
    assert "shipped configs" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(cpu_scale.FIG8_TRAINING_SETS))
def test_fig8_array_trains_on_its_configs_datasets(name):
    """The from-scratch recipe's population (8x8, each dataset projected and not) covers exactly the datasets of
    vsml/configs/fig8/<name>.yaml."""
    from vsml.run.experiment import load_experiment

    config = load_experiment(resolve_config_path(f"fig8/{name}.yaml"))
    scaled = load_experiment(resolve_config_path(f"fig8/{name}.yaml"), cpu_scale.CPU_SCALE[f"fig8/{name}"].overrides)
    wanted = {piece.dataset for piece in config.population}
    assert set(cpu_scale.FIG8_TRAINING_SETS[name]) == wanted
    assert {(piece.dataset, piece.transform.project) for piece in scaled.population} == {
        (dataset, projected) for dataset in wanted for projected in (True, False)
    }
    assert all(piece.transform.resize == (8, 8) for piece in scaled.population)
