"""`vsml reproduce NAME`: run a named experiment of the papers end to end and write its report.

An `Experiment` is a recipe of `vsml` commands: meta-training steps (`vsml meta-train`, a config shipped in
`vsml/configs/` and named as `vsml.config.resolve_config_path` knows it, so that the recipes work outside a
checkout, with per-scale `--set` overrides and an optional warm start from an earlier step), then report steps
(`vsml evaluate`, `vsml compare`, `vsml introspect`). Two scales:

- `cpu-small`: each config's scale for 2 CPU cores, `CPU_SCALE` in `reproduce/cpu_scale.py` (the one source of
  those settings; the numbers in reports/ were measured at it), in minutes to a few hours per experiment;
- `paper`: the configs as they are (P = 1024 pairs, T = 500, 10^4 and more iterations: a GPU job).

Runs live in `<runs_dir>/<scale>/<run>` and are shared between experiments (Fig. 8's grid reuses the Fig. 6
run), so a finished run is never trained twice; a partial one is resumed from its last checkpoint, so an
interrupted reproduction continues where it stopped. Each report step writes its full output (JSON, CSV,
markdown, PNG) into `<runs_dir>/<scale>/_reports/<NAME>/<step>/` and is reused while its runs are unchanged;
`<reports_dir>/<NAME>/` gets results.json (every report step's JSON, by step), README.md (what was run, the
equivalent commands, scale, date, wall times, the tables) and the PNGs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from vsml.config import resolve_config_path
from vsml.evaluation.baselines import HAND_DESIGNED
from vsml.evaluation.defaults import EVAL_SEED
from vsml.report.tables import RESULTS_FILE  # in <reports_dir>/<NAME>/: every report step's JSON, by step
from vsml.reproduce.cpu_scale import CPU_SCALE, FIG8_TRAINING_SETS

SCALES = ("cpu-small", "paper")
REPORTS_SUBDIR = "_reports"  # under <runs_dir>/<scale>/: the report steps' full outputs
HAND_DESIGNED_TOKENS = tuple(HAND_DESIGNED)  # `vsml compare` names: sgd, adam, sgd-160, adam-160


# ----- the recipe --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainStep:
    """`vsml meta-train <config> --out <runs_dir>/<scale>/<run> --resume --set ...`."""

    run: str  # run directory name, shared by every experiment that uses this step
    config: str  # a shipped config's file under vsml/configs/ (e.g. "fig8/all.yaml"; an absolute path also works)
    overrides: Mapping[str, tuple[str, ...]]  # per scale; a scale not listed: the step does not run at it
    # scale -> an earlier run of the experiment whose meta-parameters start this one (`train.init_from`)
    warm_start: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CloneRun:
    """`vsml clone <config> --out <runs_dir>/<scale>/<run> --set ...`: learning-algorithm cloning and
    its free-running evaluation. Its run directory can warm-start a later `TrainStep` (the cloned V_M)."""

    run: str
    config: str
    overrides: Mapping[str, tuple[str, ...]]
    warm_start: Mapping[str, str] = field(default_factory=dict)  # never set: a clone starts from its config


@dataclass(frozen=True)
class Size:
    """How much a report step evaluates; None takes the run config's `eval` setting (or the command's default)."""

    episodes: int | None = None
    length: int | None = None


@dataclass(frozen=True)
class MetaTest:
    """`vsml evaluate RUN`: the run against its untrained start, tuned online SGD/Adam and chance."""

    name: str
    run: str
    sizes: Mapping[str, Size]  # per scale; a scale not listed: the step does not run at it
    datasets: tuple[str, ...] = ()  # empty: the run config's eval.datasets
    overrides: tuple[str, ...] = ()  # the meta-test setting, e.g. transform.resize=null
    baselines: bool = True
    # Further runs (other seeds of the same config), meta-tested on the same episodes and combined with `run`:
    # mean ± 95% over runs beside the intervals over episodes (`vsml evaluate RUN RUN ...`).
    more_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Compare:
    """`vsml compare`: the generalisation grid. Contenders are run names of the experiment (those it does not
    train at a scale are left out there) and hand-designed tokens (`sgd`, `adam`, `sgd-160`, `adam-160`)."""

    name: str
    contenders: tuple[str, ...]
    datasets: tuple[str, ...]
    sizes: Mapping[str, Size]
    overrides: tuple[str, ...] = ()
    seed: int = EVAL_SEED
    # Columns added only where the data folder holds their files (datasets users supply, e.g. EMNIST); the
    # report names the absent ones.
    if_present: tuple[str, ...] = ()


def compare_datasets(
    step: Compare, data_dir: str | None = None, strict: bool = True
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the step's columns: its datasets, then those of `if_present` whose files are in the data folder; the
    absent ones). A data folder that does not exist is an error, or with `strict=False` (printing the plan of a
    run that will fail on it anyway) leaves out every `if_present` column."""
    from vsml.tasks.datasets import dataset_files_present

    try:
        present = tuple(name for name in step.if_present if dataset_files_present(name, data_dir))
    except FileNotFoundError:
        if strict:
            raise
        present = ()
    return (*step.datasets, *present), tuple(name for name in step.if_present if name not in present)


