"""One static description of how an experiment draws its episodes, whatever the source.

Online sources (array datasets, streams) give T-step online episodes; few-shot sources (Omniglot) give
`ways·shots + 1`-step few-shot episodes (spec §6.5). The optional transform (spec §3.3) is applied after
sampling, with the population slice's fixed key; both signs of an ES pair therefore see the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax

from vsml.tasks.episodes import Episodes, EpisodeSource, sample_online_episodes
from vsml.tasks.omniglot import FewShotSource, sample_all_drawings_episodes, sample_few_shot_episodes
from vsml.tasks.transforms import EpisodeTransform, transform_episodes

Source = EpisodeSource | FewShotSource


@dataclass(frozen=True)
class EpisodeSampler:
    length: int  # T of online episodes (few-shot episodes have ways·shots + 1 steps, all-drawings ones ways·20)
    transform: EpisodeTransform = field(default_factory=EpisodeTransform)
    ways: int = 5
    shots: int = 1
    # > 1: every step is a batch of this many examples (BLUR's inner batch, VSML's `inner_batch`); episodes are
    # then xs [N, T, B, *input_shape], ys [N, T, B, C], drawn as N·T·B examples and transformed before reshaping.
    batch_size: int = 1
    # Few-shot sources only: online episodes of `ways` characters with every drawing of each, shuffled (T = ways
    # · drawings, no image twice: `sample_all_drawings_episodes`) instead of §6.5's support-then-query episodes.
    all_drawings: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"task.batch_size must be >= 1, got {self.batch_size}")

    @property
    def transforms(self) -> bool:
        return self.transform != EpisodeTransform()

    def occurring_classes(self, source: Source) -> int:
        """Classes an episode's labels can take (chance is 1/this), before any label padding."""
        base = self.ways if isinstance(source, FewShotSource) else source.num_classes
        if self.transform.classes is not None:
            base = len(self.transform.classes)
        return base

    def num_classes(self, source: Source) -> int:
        """Size of the label vectors a learner sees: the padded label space when padding is on."""
        return self.transform.pad_classes_to or self.occurring_classes(source)

    def sample(self, source: Source, key: jax.Array, num_episodes: int, transform_key: jax.Array) -> Episodes:
        """`num_episodes` episodes from `key`; `transform_key` fixes the slice's projection / permutation."""
        if isinstance(source, FewShotSource):
            if self.batch_size > 1:
                raise ValueError("few-shot episodes (omniglot) have no inner batch: set task.batch_size = 1")
            if self.all_drawings:
                episodes = sample_all_drawings_episodes(source, key, num_episodes, self.ways)
            else:
                episodes = sample_few_shot_episodes(source, key, num_episodes, ways=self.ways, shots=self.shots)
        else:
            episodes = sample_online_episodes(source, key, num_episodes, self.length * self.batch_size)
        if self.transforms:
            episode_key = (
                jax.random.fold_in(key, 1) if self.transform.resample_projection_per_episode else None
            )
            episodes = transform_episodes(self.transform, episodes, transform_key, episode_key=episode_key)
        if self.batch_size == 1:
            return episodes
        return jax.tree.map(
            lambda a: a.reshape((a.shape[0], self.length, self.batch_size) + a.shape[2:]), episodes
        )
