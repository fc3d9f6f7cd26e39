"""Tasks: datasets held in memory and online episodes sampled from them on device (spec/vsml.md §3.3)."""

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

__all__ = [
    "DATASET_NAMES",
    "NORMALISATION",
    "SPLITS",
    "DataError",
    "Dataset",
    "EpisodeSource",
    "Episodes",
    "load_dataset",
    "make_episode_source",
    "read_idx",
    "resolve_data_dir",
    "sample_online_episodes",
    "sample_sum_sign",
    "write_idx",
]