@dataclass(frozen=True)
class Introspect:
    """`vsml introspect RUN`: class probabilities by earlier examples (VSML Sec. 5); BLUR: update asymmetry."""

    name: str
    run: str
    sizes: Mapping[str, Size]
    dataset: str | None = None
    ways: int = 5
    overrides: tuple[str, ...] = ()  # the meta-test setting, e.g. transform.resize=null
    more_runs: tuple[str, ...] = ()  # other seeds of the same config, on the same episodes (as MetaTest's)


@dataclass(frozen=True)
class SuiteStep:
    """`vsml suite RUN --suite SUITE`: the run on a fixed meta-test suite of unseen data sets against online SGD
    and Adam tuned on the very episodes they are scored on (`vsml.evaluation.suite`; the suite fixes its sizes)."""

    name: str
    run: str
    sizes: Mapping[str, Size]  # only its scales count (a scale not listed: the step does not run at it)
    suite: str = "general"


ReportStep = MetaTest | Compare | Introspect | SuiteStep


@dataclass(frozen=True)
class Experiment:
    """A named paper experiment: what it reproduces, its meta-training steps in order, then its report steps."""

    description: str
    training: tuple[TrainStep | CloneRun, ...]
    reports: tuple[ReportStep, ...]


# ----- the registry ------------------------------------------------------------------------------------------

BOTH = {"cpu-small": Size(), "paper": Size()}  # the run config's eval setting at either scale


def config_name(config: str) -> str:
    """A shipped config's name as `resolve_config_path` and `CPU_SCALE` know it: "fig8/all.yaml" -> "fig8/all"."""
    return Path(config).with_suffix("").as_posix()


def cpu_small(config: str) -> tuple[str, ...]:
    """A shipped config's cpu-small overrides: `CPU_SCALE` (reproduce/cpu_scale.py) is their one source."""
    return CPU_SCALE[config_name(config)].overrides


def cpu_small_warm_start(config: str, *earlier: TrainStep | CloneRun) -> dict[str, str]:
    """`warm_start` at cpu-small: the run among `earlier` trained from the config `CPU_SCALE` names."""
    wanted = CPU_SCALE[config_name(config)].warm_start
    return {} if wanted is None else {"cpu-small": {config_name(s.config): s.run for s in earlier}[wanted]}


def _scaled(run: str, config: str, *earlier: TrainStep | CloneRun) -> TrainStep:
    """`config` at cpu-small as `CPU_SCALE` has it (warm start from one of `earlier`), and as it is at paper."""
    return TrainStep(
        run, config, {"cpu-small": cpu_small(config), "paper": ()}, cpu_small_warm_start(config, *earlier)
    )


DEMO = _scaled("demo", "demo_digits.yaml")  # already a CPU-scale config
# The same run, needed only at cpu-small: there it is a contender of the Fig. 8 grid.
DEMO_AT_CPU_SMALL = TrainStep(DEMO.run, DEMO.config, {"cpu-small": DEMO.overrides["cpu-small"]})


def _seeded(prefix: str, config: str, seeds: tuple[int, ...]) -> tuple[TrainStep, ...]:
    """One run of `config` per seed (fixed in advance), named `<prefix><seed>`, at either scale."""
    return tuple(
        TrainStep(
            f"{prefix}{seed}", config, {"cpu-small": (*cpu_small(config), f"seed={seed}"), "paper": (f"seed={seed}",)}
        )
        for seed in seeds
    )


# Fig. 6 from a random V_M, one run per seed; Fig. 8's grid takes the first.
FIG6_SEEDS = (0, 1, 2)
FIG6 = _seeded("fig6_seed", "fig6_mnist_rand_proj.yaml", FIG6_SEEDS)
# The Fig. 8 baselines meta-trained on MNIST.
BASELINES = tuple(
    _scaled(f"{learner}_mnist", f"baselines/{learner}_mnist.yaml")
    for learner in ("metarnn", "hebbian", "fwmemory", "fwp")
)
# Fig. 8's dataset array: VSML meta-trained from scratch on each training set (reproduce/cpu_scale.py).
FIG8_ARRAY = tuple(_scaled(f"fig8_{name}", f"fig8/{name}.yaml") for name in FIG8_TRAINING_SETS)
# BLUR from the authors' random genome, one run per seed (fixed in advance), and one from the backprop genome.
BLUR_SEEDS = (0, 1)
_BLUR_CONFIG = "blur/mnist_cmaes.yaml"
BLUR_RANDOM_INIT = _seeded("blur_mnist_random_init_seed", _BLUR_CONFIG, BLUR_SEEDS)
_FROM_BACKPROP = ("learner.genome_init=backprop",)
BLUR_BACKPROP_INIT = TrainStep(
    "blur_mnist_backprop_init",
    _BLUR_CONFIG,
    {"cpu-small": (*cpu_small(_BLUR_CONFIG), *_FROM_BACKPROP), "paper": _FROM_BACKPROP},
)
VSML_GENERAL = _scaled("vsml_general", "vsml_general.yaml")
BLUR_TOY2D = _scaled("blur_toy2d", "blur/toy2d.yaml")
OMNIGLOT = _scaled("omniglot", "omniglot.yaml")

