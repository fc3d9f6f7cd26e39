"""The 2-CPU-core scale of every shipped config: the one place its `--set` overrides are written down.

The configs in `vsml/configs/` are at paper scale (P = 1024 pairs, T = 500, 10^4 and more iterations: a GPU
job); their header comments point here. `vsml reproduce NAME` (scale `cpu-small`, `reproduce/recipes.py`)
takes its meta-training overrides from `CPU_SCALE`, so the settings that produced `reports/` and the settings a
config documents are the same. Where an experiment of `vsml reproduce` runs a config, its entry is what that
experiment ran; the others are the reduced scales the configs' headers documented before.

`python -m vsml.reproduce.cpu_scale [NAME ...]` prints the equivalent `vsml` commands (warm start first).

Standard library only: the recipes and the tests import it, and nothing here needs the package.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuScale:
    """A shipped config at the 2-CPU-core scale: `--set` overrides in order, and optionally the shipped config
    whose run (at its own CPU scale) warm-starts this one (`train.init_from`)."""

    overrides: tuple[str, ...] = ()
    warm_start: str | None = None  # a key of CPU_SCALE
    note: str = ""  # why this scale, where it is not obvious


_8X8 = "[8, 8]"
# The deep VSML variant: ES with 16 pairs, T = 100, 300 iterations.
_ES_16_PAIRS = (
    "es.num_pairs=16",
    "task.episode_length=100",
    "train.iterations=300",
    "eval.episode_length=500",
    "eval.num_episodes=16",
)


def _baseline(iterations: int, eval_every: int | None = None) -> CpuScale:
    """A Fig. 8 baseline meta-trained on MNIST by gradients through the unroll: T = 100, 16 episodes per
    meta-batch, the iterations of reports/fig8_cpu_small (fewer for the slow ones) and held-out evaluation on
    MNIST and Fashion-MNIST only."""
    return CpuScale(
        (
            "task.episode_length=100",
            "grad.num_episodes=16",
            f"train.iterations={iterations}",
            "train.checkpoint_every=100",
            "eval.episode_length=500",
            "eval.num_episodes=16",
            f"eval.every={eval_every or iterations // 2}",
            "eval.datasets=[mnist, fashion_mnist]",
        )
    )


_CPU_SIZED = "the config is already CPU-sized: it runs as it is"
# The curriculum over classes of the meta_efficiency study (variant classes_2_to_10, issue 24): digits 0-1, then
# 0-4, each until the training loss is below 0.9 of its chance loss (at most 200 iterations), then all ten.
CLASSES_2_5_10 = (
    "[{iterations: 200, loss_below: 0.9, transform: {classes: [0, 1]}}, "
    "{iterations: 200, loss_below: 0.9, transform: {classes: [0, 1, 2, 3, 4]}}]"
)

# Fig. 8's dataset array (the paper's 11 meta-training sets, those of the data sets we have: spec §3.4): the
# datasets of each vsml/configs/fig8/ config, every one projected in half of the population.
FIG8_TRAINING_SETS: dict[str, tuple[str, ...]] = {
    "all": ("mnist", "fashion_mnist", "random"),
    "no_fashion_mnist": ("mnist", "random"),
    "no_mnist": ("fashion_mnist", "random"),
    "no_random": ("mnist", "fashion_mnist"),
    "single_fashion_mnist": ("fashion_mnist",),
    "single_mnist": ("mnist",),
    "single_random": ("random",),
}


def _fig8_from_scratch(datasets: tuple[str, ...]) -> CpuScale:
    """One Fig. 8 meta-training set by the from-scratch recipe of issue 24 (the meta_efficiency study's default,
    classes_lr_0.1: the curriculum over classes and Adam 0.1) on the fig6 task's settings: 8x8, each pixel
    standardised, the label fed back, 64 pairs, from the config's seeded random V_M; 1,000 ES iterations."""
    slices = ", ".join(
        f"{{dataset: {name}, transform: {{{projected}resize: {_8X8}}}}}"
        for name in datasets
        for projected in ("project: true, ", "")
    )
    return CpuScale(
        (
            "learner.feed_label=true",
            "task.normalisation=per_feature",
            "task.episode_length=100",
            "es.num_pairs=64",
            "es.learning_rate=0.1",
            f"transform.resize={_8X8}",
            f"population=[{slices}]",
            f"curriculum={CLASSES_2_5_10}",
            "train.iterations=1000",
            "train.checkpoint_every=100",
            "eval.every=250",
            "eval.num_episodes=16",
            "eval.episode_length=500",
        ),
        note="from a random V_M by issue 24's recipe (classes 2, 5, then 10; Adam 0.1) at 8x8; meta-test at 28x28",
    )


