"""Tests of Omniglot loading and few-shot episodes (vsml.tasks.omniglot; spec/vsml.md §3.3, §6.5)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import jax
import matplotlib.image
import numpy as np
import pytest

from tests.conftest import DATASETS_DIR
from vsml.tasks import omniglot
from vsml.tasks.episodes import Episodes
from vsml.tasks.idx import DataError
from vsml.tasks.omniglot import (
    OMNIGLOT_NORMALISATION,
    OMNIGLOT_TEST_ALPHABETS,
    FewShotSource,
    Omniglot,
    load_omniglot,
    load_omniglot_one_shot_runs,
    make_few_shot_source,
    one_shot_run_episodes,
    sample_all_drawings_episodes,
    sample_few_shot_episodes,
)
from vsml.tasks.sampler import EpisodeSampler

OMNIGLOT_DIR = DATASETS_DIR / "omniglot"
STATIC = ("num_episodes", "ways", "shots")
TOY_CLASSES, TOY_DRAWINGS = 9, 4


def _needs_data(*names: str) -> None:
    missing = [n for n in names if not (OMNIGLOT_DIR / n).is_file()]
    if missing:
        pytest.skip(
            f"Omniglot files {missing} not found under {OMNIGLOT_DIR} (see shared/datasets/README.md)"
        )


@pytest.fixture(scope="module")
def data() -> Omniglot:
    _needs_data(*omniglot.BACKGROUND_ZIPS)
    return load_omniglot(DATASETS_DIR)


@pytest.fixture(scope="module")
def toy_source() -> FewShotSource:
    """Drawing d of class c is an image filled with 100 * c + d, so every image tells where it came from."""
    ids = 100 * np.arange(TOY_CLASSES)[:, None] + np.arange(TOY_DRAWINGS)[None, :]
    images = np.broadcast_to(ids[..., None, None, None], (*ids.shape, 2, 3, 1))
    return FewShotSource(jax.numpy.asarray(images, jax.numpy.float32))


def _toy_ids(xs: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(xs)[..., 0, 0, 0].astype(int)
    return ids // 100, ids % 100  # (class, drawing) of every step


# --- loading -----------------------------------------------------------------------------------------------


def test_splits_shapes_and_disjoint_characters(data: Omniglot) -> None:
    assert data.train_images.shape == (185, 20, 28, 28, 1) and data.train_images.dtype == np.float32
    assert data.test_images.shape == (57, 20, 28, 28, 1) and data.test_images.dtype == np.float32
    assert len(data.train_characters) == 185 and len(data.test_characters) == 57
    assert not set(data.train_characters) & set(data.test_characters)
    assert len(set(data.train_characters) | set(data.test_characters)) == 242  # Greek, Latin read once
    assert {c.split("/")[0] for c in data.test_characters} == set(OMNIGLOT_TEST_ALPHABETS)
    train_alphabets = {c.split("/")[0] for c in data.train_characters}
    assert train_alphabets == {
        "Balinese",
        "Early_Aramaic",
        "Greek",
        "Japanese_(katakana)",
        "Latin",
        "Sanskrit",
    }
    assert sum(c.startswith("Greek/") for c in data.train_characters) == 24
    assert data.split("test") is data.test_images
    with pytest.raises(ValueError, match="unknown split"):
        data.split("valid")
    hits = omniglot._load_background.cache_info().hits
    np.testing.assert_array_equal(load_omniglot(DATASETS_DIR).train_images, data.train_images)
    assert omniglot._load_background.cache_info().hits == hits + 1  # decoded once per process


def test_normalisation_and_ink_convention(data: Omniglot) -> None:
    assert OMNIGLOT_NORMALISATION == (0.92206, 0.26808)  # spec §3.3
    mu, s = OMNIGLOT_NORMALISATION
    raw = np.concatenate([data.train_images, data.test_images]) * s + mu
    assert raw.min() > -1e-5 and raw.max() < 1 + 1e-5
    assert np.allclose(raw[..., 0, 0, 0], 1.0, atol=1e-5)  # white background is 1, ink is 0
    # The authors' constants were measured on tfds's full set; this subset must come close.
    assert abs(raw.mean() - mu) < 0.01 and abs(raw.std() - s) < 0.015


def test_custom_test_alphabets_and_bad_names(data: Omniglot) -> None:
    split = load_omniglot(DATASETS_DIR, test_alphabets=("Greek",))
    assert len(split.test_characters) == 24 and len(split.train_characters) == 218
    with pytest.raises(ValueError, match="unknown: \\['Klingon'\\]"):
        load_omniglot(DATASETS_DIR, test_alphabets=("Klingon",))
    with pytest.raises(ValueError, match="resize_method"):
        load_omniglot(DATASETS_DIR, resize_method="nearest")


def test_png_decoder_matches_matplotlib() -> None:
    _needs_data(omniglot.BACKGROUND_ZIPS[0])
    with zipfile.ZipFile(OMNIGLOT_DIR / omniglot.BACKGROUND_ZIPS[0]) as archive:
        names = [n for n in archive.namelist() if n.endswith(".png")][::300]
        for name in names:
            data = archive.read(name)
            expected = matplotlib.image.imread(io.BytesIO(data), format="png")
            np.testing.assert_array_equal(omniglot._decode_png(data) / 255.0, expected)


def _png(rows: np.ndarray, filters: list[int]) -> bytes:
    """An 8-bit greyscale PNG of `rows` with the given row filters (PNG spec §9), written the obvious way."""
    height, width = rows.shape
    x = rows.astype(int)
    raw = b""
    for r, kind in enumerate(filters):
        prev = x[r - 1] if r else np.zeros(width, int)
        left = np.concatenate([[0], x[r, :-1]])
        upleft = np.concatenate([[0], prev[:-1]])
        p = left + prev - upleft
        pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        predictor = [np.zeros(width, int), left, prev, (left + prev) // 2, paeth][kind]
        raw += bytes([kind]) + ((x[r] - predictor) % 256).astype(np.uint8).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_png_decoder_undoes_every_row_filter() -> None:
    rows = np.random.default_rng(0).integers(0, 256, (10, 7), dtype=np.uint8)
    filters = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]
    np.testing.assert_array_equal(omniglot._decode_png(_png(rows, filters)), rows)
    with pytest.raises(ValueError, match="signature"):
        omniglot._decode_png(b"GIF89a")


def test_bilinear_resize_is_tf_default_and_area_averages() -> None:
    # tf.image.resize(bilinear) without antialiasing == jax.image.resize(linear, antialias=False): half-pixel
    # centres, a 2-tap triangle kernel.
    image = np.random.default_rng(1).random((105, 105)).astype(np.float32)
    weights = omniglot._resize_weights(105, 28, "bilinear")
    expected = jax.image.resize(image, (28, 28), "linear", antialias=False)
    np.testing.assert_allclose(weights @ image @ weights.T, expected, atol=1e-5)
    area = omniglot._resize_weights(105, 35, "area")  # an integer factor: 3x3 block means
    blocks = image.reshape(35, 3, 35, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(area @ image @ area.T, blocks, atol=1e-5)
    np.testing.assert_allclose(omniglot._resize_weights(105, 28, "area").sum(1), 1.0)


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_zips_name_files_and_fix(tmp_path: Path) -> None:
    (tmp_path / "omniglot").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_omniglot(tmp_path)
    for word in (*omniglot.BACKGROUND_ZIPS, "--data-dir", "$VSML_DATA"):
        assert word in str(err.value)
    with pytest.raises(FileNotFoundError, match="all_runs.zip"):
        load_omniglot_one_shot_runs(tmp_path)


def test_corrupt_zip_and_corrupt_png(tmp_path: Path) -> None:
    folder = tmp_path / "omniglot"
    folder.mkdir()
    for name in omniglot.BACKGROUND_ZIPS:
        (folder / name).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="zip"):
        load_omniglot(tmp_path)
    for name in omniglot.BACKGROUND_ZIPS:
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr(f"{name[:-4]}/Greek/character01/0001_01.png", b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(DataError, match="character01/0001_01.png"):
        load_omniglot(tmp_path)


# --- few-shot episodes (spec §6.5) -------------------------------------------------------------------------


def test_one_shot_episode_follows_spec(toy_source: FewShotSource) -> None:
    eps = sample_few_shot_episodes(toy_source, jax.random.key(0), 64)
    assert eps.xs.shape == (64, 6, 2, 3, 1) and eps.ys.shape == (64, 6, 5)
    assert eps.xs.dtype == np.float32 and eps.ys.dtype == np.float32
    ys = np.asarray(eps.ys)
    assert set(np.unique(ys)) <= {0.0, 1.0} and np.all(ys.sum(-1) == 1)
    labels = ys.argmax(-1)
    classes, drawings = _toy_ids(eps.xs)
    np.testing.assert_array_equal(labels[:, :5], np.broadcast_to(np.arange(5), (64, 5)))  # k-th support: k-1
    for episode_classes, episode_drawings, episode_labels in zip(classes, drawings, labels, strict=True):
        support, query = episode_classes[:5], episode_classes[5]
        assert len(set(support)) == 5  # 5 distinct classes, one pair each
        match = int(np.flatnonzero(support == query)[0])
        assert episode_labels[5] == match  # the query's label is its class's position among the supports
        assert episode_drawings[5] != episode_drawings[match]  # a different drawing of the same class
    # The query's class is uniform over the 5 pairs, and the episodes use many classes.
    assert set(labels[:, 5]) == set(range(5)) and len(np.unique(classes)) == TOY_CLASSES


def test_many_shot_labels_by_first_appearance(toy_source: FewShotSource) -> None:
    ways, shots = 3, 3
    eps = sample_few_shot_episodes(toy_source, jax.random.key(1), 32, ways=ways, shots=shots)
    assert eps.xs.shape == (32, ways * shots + 1, 2, 3, 1) and eps.ys.shape == (32, ways * shots + 1, ways)
    labels = np.asarray(eps.ys).argmax(-1)
    classes, drawings = _toy_ids(eps.xs)
    for episode_classes, episode_drawings, episode_labels in zip(classes, drawings, labels, strict=True):
        support = episode_classes[:-1]
        first_seen = list(dict.fromkeys(support))  # classes in order of first appearance
        assert len(first_seen) == ways and all(np.sum(support == c) == shots for c in first_seen)
        np.testing.assert_array_equal(episode_labels, [first_seen.index(c) for c in episode_classes])
        same_class = episode_drawings[:-1][support == episode_classes[-1]]
        assert len(set(same_class)) == shots and episode_drawings[-1] not in same_class
    assert not np.array_equal(labels[:, :-1], np.broadcast_to(labels[0, :-1], labels[:, :-1].shape))


def test_all_drawings_episodes_show_every_drawing_of_their_characters_once(toy_source: FewShotSource) -> None:
    """The meta-test suite's protocol: `ways` distinct characters, each of their drawings exactly once in a
    shuffled order, labels by first appearance; the sampler gives the same episodes."""
    ways = 3
    eps = sample_all_drawings_episodes(toy_source, jax.random.key(2), 16, ways)
    length = ways * TOY_DRAWINGS
    assert eps.xs.shape == (16, length, 2, 3, 1) and eps.ys.shape == (16, length, ways)
    labels = np.asarray(eps.ys).argmax(-1)
    classes, drawings = _toy_ids(eps.xs)
    for episode_classes, episode_drawings, episode_labels in zip(classes, drawings, labels, strict=True):
        first_seen = list(dict.fromkeys(episode_classes))
        assert len(first_seen) == ways
        assert sorted(zip(episode_classes, episode_drawings, strict=True)) == sorted(
            (c, d) for c in first_seen for d in range(TOY_DRAWINGS)
        )
        np.testing.assert_array_equal(episode_labels, [first_seen.index(c) for c in episode_classes])
    assert len(np.unique(classes)) == TOY_CLASSES  # characters vary over episodes
    assert len({tuple(c) for c in classes}) > 1  # and so does the order
    sampler = EpisodeSampler(length, ways=ways, all_drawings=True)
    same = sampler.sample(toy_source, jax.random.key(2), 16, jax.random.key(0))
    np.testing.assert_array_equal(same.xs, eps.xs)
    with pytest.raises(ValueError, match="ways=10"):
        sample_all_drawings_episodes(toy_source, jax.random.key(0), 2, 10)


def test_deterministic_per_key_and_jit_compiles_once(toy_source: FewShotSource) -> None:
    eps = sample_few_shot_episodes(toy_source, jax.random.key(3), 8)
    again = sample_few_shot_episodes(toy_source, jax.random.key(3), 8)
    np.testing.assert_array_equal(eps.xs, again.xs)
    np.testing.assert_array_equal(eps.ys, again.ys)
    assert not np.array_equal(eps.xs, sample_few_shot_episodes(toy_source, jax.random.key(4), 8).xs)
    traces = []

    def traced(source, key, num_episodes, ways, shots):
        traces.append(1)  # runs only while tracing
        return sample_few_shot_episodes(source, key, num_episodes, ways, shots)

    sample = jax.jit(traced, static_argnames=STATIC)
    jitted = sample(toy_source, jax.random.key(3), num_episodes=8, ways=5, shots=1)
    np.testing.assert_array_equal(eps.xs, jitted.xs)
    np.testing.assert_array_equal(eps.ys, jitted.ys)
    other = FewShotSource(toy_source.images + 1.0)  # same shapes: the arrays are arguments, not constants
    sample(other, jax.random.key(5), num_episodes=8, ways=5, shots=1)
    assert len(traces) == 1


def test_bad_sampler_arguments(toy_source: FewShotSource) -> None:
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="ways=10"):
        sample_few_shot_episodes(toy_source, key, 2, ways=10)
    with pytest.raises(ValueError, match="shots=4"):
        sample_few_shot_episodes(toy_source, key, 2, shots=4)
    with pytest.raises(TypeError, match="static"):
        sample_few_shot_episodes(toy_source, key, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ways must be >= 2"):
        sample_few_shot_episodes(toy_source, key, 2, ways=1)


def test_real_episodes_use_real_images(data: Omniglot) -> None:
    source = make_few_shot_source(data, "test")
    eps = sample_few_shot_episodes(source, jax.random.key(0), 16)
    assert isinstance(eps, Episodes)
    assert eps.xs.shape == (16, 6, 28, 28, 1) and eps.ys.shape == (16, 6, 5)
    # Identify every image by its bytes: the test split's drawings are all distinct images.
    flat = data.test_images.reshape(-1, 28 * 28)
    where = {row.tobytes(): divmod(i, 20) for i, row in enumerate(flat)}
    assert len(where) == len(flat)
    labels = np.asarray(eps.ys).argmax(-1)
    for episode, episode_labels in zip(np.asarray(eps.xs), labels, strict=True):
        found = [where[image.reshape(-1).tobytes()] for image in episode]  # (character, drawing) per step
        support_classes = [c for c, _ in found[:5]]
        query_class, query_drawing = found[5]
        assert len(set(support_classes)) == 5
        match = support_classes.index(query_class)
        assert episode_labels[5] == match and found[match][1] != query_drawing


# --- Lake et al.'s one-shot runs ---------------------------------------------------------------------------


def test_one_shot_runs() -> None:
    _needs_data(omniglot.ONE_SHOT_ZIP)
    runs = load_omniglot_one_shot_runs(DATASETS_DIR)
    assert runs.train_images.shape == (20, 20, 28, 28, 1) and runs.test_images.shape == (20, 20, 28, 28, 1)
    assert runs.test_labels.shape == (20, 20) and runs.test_labels.dtype == np.int32
    # class_labels.txt of run01 starts "run01/test/item01.png run01/training/class08.png"
    assert runs.test_labels[0, 0] == 7 and runs.test_labels.min() == 0 and runs.test_labels.max() == 19
    eps = one_shot_run_episodes(runs)
    assert eps.xs.shape == (400, 21, 28, 28, 1) and eps.ys.shape == (400, 21, 20)
    labels = np.asarray(eps.ys).argmax(-1)
    np.testing.assert_array_equal(labels[:, :20], np.broadcast_to(np.arange(20), (400, 20)))
    np.testing.assert_array_equal(labels[:, 20], runs.test_labels.reshape(-1))
    np.testing.assert_array_equal(eps.xs[21, :20], runs.train_images[1])
    np.testing.assert_array_equal(eps.xs[21, 20], runs.test_images[1, 1])