_CLONE_CONFIG = "cloning/backprop.yaml"
CLONE = CloneRun("clone_backprop", _CLONE_CONFIG, {"cpu-small": cpu_small(_CLONE_CONFIG), "paper": ()})
ES_FROM_CLONE = TrainStep(
    "es_from_clone",
    "es_from_clone.yaml",
    {"cpu-small": cpu_small("es_from_clone.yaml"), "paper": ()},
    warm_start={"cpu-small": CLONE.run, "paper": CLONE.run},  # the config starts from the clone at any scale
)
_FROM_RANDOM = ("train.init_from=null", "es.relative_floor=null")  # plain ES, as meta-training from scratch
ES_FROM_RANDOM = TrainStep(
    "es_from_random",
    "es_from_clone.yaml",
    {"cpu-small": (*cpu_small("es_from_clone.yaml"), *_FROM_RANDOM), "paper": _FROM_RANDOM},
)

_GRID_RUNS = (*(step.run for step in FIG8_ARRAY), FIG6[0].run, "demo", *(step.run for step in BASELINES))
_AT_28X28 = ("transform.resize=null",)  # the cpu-small VSML run was meta-trained at 8x8; meta-test at 28x28

EXPERIMENTS: dict[str, Experiment] = {
    "demo": Experiment(
        "`make demo` (VSML paper Sec. 4, spec §9): VSML meta-trained by ES on scikit-learn's 8x8 digits, "
        "meta-tested on held-out digits against its untrained V_M and tuned online SGD/Adam, plus the Sec. 5 "
        "introspection (how fast a class is recognised). The config is already CPU-sized: both scales run it "
        "as it is.",
        (DEMO,),
        (
            MetaTest("meta_test", "demo", BOTH),
            Introspect("introspect", "demo", {"cpu-small": Size(32, 30), "paper": Size(32, 30)}, "digits"),
        ),
    ),
    "fig6": Experiment(
        "VSML paper Fig. 6 (Sec. 4.2): VSML meta-trained from a random V_M on MNIST only (half of the "
        "population randomly projected), three seeds, meta-tested for 2,000 online steps on MNIST and "
        "Fashion-MNIST against tuned online SGD and Adam: learning curves, accuracy over the first 50, 100, 500 "
        "and 2,000 examples with 95% intervals over episodes and over seeds. At cpu-small the recipe is "
        "CPU_SCALE's (reproduce/cpu_scale.py): MNIST at 8x8 with the meta_efficiency study's curriculum over "
        "classes (0-1, then 0-4, then all ten), 2,000 ES iterations of 64 pairs per seed; meta-test at 28x28.",
        FIG6,
        (
            MetaTest(
                "meta_test",
                FIG6[0].run,
                {"cpu-small": Size(16, 2000), "paper": Size()},
                ("mnist", "fashion_mnist"),
                _AT_28X28,
                more_runs=tuple(step.run for step in FIG6[1:]),
            ),
            # VSML Sec. 5 on each seed: how fast a class is recognised, at 28x28, beside tuned SGD.
            Introspect(
                "introspect", FIG6[0].run, {"cpu-small": Size(64, 30), "paper": Size(64, 30)}, "mnist",
                overrides=_AT_28X28, more_runs=tuple(step.run for step in FIG6[1:]),
            ),  # fmt: skip
        ),
    ),
    "fig8": Experiment(
        "VSML paper Fig. 8 (Sec. 4.4): does a meta-learner generalise beyond its meta-training set? The dataset "
        "array (VSML meta-trained from a random V_M on each of the paper's training sets we have data for: MNIST, "
        "Fashion-MNIST and Random singly, all three, and each left out; the recipe in reproduce/cpu_scale.py), "
        "then the Fig. 6 VSML run (seed 0), the demo's digits LA and the meta-learned baselines (Meta-RNN, "
        "Hebbian FW, FWMemory, FWP; by gradients through the unroll, vsml/configs/baselines/); these on MNIST "
        "only (the demo on digits); and tuned online SGD/Adam; on MNIST, Fashion-MNIST, Random, Sum Sign "
        "and digits, plus EMNIST, KMNIST and CIFAR-10 where the data folder holds their files (the report "
        "names those absent; CIFAR-10 only for learners that take 32x32x3 inputs), then on MNIST/Fashion-MNIST "
        "under a new random projection.",
        (*FIG8_ARRAY, DEMO_AT_CPU_SMALL, FIG6[0], *BASELINES),
        (
            Compare(
                "all_datasets",
                (*_GRID_RUNS, *HAND_DESIGNED_TOKENS),
                ("mnist", "fashion_mnist", "random", "sum", "digits"),
                {"cpu-small": Size(16, 500), "paper": Size(32, 2000)},
                _AT_28X28,
                if_present=("emnist", "kmnist", "cifar10"),  # the paper's other columns, files the user supplies
            ),
            Compare(
                "new_projection",
                (*_GRID_RUNS, "sgd", "adam"),
                ("mnist", "fashion_mnist"),
                {"cpu-small": Size(16, 500), "paper": Size(32, 2000)},
                (*_AT_28X28, "transform.project=true"),
            ),
        ),
    ),
    "blur_mnist": Experiment(
        "BLUR paper Sec. 4.4 / Fig. 7 at its budget: genomes meta-trained by CMA-ES (population 80, 400 "
        "generations, 196 -> 512 -> 10, k = 2, 14x14 MNIST) from the authors' random genome, seeds 0 and 1, and "
        "one run from the backprop genome; meta-tested by query accuracy after 15 learning batches on MNIST and "
        "Fashion-MNIST, and by the accuracy on each batch before it is learned, against SGD and Adam on the same "
        "MLP and batches with tuned rates; plus the asymmetry of the update Jacobian (BLUR Sec. 3.5).",
        (*BLUR_RANDOM_INIT, BLUR_BACKPROP_INIT),
        (
            MetaTest(
                "meta_test_random_init",
                BLUR_RANDOM_INIT[0].run,
                {"cpu-small": Size(32), "paper": Size()},
                more_runs=tuple(step.run for step in BLUR_RANDOM_INIT[1:]),
            ),
            MetaTest("meta_test_backprop_init", BLUR_BACKPROP_INIT.run, {"cpu-small": Size(32), "paper": Size()}),
            Introspect(
                "introspect",
                BLUR_RANDOM_INIT[0].run,
                {"cpu-small": Size(32, 30), "paper": Size(32, 30)},
                "mnist",
            ),
        ),
    ),
    "blur_toy2d": Experiment(
        "BLUR paper Figs. 3-4 (Sec. 4.1): a genome meta-trained by gradients on the 2-D toys xor, and and "
        "two-moons, meta-tested on the other toys and on MNIST (784 inputs: the genome is shape-free).",
        (BLUR_TOY2D,),
        (MetaTest("meta_test", "blur_toy2d", {"cpu-small": Size(16), "paper": Size()}),),
    ),
    "cloning": Experiment(
        "VSML paper Sec. 3.2 / 4.1 (spec §4): learning-algorithm cloning. V_M is fitted by gradients (from a "
        "hand-derived construction) so that VSML runs online backprop in forward mode; run free, it trains "
        "784-10 and 784-32-10 networks on MNIST and Fashion-MNIST for one online pass against its teacher "
        "from the same initial weights. Then ES meta-training on digits from the cloned V_M (relative "
        "search, es.relative_floor) against plain ES from a random V_M. The configs are CPU-sized: both "
        "scales run them as they are (reports/cloning_cpu_small/ has the measured result and a figure of the two ES "
        "runs).",
        (CLONE, ES_FROM_CLONE, ES_FROM_RANDOM),
        (
            MetaTest("meta_test_from_clone", ES_FROM_CLONE.run, BOTH),
            MetaTest("meta_test_from_random", ES_FROM_RANDOM.run, BOTH),
        ),
    ),
    "vsml_general": Experiment(
        "The flagship LA (issue 24 Sec. 3): VSML meta-trained from a random V_M on a mixture of tasks "
        "(vsml/configs/vsml_general.yaml: MNIST at 8x8 and 4x4, projected or not, Sum Sign, random linear and "
        "tanh-MLP teachers; a curriculum over classes; 8,000 ES iterations of 64 pairs, a budget of 2 hours of "
        "2 cores), then meta-tested on the suite `general` of data sets it never saw (Fashion-MNIST at 28x28, "
        "Omniglot's Korean and Tagalog alphabets 5- and 20-way, scikit-learn's digits, a generated blobs family; "
        "and Sum Sign) against online SGD and Adam, linear and with one hidden layer, tuned on the very episodes "
        "they are scored on. The config is CPU-sized: both scales run it as it is.",
        (VSML_GENERAL,),
        (
            SuiteStep("suite", VSML_GENERAL.run, BOTH),
            # VSML Sec. 5 on the shipped default: how fast a class is recognised, at MNIST's own 28x28.
            Introspect(
                "introspect", VSML_GENERAL.run, {"cpu-small": Size(64, 30), "paper": Size(64, 30)}, "mnist",
                overrides=_AT_28X28,
            ),  # fmt: skip
        ),
    ),
    "omniglot": Experiment(
        "VSML paper, Omniglot few-shot (spec §6.5): 5-way 1-shot presented online, characters split by "
        "alphabet (only the background sets are available offline). Steps 1-5 show each of the five "
        "characters once, labelled by order of first appearance; step 6 (the 'final' column) is the query, a "
        "new drawing of one of them, and the meta-loss is that step's alone.",
        (OMNIGLOT,),
        (MetaTest("meta_test", "omniglot", BOTH),),
    ),
}