CPU_SCALE: dict[str, CpuScale] = {
    "demo_digits": CpuScale(note=_CPU_SIZED),
    "vsml_general": CpuScale(note=_CPU_SIZED),
    "fig6_mnist_rand_proj": CpuScale(
        (
            # The settings of the meta_efficiency study's task (vsml/configs/meta_efficiency.yaml): MNIST at
            # 8x8, each pixel standardised, the label fed back, 64 pairs; from the config's seeded random V_M.
            "learner.feed_label=true",
            "task.normalisation=per_feature",
            "task.episode_length=100",
            "es.num_pairs=64",
            f"transform.resize={_8X8}",
            f"population=[{{dataset: mnist, transform: {{project: true, resize: {_8X8}}}}}, "
            f"{{dataset: mnist, transform: {{resize: {_8X8}}}}}]",
            f"curriculum={CLASSES_2_5_10}",
            "train.iterations=2000",
            "train.checkpoint_every=100",
            "eval.every=100",
            "eval.num_episodes=16",
            "eval.episode_length=500",
        ),
        note="from a random V_M on MNIST only: the classes curriculum of the meta_efficiency study (digits 0-1, "
        "then 0-4, then all ten) at 8x8, 2,000 ES iterations; meta-test at 28x28 (transform.resize=null)",
    ),
    "fig6_mnist_rand_proj_grad": CpuScale(
        (
            "grad.num_episodes=8",
            "task.episode_length=50",
            "train.iterations=200",
            "eval.episode_length=500",
            "eval.num_episodes=16",
        )
    ),
    **{
        f"fig8/{training_set}": _fig8_from_scratch(datasets)
        for training_set, datasets in FIG8_TRAINING_SETS.items()
    },
    "baselines/metarnn_mnist": _baseline(1000, eval_every=250),
    "baselines/hebbian_mnist": _baseline(300),  # 1.7-3.6 s per meta-step on 2 cores
    "baselines/fwmemory_mnist": _baseline(600),
    "baselines/fwp_mnist": _baseline(600),
    "invariances": CpuScale(
        (
            "es.num_pairs=72",
            "task.episode_length=100",
            "train.iterations=200",
            "eval.episode_length=500",
            "eval.num_episodes=16",
        ),
        note="one pair per slice; compiling the 72 slice programs alone takes minutes",
    ),
    "omniglot": CpuScale(("es.num_pairs=32", "train.iterations=500", "eval.num_episodes=100")),
    "deep": CpuScale(_ES_16_PAIRS),
    "conv": CpuScale(
        (
            "es.num_pairs=8",
            "task.episode_length=50",
            "train.iterations=100",
            "eval.episode_length=200",
            "eval.num_episodes=8",
        )
    ),
    "blur/mnist_cmaes": CpuScale(
        ("eval.every=50", "eval.num_episodes=4"),
        note="the paper's budget, 400 generations of 80; a lighter held-out evaluation during training",
    ),
    "blur/toy2d": CpuScale(
        ("train.iterations=1000", "grad.num_episodes=12", "grad.learning_rate=0.003"),
        note="a larger meta-step",
    ),
    "blur/mnist_curriculum": CpuScale(
        (
            "train.iterations=200",
            "grad.num_episodes=3",
            "grad.curriculum_every=100",
            "task.batch_size=32",
            "eval.num_episodes=4",
        )
    ),
    "es_from_clone": CpuScale(note=_CPU_SIZED),
    "meta_efficiency": CpuScale(
        note=_CPU_SIZED + "; the meta_efficiency study runs it within a wall-clock budget per variant and seed"
    ),
    # `vsml clone` configs (CloneConfig, not experiments)
    "cloning/backprop": CpuScale(note=_CPU_SIZED + " (about 35 min on 2 CPU cores)"),
    "cloning/backprop_random_init": CpuScale(note=_CPU_SIZED),
}


def commands(name: str, out_dir: str = "runs") -> list[str]:
    """The `vsml` commands that run config `name` at its CPU scale into `<out_dir>/<name>`, its warm start's
    run first."""
    entry = CPU_SCALE[name]
    before = commands(entry.warm_start, out_dir) if entry.warm_start else []
    overrides = list(entry.overrides)
    if entry.warm_start:
        overrides.append(f"train.init_from={out_dir}/{entry.warm_start}")
    verb = ["clone"] if name.startswith("cloning/") else ["meta-train"]
    words = ["vsml", *verb, name, "--out", f"{out_dir}/{name}"]
    words += [word for override in overrides for word in ("--set", override)]
    return [*before, " ".join(shlex.quote(word) for word in words)]


def main(argv: list[str]) -> int:
    for name in argv or sorted(CPU_SCALE):
        if name not in CPU_SCALE:
            known = ", ".join(sorted(CPU_SCALE))
            print(f"no CPU scale for {name!r}; shipped configs: {known}", file=sys.stderr)
            return 2
        note = CPU_SCALE[name].note
        print(f"# {name}" + (f": {note}" if note else ""))
        print("\n".join(commands(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
