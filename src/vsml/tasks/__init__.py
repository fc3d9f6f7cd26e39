"""Tasks: datasets held in memory and online episodes sampled from them on device (spec/vsml.md §3.3)."""

from vsml.tasks.cifar import read_cifar10_binary, write_cifar10_binary
from vsml.tasks.datasets import (
    DATASET_NAMES,
    NORMALISATION,
    SPLITS,
    Dataset,
    load_dataset,
    resolve_data_dir,
    sample_sum_sign,
)
from vsml.tasks.episodes import Episodes, EpisodeSource, make_episode_source, sample_online_episodes
from vsml.tasks.idx import DataError, read_idx, write_idx
from vsml.tasks.omniglot import (
    OMNIGLOT_NORMALISATION,
    OMNIGLOT_TEST_ALPHABETS,
    FewShotSource,
    Omniglot,
    OneShotRuns,
    load_omniglot,
    load_omniglot_one_shot_runs,
    make_few_shot_source,
    one_shot_run_episodes,
    sample_few_shot_episodes,
)
from vsml.tasks.transforms import (
    EpisodeTransform,
    filter_classes,
    prepare_dataset,
    sample_projection,
    transform_episodes,
)

__all__ = [
    "DATASET_NAMES",
    "NORMALISATION",
    "OMNIGLOT_NORMALISATION",
    "OMNIGLOT_TEST_ALPHABETS",
    "SPLITS",
    "DataError",
    "Dataset",
    "EpisodeSource",
    "EpisodeTransform",
    "Episodes",
    "FewShotSource",
    "Omniglot",
    "OneShotRuns",
    "filter_classes",
    "load_dataset",
    "load_omniglot",
    "load_omniglot_one_shot_runs",
    "make_episode_source",
    "make_few_shot_source",
    "one_shot_run_episodes",
    "prepare_dataset",
    "read_cifar10_binary",
    "read_idx",
    "resolve_data_dir",
    "sample_few_shot_episodes",
    "sample_online_episodes",
    "sample_projection",
    "sample_sum_sign",
    "transform_episodes",
    "write_cifar10_binary",
    "write_idx",
]