def experiment(name: str) -> Experiment:
    """The registered experiment `name`; an unknown name is an error listing the names."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} "
            "(`vsml reproduce --list` describes them)"
        )
    return EXPERIMENTS[name]


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return scale


def training_at(exp: Experiment, scale: str) -> tuple[TrainStep | CloneRun, ...]:
    return tuple(step for step in exp.training if scale in step.overrides)


def reports_at(exp: Experiment, scale: str) -> tuple[ReportStep, ...]:
    return tuple(step for step in exp.reports if scale in step.sizes)


def contenders_at(step: Compare, runs: set[str]) -> tuple[str, ...]:
    """The step's contenders at a scale: tokens, and the runs trained there (`runs`)."""
    return tuple(c for c in step.contenders if c in runs or c in HAND_DESIGNED_TOKENS)


def runs_used(step: ReportStep) -> tuple[str, ...]:
    """Run names a report step reads."""
    if isinstance(step, Compare):
        return tuple(c for c in step.contenders if c not in HAND_DESIGNED_TOKENS)
    if isinstance(step, MetaTest | Introspect):
        return (step.run, *step.more_runs)
    return (step.run,)


def validate(name: str) -> None:
    """Registry errors as clear messages: each report step's runs are trained at its scales, warm starts name
    an earlier step of the same scale, step names are unique."""
    exp = experiment(name)
    runs = [step.run for step in exp.training]
    reports = [step.name for step in exp.reports]
    for kind, names in (("run", runs), ("report step", reports)):
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {name}: duplicate {kind} names in {names}")
    for scale in SCALES:
        trained: list[str] = []
        for step in training_at(exp, scale):
            warm = step.warm_start.get(scale)
            if warm is not None and warm not in trained:
                raise ValueError(
                    f"experiment {name}: {step.run} warm-starts from {warm}, not trained before it"
                )
            trained.append(step.run)
        for step in reports_at(exp, scale):
            missing = [r for r in runs_used(step) if r not in trained]
            if isinstance(step, Compare):
                missing = [r for r in missing if r not in runs]  # left out at this scale, by design
            if missing:
                raise ValueError(
                    f"experiment {name}: report step {step.name} uses {missing}, not trained at {scale}"
                )


# ----- commands ----------------------------------------------------------------------------------------------


def config_path(step: TrainStep | CloneRun) -> Path:
    """The step's YAML file: a shipped config (package data), or an absolute path."""
    return resolve_config_path(step.config)


def _shown_config(step: TrainStep | CloneRun) -> str:
    """The config as the shown command names it: a shipped config by its name, which works in any folder."""
    path = Path(step.config)
    return str(path) if path.is_absolute() else config_name(step.config)


def _yaml_string(text: str) -> str:
    """`text` as a `--set` value that YAML reads back as this string (a path like `1e3` or `a: b` is quoted)."""
    from vsml.config import parse_override_value

    try:
        plain = parse_override_value(text) == text
    except ValueError:
        plain = False
    return text if plain else json.dumps(text)


def train_overrides(step: TrainStep, scale: str, scale_dir: Path, data_dir: str | None = None) -> list[str]:
    """The step's `--set` overrides at `scale`, with its warm start and (as `vsml meta-train --data-dir`
    does) the data folder."""
    overrides = list(step.overrides[scale])
    if scale in step.warm_start:
        overrides.append(f"train.init_from={_yaml_string(str(scale_dir / step.warm_start[scale]))}")
    if data_dir:
        overrides.append(f"task.data_dir={_yaml_string(str(data_dir))}")
    return overrides


def _sets(overrides: tuple[str, ...] | list[str]) -> list[str]:
    return [word for override in overrides for word in ("--set", override)]


def _data(data_dir: str | None) -> list[str]:
    return ["--data-dir", str(data_dir)] if data_dir else []


def _command(words: list[str]) -> str:
    return " ".join(shlex.quote(str(word)) for word in words)


def train_command(
    step: TrainStep | CloneRun, scale: str, scale_dir: Path, data_dir: str | None = None
) -> str:
    if isinstance(step, CloneRun):
        words = ["vsml", "clone", _shown_config(step), "--out", scale_dir / step.run]
        return _command(words + _sets(step.overrides[scale]) + _data(data_dir))
    overrides = train_overrides(step, scale, scale_dir)  # the data folder goes in as --data-dir instead
    words = ["vsml", "meta-train", _shown_config(step), "--out", scale_dir / step.run, "--resume"]
    return _command(words + _sets(overrides) + _data(data_dir))


def _size_words(size: Size) -> list[str]:
    words = ["--episodes", str(size.episodes)] if size.episodes is not None else []
    return words + (["--length", str(size.length)] if size.length is not None else [])


def report_command(
    step: ReportStep, scale: str, scale_dir: Path, out: Path, runs: set[str], data_dir: str | None = None
) -> str:
    """The `vsml` command that computes report step `step` at `scale` into `out`."""
    size = step.sizes[scale]
    if isinstance(step, MetaTest):
        words = ["vsml", "evaluate", *(scale_dir / run for run in runs_used(step))]
        words += ["--datasets", ",".join(step.datasets)] if step.datasets else []
        words += _size_words(size) + ([] if step.baselines else ["--no-baselines"])
        words += _sets(step.overrides)
    elif isinstance(step, Compare):
        contenders = [c if c in HAND_DESIGNED_TOKENS else scale_dir / c for c in contenders_at(step, runs)]
        size = Size(size.episodes or 16, size.length or 500)  # `vsml compare`'s defaults, written out
        columns = compare_datasets(step, data_dir, strict=False)[0]
        words = ["vsml", "compare", *contenders, "--datasets", ",".join(columns)]
        words += _size_words(size) + ["--seed", str(step.seed)] + _sets(step.overrides)
    elif isinstance(step, SuiteStep):
        words = ["vsml", "suite", scale_dir / step.run, "--suite", step.suite]
    else:
        words = ["vsml", "introspect", *(scale_dir / run for run in runs_used(step))]
        words += ["--dataset", step.dataset] if step.dataset else []
        words += _size_words(size) + ["--ways", str(step.ways)] + _sets(step.overrides)
    return _command(words + ["--out", out] + _data(data_dir))


def plan(
    name: str,
    scale: str,
    runs_dir: str | Path = "runs/reproduce",
    reports_dir: str | Path = "reports",
    data_dir: str | None = None,
) -> list[str]:
    """The `vsml` commands that `reproduce(name, scale, ...)` is equivalent to, in order (nothing is run).

    `reports_dir` is not in any command: the README and PNG copies under it are written by `reproduce` itself.
    """
    exp, scale = experiment(name), check_scale(scale)
    scale_dir = Path(runs_dir) / scale
    commands = [train_command(step, scale, scale_dir, data_dir) for step in training_at(exp, scale)]
    runs = {step.run for step in training_at(exp, scale)}
    for step in reports_at(exp, scale):
        out = report_dir(runs_dir, scale, name, step)
        commands.append(report_command(step, scale, scale_dir, out, runs, data_dir))
    return commands


def report_dir(runs_dir: str | Path, scale: str, name: str, step: ReportStep) -> Path:
    return Path(runs_dir) / scale / REPORTS_SUBDIR / name / step.name


def describe() -> str:
    """One paragraph per experiment: `vsml reproduce --list`."""
    paragraphs = [
        f"{name}\n" + textwrap.fill(exp.description, 100, initial_indent="  ", subsequent_indent="  ")
        for name, exp in EXPERIMENTS.items()
    ]
    return "\n\n".join(paragraphs) + "\n"


# ----- running -----------------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    """What happened to one step, for the README."""

    command: str
    status: str
    seconds: float
    tables: str = ""
    images: list[str] = field(default_factory=list)


def _latest_step(run_dir: Path) -> int:
    from vsml.run.checkpoint import committed_steps

    steps = committed_steps(run_dir)
    return steps[-1] if steps else 0


def _check_finished_run(run_dir: Path, config: Any) -> None:
    """A finished run is reused only if it is this step's experiment (up to the iterations and the data folder)."""
    from vsml.run.run_dir import RESUMABLE_CHANGES, differences_from_saved_config

    differing = differences_from_saved_config(run_dir, config, ignore=(*RESUMABLE_CHANGES, "task.data_dir"))
    if differing:
        raise ValueError(
            f"{run_dir} holds a finished run of another config (it differs in {', '.join(differing)}); "
            "delete it or pass another --runs-dir"
        )


def _meta_step_seconds(run_dir: Path) -> float:
    """The run's meta-step time summed over its iterations (metrics.jsonl), so over every resume."""
    from vsml.run.run_dir import read_metrics

    return sum(record.get("seconds", 0.0) for record in read_metrics(run_dir))


def _train(
    step: TrainStep, scale: str, scale_dir: Path, data_dir: str | None, progress: bool, resume: bool
) -> str:
    from vsml.run.experiment import load_experiment
    from vsml.run.trainer import MetaTrainer

    run_dir = scale_dir / step.run
    config = load_experiment(config_path(step), train_overrides(step, scale, scale_dir, data_dir))
    done = _latest_step(run_dir)
    if done >= config.train.iterations:
        _check_finished_run(run_dir, config)
        return f"reused: finished earlier ({done} iterations, {_duration(_meta_step_seconds(run_dir))} of meta-steps)"
    trainer = MetaTrainer(config, run_dir, resume=resume)
    start = trainer.iteration
    trainer.run(progress=progress)
    end = trainer.iteration
    status = f"trained iteration {end}" if end == start + 1 else f"trained iterations {start + 1}-{end}"
    status += f" (resumed at {start})" if start else ""
    status += f"; {_duration(_meta_step_seconds(run_dir))} of meta-steps in all"
    if trainer.total_nonfinite:
        status += f"; {trainer.total_nonfinite} non-finite members skipped"
    return status


def _clone(
    step: CloneRun, scale: str, scale_dir: Path, data_dir: str | None, progress: bool
) -> tuple[str, str, list[Path], dict[str, Any]]:
    """Clone and evaluate (or reuse a finished clone of the same config, or evaluate a cloned one again);
    returns (status, markdown tables, the curve PNGs, the clone's summary)."""
    from vsml.config import config_to_dict, load_config
    from vsml.meta.cloning import CloneConfig
    from vsml.report.clone import clone_markdown, run_clone
    from vsml.run.checkpoint import latest_checkpoint
    from vsml.run.run_dir import differing_keys

    run_dir = scale_dir / step.run
    config = load_config(CloneConfig, config_path(step), step.overrides[scale])
    wanted = config_to_dict(config)
    summary_path = run_dir / "clone.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if summary is not None and not differing_keys(summary["config"], wanted):
        status = "reused: cloned and evaluated earlier"
    else:
        cloned = latest_checkpoint(run_dir) is not None  # None for a missing directory too
        if cloned:
            saved = config_to_dict(load_config(CloneConfig, run_dir / "config.yaml"))
            differing = [k for k in differing_keys(saved, wanted) if not k.startswith("eval.")]
            if differing:
                raise ValueError(
                    f"{run_dir} holds a clone of another config (it differs in {', '.join(differing)}); "
                    "delete it or pass another --runs-dir"
                )
        summary = run_clone(config, run_dir, train=not cloned, progress=progress, data_dir=data_dir)
        status = "evaluated the earlier clone" if cloned else "cloned and evaluated"
    return status, clone_markdown(summary), sorted(run_dir.glob("curves_*.png")), summary


def _run_stamp(command: str, runs: list[Path]) -> dict[str, Any]:
    """What a report step's output depends on: its command and the iteration of every run it reads."""
    return {"command": command, "runs": {str(path): _latest_step(path) for path in runs}}


def _report(
    step: ReportStep,
    scale: str,
    scale_dir: Path,
    out: Path,
    runs: set[str],
    command: str,
    data_dir: str | None,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[str, str, dict[str, Any]]:
    """Compute (or reuse) one report step into `out`; returns (status, markdown tables, the step's JSON)."""
    from vsml.atomic import write_text_atomically

    size = step.sizes[scale]
    used = [scale_dir / run for run in runs_used(step) if run in runs]
    stamp = _run_stamp(command, used)
    stamp_path = out / "reproduce_step.json"
    cached = stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp
    if isinstance(step, MetaTest):
        from vsml.evaluation.meta_test import load_trained_run, meta_test_runs
        from vsml.report.meta_test import report_tables, write_report

        if not cached:
            trained = [load_trained_run(path, step.overrides) for path in used]
            report = meta_test_runs(
                trained, [str(path) for path in used], step.datasets or None, size.episodes, size.length,
                step.baselines, data_dir,
            )  # fmt: skip
        else:  # redraw from the saved numbers, so a change of the report's format reaches a reused step
            report = json.loads((out / "evaluation.json").read_text())
        write_report(report, out)
        tables = report_tables(report)
    elif isinstance(step, Compare):
        from vsml.evaluation.grid import contenders_from_arguments, generalisation_grid
        from vsml.report.grid import grid_table, write_grid

        if not cached:
            datasets, absent = compare_datasets(step, data_dir)
            tokens = [
                c if c in HAND_DESIGNED_TOKENS else str(scale_dir / c) for c in contenders_at(step, runs)
            ]
            contenders = contenders_from_arguments(tokens, step.overrides)
            report = generalisation_grid(
                contenders,
                datasets,
                size.episodes or 16,
                size.length or 500,
                step.seed,
                data_dir,
                progress,
            )
            report["absent_datasets"] = list(absent)
        else:
            report = json.loads((out / "grid.json").read_text())
        write_grid(report, out, caption=f"Command: {command}")
        tables = grid_table(report)
    elif isinstance(step, SuiteStep):
        report, tables = _suite_report(
            step, scale_dir, out, command, cached, data_dir, log if progress else None
        )
    else:
        from vsml.evaluation.introspect import introspect_runs
        from vsml.evaluation.meta_test import load_trained_run
        from vsml.report.introspect import asymmetry_lines, introspection_table, write_introspection

        if not cached:
            report = introspect_runs(
                [load_trained_run(path, step.overrides) for path in used],
                [str(path) for path in used],
                dataset=step.dataset,
                length=size.length or 30,
                ways=step.ways,
                episodes=size.episodes or 32,
                data_dir=data_dir,
                log=log,
            )
        else:
            report = json.loads((out / "introspection.json").read_text())
        write_introspection(report, out)
        lines = asymmetry_lines(report)
        tables = introspection_table(report) + (
            "\n\n" + "\n".join(f"- {line}" for line in lines) if lines else ""
        )
    write_text_atomically(stamp_path, json.dumps(stamp, indent=1))
    return ("reused: unchanged since computed" if cached else "computed"), tables, report


def _suite_report(
    step: SuiteStep,
    scale_dir: Path,
    out: Path,
    command: str,
    cached: bool,
    data_dir: str | None,
    log: Callable[[str], None] | None,
) -> tuple[dict[str, Any], str]:
    """`vsml suite`'s report of the step's run (recomputed unless `cached`); returns (its JSON, its table)."""
    from vsml.evaluation.meta_test import load_trained_run
    from vsml.evaluation.suite import evaluate_suite, load_suite
    from vsml.report.suite import suite_table, write_suite_report

    if not cached:
        trained = load_trained_run(scale_dir / step.run)
        suite = load_suite(step.suite)
        report = {
            "learner": f"{step.run} (iteration {trained.iteration})",
            **evaluate_suite(trained.learner, trained.meta, suite, data_dir=data_dir, progress=log),
        }
    else:
        report = json.loads((out / RESULTS_FILE).read_text())
    write_suite_report(report, out, command)
    return report, suite_table(report)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes:02d} min"
        if hours
        else (f"{minutes} min {secs:02d} s" if minutes else f"{secs} s")
    )


def reproduce(
    name: str,
    scale: str = "cpu-small",
    runs_dir: str | Path = "runs/reproduce",
    reports_dir: str | Path = "reports",
    data_dir: str | None = None,
    progress: bool = True,
    resume: bool = True,
) -> list[Path]:
    """Run experiment `name` at `scale` end to end; returns the files written under `<reports_dir>/<name>/`.

    Finished runs (latest checkpoint at `train.iterations`, same config) are reused, partial ones resumed
    (`resume=False`: a partial run is an error instead), report steps reused while their runs are unchanged.
    """
    exp, scale = experiment(name), check_scale(scale)
    validate(name)
    commands = plan(name, scale, runs_dir, reports_dir, data_dir)
    scale_dir = Path(runs_dir) / scale
    destination = Path(reports_dir) / name

    def log(message: str) -> None:
        print(f"reproduce {name}: {message}", file=sys.stderr, flush=True)

    started, date = time.perf_counter(), datetime.now().astimezone()
    records: list[StepRecord] = []
    steps: list[TrainStep | CloneRun | ReportStep] = [*training_at(exp, scale), *reports_at(exp, scale)]
    runs = {step.run for step in training_at(exp, scale)}
    written: list[Path] = []
    results: dict[str, Any] = {}  # each report (and clone) step's JSON, by step name: results.json
    for index, (step, command) in enumerate(zip(steps, commands, strict=True), 1):
        log(f"[{index}/{len(steps)}] {command}")
        step_start = time.perf_counter()
        if isinstance(step, TrainStep):
            status = _train(step, scale, scale_dir, data_dir, progress, resume)
            records.append(StepRecord(command, status, time.perf_counter() - step_start))
            continue
        if isinstance(step, CloneRun):
            status, tables, pngs, result = _clone(step, scale, scale_dir, data_dir, progress)
            prefix = step.run
        else:
            out = report_dir(runs_dir, scale, name, step)
            status, tables, result = _report(step, scale, scale_dir, out, runs, command, data_dir, progress, log)
            pngs, prefix = sorted(out.glob("*.png")), step.name
        results[prefix] = {"command": command, "result": result}
        images = []
        for png in pngs:
            target = destination / f"{prefix}_{png.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
            images.append(target.name)
            written.append(target)
        records.append(StepRecord(command, status, time.perf_counter() - step_start, tables, images))
        log(f"[{index}/{len(steps)}] {status} ({_duration(records[-1].seconds)})")
    readme = _readme(name, exp, scale, date, time.perf_counter() - started, records)
    from vsml.atomic import write_text_atomically

    summary = {"experiment": name, "scale": scale, "date": date.isoformat(timespec="minutes"), "steps": results}
    destination.mkdir(parents=True, exist_ok=True)
    written.insert(0, write_text_atomically(destination / RESULTS_FILE, results_json(summary)))
    written.insert(0, write_text_atomically(destination / "README.md", readme))
    return written


def results_json(summary: dict[str, Any]) -> str:
    """`reports/NAME/results.json`: every float to `RESULTS_DIGITS` digits (`round_floats`) and one line per step,
    so that 2,000-step learning curves stay a small file to commit (the full-precision outputs stay in the runs
    folder)."""

    from vsml.report.tables import RESULTS_DIGITS, round_floats

    steps = round_floats(summary["steps"], RESULTS_DIGITS)
    head = {k: v for k, v in summary.items() if k != "steps"}
    lines = [json.dumps(head)[:-1] + ', "steps": {']
    lines += [f" {json.dumps(name)}: {json.dumps(step)}," for name, step in steps.items()]
    if steps:
        lines[-1] = lines[-1][:-1]
    return "\n".join([*lines, "}}"]) + "\n"


def _readme(
    name: str, exp: Experiment, scale: str, date: datetime, seconds: float, records: list[StepRecord]
) -> str:
    import jax

    devices = f"{jax.device_count()} {jax.default_backend()} device(s)"
    lines = [
        f"# Reproduction: {name} (scale {scale})",
        "",
        exp.description,
        "",
        f"Written by `vsml reproduce {name} --scale {scale}` on {date:%Y-%m-%d %H:%M %Z} ({devices}); "
        f"{_duration(seconds)} in all. Runs are reused when finished and resumed when partial, so the wall "
        "times are those of this invocation.",
        "",
        "## Equivalent commands",
        "",
        "```bash",
        *(record.command for record in records),
        "```",
        "",
        "## Steps",
        "",
        "| # | command | status | wall time |",
        "| ---: | --- | --- | ---: |",
        *(
            f"| {i} | `{r.command.split(' --')[0]}` | {r.status} | {_duration(r.seconds)} |"
            for i, r in enumerate(records, 1)
        ),
        "",
        "## Results",
    ]
    for record in records:
        if not record.tables:
            continue
        lines += ["", f"`{record.command}`", "", record.tables.strip()]
        lines += [f"\n![{image}]({image})" for image in record.images]
    return "\n".join(lines) + "\n"


__all__ = [
    "EXPERIMENTS",
    "SCALES",
    "CloneRun",
    "Compare",
    "Experiment",
    "Introspect",
    "MetaTest",
    "Size",
    "SuiteStep",
    "TrainStep",
    "describe",
    "plan",
    "reproduce",
    "validate",
]
