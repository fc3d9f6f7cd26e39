"""Omniglot few-shot episodes (spec/vsml.md §6.5), read from the zips of Lake et al.'s repository.

Images follow the authors' ``omniglot_fewshot`` pipeline (their data.py, spec §3.3): the 105x105 binary drawing
as one channel with the PNG's convention kept (white background 1, black ink 0), scaled to 28x28 with
``tf.image.resize``'s default, *bilinear without antialiasing* (half-pixel centres; ``resize_method="area"``
offers exact area averaging instead), then normalised as ``(x - 0.92206) / 0.26808``. On the 4840 drawings here,
bilinear gives pixel mean 0.919 and std 0.262 before normalising, area 0.919 and 0.233; the authors' constants
(0.922, 0.268, measured on tfds's full set) agree with bilinear.

**Data and split (a documented choice).** The authors train on tfds's "train" split (the 30 background
alphabets) and test on its "test" split (the 20 evaluation alphabets). Only the two small background subsets
are available offline (shared/datasets/README.md): ``images_background_small1.zip`` and ``..._small2.zip``,
8 distinct alphabets and 242 characters of 20 drawings each (Greek and Latin are in both zips and are read
once). Characters are the classes; they are split *by alphabet*, so meta-test characters come from scripts never
seen in meta-training: `OMNIGLOT_TEST_ALPHABETS` (Korean, Tagalog: 57 characters) for "test", the other six
(185 characters) for "train". The 20 one-shot runs of ``all_runs.zip`` (20-way 1-shot, drawn from the evaluation
alphabets, so disjoint from both splits) are exposed too: `load_omniglot_one_shot_runs`, `one_shot_run_episodes`.

**Episodes (spec §6.5, reconstructed from data.py).** Choose ``ways`` distinct classes and ``shots + 1``
distinct drawings of each; drawing 0 of a class is its query candidate, drawings 1..shots go to the support.
The sequence is the ``ways * shots`` support items in random order, then the first drawing of a randomly chosen
class as the query (T = ways * shots + 1). Labels are reassigned by order of first appearance (data.py's
``tf.unique``). Classes are always distinct, as spec §6.5 says (data.py's ``group_by_window`` over a shuffled
stream does not strictly guarantee it). The defaults ``ways=5, shots=1`` are the paper's task: 5 pairs, T = 6,
the k-th support item has label k - 1 and the query's label is the position of its class among the supports.
Only the last step counts for the loss (``loss_type: last``).

PNGs are decoded here with zlib and numpy (Omniglot's are 1-bit greyscale), so no imaging library is needed:
decoding, resizing and normalising all 4840 drawings takes under a second on one CPU core, once per process
(an in-memory cache; nothing is written to disk).
"""

from __future__ import annotations

import functools
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vsml.tasks.datasets import SPLITS, resolve_data_dir
from vsml.tasks.episodes import Episodes
from vsml.tasks.idx import DataError

__all__ = [
    "OMNIGLOT_NORMALISATION",
    "OMNIGLOT_TEST_ALPHABETS",
    "FewShotSource",
    "Omniglot",
    "OneShotRuns",
    "load_omniglot",
    "load_omniglot_one_shot_runs",
    "make_few_shot_source",
    "one_shot_run_episodes",
    "sample_all_drawings_episodes",
    "sample_few_shot_episodes",
]

Array = jax.Array

OMNIGLOT_NORMALISATION: tuple[float, float] = (0.92206, 0.26808)  # (mu, s), spec §3.3 "omniglot(_fewshot)"
OMNIGLOT_TEST_ALPHABETS: tuple[str, ...] = ("Korean", "Tagalog")  # meta-test alphabets (module docstring)
BACKGROUND_ZIPS = ("images_background_small1.zip", "images_background_small2.zip")
ONE_SHOT_ZIP = "all_runs.zip"
IMAGE_SIZE = 28  # spec §6.5: resized to 28x28
RESIZE_METHODS = ("bilinear", "area")

_FOLDER = "omniglot"
_FIX = "point --data-dir (data_dir=...) or $VSML_DATA at the folder holding omniglot/"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- PNG decoding ------------------------------------------------------------------------------------------


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG row filters (PNG spec §9) of `rows` [H, 1 + row_bytes]; returns [H, row_bytes] uint8."""
    filters, data = rows[:, 0], rows[:, 1:].astype(np.int32)
    if not filters.any():  # filter 0 everywhere: the case of every Omniglot file
        return data.astype(np.uint8)
    out = np.zeros_like(data)
    prev = np.zeros(data.shape[1], np.int32)
    for r, kind in enumerate(filters):
        row = data[r].copy()
        if kind == 2:  # up
            row = row + prev
        elif kind in (1, 3, 4):  # sub, average, Paeth: sequential within the row
            for i in range(len(row)):
                a = row[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if kind == 1:
                    row[i] += a
                elif kind == 3:
                    row[i] += (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    row[i] += a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] &= 0xFF
        elif kind != 0:
            raise ValueError(f"unknown PNG filter type {kind}")
        out[r] = prev = row & 0xFF
    return out.astype(np.uint8)


def _decode_png(data: bytes) -> np.ndarray:
    """A non-interlaced greyscale PNG (bit depth 1 or 8) as uint8 [H, W] in 0..255; ValueError if not.

    A 1-bit image maps to 0 and 255, as tfds decodes Omniglot (black ink 0, white background 255).
    """
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError("not a PNG (bad signature)")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError("truncated PNG chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, body, CRC
    if header is None or not idat:
        raise ValueError("PNG without IHDR or IDAT chunk")
    width, height, depth, colour, _, _, interlace = header
    if colour != 0 or depth not in (1, 8) or interlace != 0:
        raise ValueError(f"unsupported PNG (colour type {colour}, bit depth {depth}, interlace {interlace})")
    row_bytes = (width * depth + 7) // 8
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size != height * (row_bytes + 1):
        raise ValueError(f"PNG pixel data has {raw.size} bytes, expected {height * (row_bytes + 1)}")
    pixels = _unfilter(raw.reshape(height, row_bytes + 1), bpp=1)
    if depth == 1:
        return np.unpackbits(pixels, axis=1)[:, :width] * np.uint8(255)
    return pixels


# --- resizing and loading ----------------------------------------------------------------------------------


def _resize_weights(in_size: int, out_size: int, method: str) -> np.ndarray:
    """[out, in] weights of a separable 1-D resize; an image resizes as ``W @ image @ W.T``.

    "bilinear": ``tf.image.resize``'s default (TF2, antialias=False), what data.py calls: output i samples
    input position (i + 0.5) * in/out - 0.5 by linear interpolation, clamped to the border. "area": each
    output pixel is the mean of the input area it covers (box filter with fractional overlaps).
    """
    scale = in_size / out_size
    out = np.arange(out_size, dtype=np.float64)[:, None]
    if method == "bilinear":
        centre = (out[:, 0] + 0.5) * scale - 0.5
        floor = np.floor(centre)
        lower = np.clip(floor, 0, in_size - 1).astype(int)
        upper = np.clip(np.ceil(centre), 0, in_size - 1).astype(int)
        weights = np.zeros((out_size, in_size))
        np.add.at(weights, (np.arange(out_size), lower), 1.0 - (centre - floor))
        np.add.at(weights, (np.arange(out_size), upper), centre - floor)
        return weights
    if method == "area":
        pixel = np.arange(in_size, dtype=np.float64)[None, :]
        overlap = np.minimum((out + 1) * scale, pixel + 1) - np.maximum(out * scale, pixel)
        return np.clip(overlap, 0.0, None) / scale
    raise ValueError(f"unknown resize_method {method!r}; use one of {RESIZE_METHODS}")


def _preprocess(images: np.ndarray, method: str) -> np.ndarray:
    """uint8 [N, H, W] -> [N, 28, 28, 1] float32: to [0, 1], resized, normalised (spec §3.3 steps 1, 3, 4)."""
    rows = _resize_weights(images.shape[1], IMAGE_SIZE, method).astype(np.float32)
    cols = _resize_weights(images.shape[2], IMAGE_SIZE, method).astype(np.float32)
    # Two batched matmuls (columns, then rows), the 1/255 of step 1 folded into the weights.
    resized = np.matmul(rows / np.float32(255.0), np.matmul(images.astype(np.float32), cols.T))
    mu, s = OMNIGLOT_NORMALISATION
    return ((resized - np.float32(mu)) / np.float32(s)).astype(np.float32)[..., None]


def _zip_paths(data_dir: str | os.PathLike[str] | None, names: tuple[str, ...]) -> list[Path]:
    folder = resolve_data_dir(data_dir) / _FOLDER
    paths = [folder / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Omniglot file(s) not found in {folder}: {', '.join(missing)} (needed: {', '.join(names)}; the "
            f"layout: README.md, section Data). Fix: {_FIX}."
        )
    return paths


def _file_versions(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) per file: a cache key that changes when a file is replaced."""
    return tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


def _read_pngs(path: str, wanted: Mapping[str, Hashable]) -> dict[Hashable, np.ndarray]:
    """Decode the PNG members of the zip at `path` named by the keys of `wanted` (member -> output key)."""
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name, key in wanted.items():
                try:
                    data = archive.read(name)  # zipfile checks each member's CRC
                except KeyError as err:
                    raise DataError(f"{path}: member {name} is missing; re-copy the file ({_FIX})") from err
                try:
                    out[key] = _decode_png(data)
                except (ValueError, zlib.error, struct.error) as err:
                    raise DataError(f"{path}: member {name} is not a valid Omniglot PNG ({err})") from err
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise DataError(f"{path}: corrupt or truncated zip file ({err}); re-copy it ({_FIX})") from err
    return out


def _background_members(path: str) -> dict[str, str]:
    """``<top>/<alphabet>/<character>/<drawing>.png`` members -> ``<alphabet>/<character>/<drawing>``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{path}: not a readable zip file ({err}); re-copy it ({_FIX})") from err
    members = {}
    for name in names:
        parts = name.split("/")
        if name.endswith(".png") and len(parts) == 4:
            members[name] = "/".join(parts[1:])[: -len(".png")]
    if not members:
        raise DataError(f"{path}: no <alphabet>/<character>/<drawing>.png images inside; {_FIX}")
    return members


@functools.lru_cache(maxsize=4)
def _load_background(
    versions: tuple[tuple[str, int, int], ...], method: str
) -> tuple[tuple[str, ...], np.ndarray]:
    """All background characters, sorted by name, and their drawings [C, D, 28, 28, 1] (read-only, cached).

    A drawing present in several zips (Greek, Latin) is decoded once, from the first zip that has it.
    """
    drawings: dict[str, np.ndarray] = {}
    for path, _, _ in versions:
        members = {name: key for name, key in _background_members(path).items() if key not in drawings}
        drawings.update(_read_pngs(path, members))
    characters: dict[str, list[str]] = {}
    for key in sorted(drawings):
        characters.setdefault(key.rsplit("/", 1)[0], []).append(key)
    counts = {len(keys) for keys in characters.values()}
    if len(counts) != 1:
        uneven = {c: len(k) for c, k in characters.items() if len(k) != max(counts)}
        raise DataError(f"Omniglot characters need equal drawing counts; these differ: {uneven}. {_FIX}")
    shapes = {image.shape for image in drawings.values()}
    if len(shapes) != 1:
        raise DataError(f"Omniglot drawings have different sizes {sorted(shapes)}; {_FIX}")
    order = [key for keys in characters.values() for key in keys]
    images = _preprocess(np.stack([drawings[key] for key in order]), method)
    images = images.reshape(len(characters), counts.pop(), *images.shape[1:])
    images.flags.writeable = False
    return tuple(characters), images


@dataclass(frozen=True, eq=False)
class Omniglot:
    """Omniglot characters of the two splits (see the module docstring for the split).

    ``*_images``: float32 ``[num_characters, 20, 28, 28, 1]``, normalised (spec §3.3); ``*_characters``: the
    ``"<alphabet>/characterNN"`` name of each row, sorted.
    """

    train_images: np.ndarray
    train_characters: tuple[str, ...]
    test_images: np.ndarray
    test_characters: tuple[str, ...]

    def split(self, split: str) -> np.ndarray:
        """The ``[num_characters, num_drawings, 28, 28, 1]`` images of ``split`` ("train" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        return self.train_images if split == "train" else self.test_images


def load_omniglot(
    data_dir: str | os.PathLike[str] | None = None,
    test_alphabets: tuple[str, ...] = OMNIGLOT_TEST_ALPHABETS,
    resize_method: str = "bilinear",
) -> Omniglot:
    """Load the offline Omniglot background characters, split by alphabet (spec §6.5; module docstring).

    Reads ``omniglot/images_background_small{1,2}.zip`` under `resolve_data_dir(data_dir)`. Decoded arrays are
    cached per file version and method, so repeated loads are free. ``test_alphabets`` must name alphabets
    that exist; every other alphabet goes to "train".
    """
    if resize_method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize_method {resize_method!r}; use one of {RESIZE_METHODS}")
    characters, images = _load_background(
        _file_versions(_zip_paths(data_dir, BACKGROUND_ZIPS)), resize_method
    )
    alphabets = sorted({c.split("/")[0] for c in characters})
    unknown = sorted(set(test_alphabets) - set(alphabets))
    if unknown or not test_alphabets or set(test_alphabets) == set(alphabets):
        raise ValueError(
            f"test_alphabets must be a non-empty proper subset of the alphabets {alphabets}; got "
            f"{tuple(test_alphabets)}" + (f" (unknown: {unknown})" if unknown else "")
        )
    is_test = np.array([c.split("/")[0] in test_alphabets for c in characters])
    train = tuple(c for c, test in zip(characters, is_test, strict=True) if not test)
    test = tuple(c for c, test in zip(characters, is_test, strict=True) if test)
    return Omniglot(images[~is_test], train, images[is_test], test)  # copies: the cache stays untouched


# --- few-shot episodes -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: no elementwise == on arrays
class FewShotSource:
    """Characters to draw few-shot episodes from: ``images`` ``[num_classes, num_drawings, *input_shape]``.

    A pytree whose array is a leaf (a traced argument under jit, not an embedded constant; episodes.py).
    """

    images: Array  # [C, D, *input_shape] float32 (leaf)

    @property
    def num_classes(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_drawings(self) -> int:
        return int(self.images.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.images.shape[2:])


jax.tree_util.register_dataclass(FewShotSource, data_fields=["images"], meta_fields=[])


def make_few_shot_source(omniglot: Omniglot, split: str) -> FewShotSource:
    """The few-shot source of one split ("train" or "test") of `omniglot`, moved to device."""
    return FewShotSource(jnp.asarray(omniglot.split(split), jnp.float32))


def _check_count(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{what} must be a Python int, got {type(value).__name__}; under jax.jit mark it static "
            f"(static_argnames=('num_episodes', 'ways', 'shots'))"
        )
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _episode_indices(
    key: Array, num_episodes: int, num_classes: int, num_drawings: int, ways: int, shots: int
) -> tuple[Array, Array, Array]:
    """(class, drawing, label) indices ``[num_episodes, ways * shots + 1]`` (spec §6.5; module docstring).

    All randomness is one block of uniforms: random subsets are ``top_k`` of i.i.d. uniforms (uniform, ordered,
    without replacement) and orders are their ``argsort``. On CPU each `jax.random` call costs ~0.5 s of
    compilation, so this compiles several times faster than `jax.random.choice` + `permutation` per episode.
    """
    sizes = (num_classes, ways * num_drawings, ways * shots, ways)
    uniforms = jax.random.uniform(key, (num_episodes, sum(sizes)))
    u_class, u_drawing, u_order, u_query = jnp.split(uniforms, np.cumsum(sizes)[:-1], axis=1)
    _, classes = jax.lax.top_k(u_class, ways)  # [N, ways] distinct classes
    _, drawings = jax.lax.top_k(u_drawing.reshape(num_episodes, ways, num_drawings), shots + 1)
    # drawings [N, ways, shots + 1]: column 0 is each class's query candidate (data.py: index % num_examples
    # == 0), columns 1.. its support items.
    order = jnp.argsort(u_order, axis=1)  # a uniformly random order of the ways * shots support items
    group = order // shots  # which of the chosen classes each support item belongs to
    support_drawing = jnp.take_along_axis(drawings[:, :, 1:].reshape(num_episodes, -1), order, axis=1)
    query_group = jnp.argmax(u_query, axis=1)  # uniform over the ways classes
    query_drawing = jnp.take_along_axis(drawings[:, :, 0], query_group[:, None], axis=1)
    # Labels by first appearance (data.py's tf.unique): rank the groups by the position where each first occurs.
    first = jnp.argmax(group[:, None, :] == jnp.arange(ways)[None, :, None], axis=2)  # [N, ways]
    label_of_group = jnp.argsort(jnp.argsort(first, axis=1), axis=1)
    groups = jnp.concatenate([group, query_group[:, None]], axis=1)  # [N, T]
    return (
        jnp.take_along_axis(classes, groups, axis=1),
        jnp.concatenate([support_drawing, query_drawing], axis=1),
        jnp.take_along_axis(label_of_group, groups, axis=1),
    )


def sample_few_shot_episodes(
    source: FewShotSource, key: Array, num_episodes: int, ways: int = 5, shots: int = 1
) -> Episodes:
    """Sample `num_episodes` ``ways``-way ``shots``-shot episodes (spec §6.5), T = ways * shots + 1.

    Returns ``Episodes(xs [N, T, *input_shape] float32, ys [N, T, ways] one-hot)``; the last step is the query.
    With the defaults this is exactly the paper's 5-way 1-shot task (T = 6). Episodes are independent; the
    same key gives the same episodes. Jittable with ``num_episodes``, ``ways``, ``shots`` static.
    """
    num_episodes = _check_count(num_episodes, "num_episodes")
    ways = _check_count(ways, "ways", minimum=2)
    shots = _check_count(shots, "shots")
    if not isinstance(source, FewShotSource) or source.images.ndim < 3:
        raise TypeError("source must be a FewShotSource with images [classes, drawings, *input_shape]")
    if ways > source.num_classes:
        raise ValueError(f"ways={ways} needs that many classes, the source has {source.num_classes}")
    if shots + 1 > source.num_drawings:
        raise ValueError(
            f"shots={shots} needs {shots + 1} drawings per class, the source has {source.num_drawings}"
        )
    return _sample_few_shot_episodes(source, key, num_episodes, ways, shots)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))  # eager calls compile once per shape (episodes.py)
def _sample_few_shot_episodes(
    source: FewShotSource, key: Array, num_episodes: int, ways: int, shots: int
) -> Episodes:
    num_classes, num_drawings = source.images.shape[:2]
    classes, drawings, labels = _episode_indices(key, num_episodes, num_classes, num_drawings, ways, shots)
    xs = source.images[classes, drawings].astype(jnp.float32)
    return Episodes(xs, jax.nn.one_hot(labels, ways, dtype=jnp.float32))


def sample_all_drawings_episodes(source: FewShotSource, key: Array, num_episodes: int, ways: int) -> Episodes:
    """`num_episodes` online episodes of ``ways`` distinct characters with *every* drawing of each, shuffled:
    T = ways · drawings steps (20 · ways here), no image twice, labels by first appearance.

    Not in the papers: the protocol of issue 24's meta-test suite ("C-way episodes of 20·C steps without
    repeated images"), online learning of new characters rather than §6.5's one query. Returns
    ``Episodes(xs [N, T, *input_shape], ys [N, T, ways])``; jittable with ``num_episodes`` and ``ways`` static.
    """
    num_episodes = _check_count(num_episodes, "num_episodes")
    ways = _check_count(ways, "ways", minimum=2)
    if not isinstance(source, FewShotSource) or source.images.ndim < 3:
        raise TypeError("source must be a FewShotSource with images [classes, drawings, *input_shape]")
    if ways > source.num_classes:
        raise ValueError(f"ways={ways} needs that many classes, the source has {source.num_classes}")
    return _sample_all_drawings_episodes(source, key, num_episodes, ways)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sample_all_drawings_episodes(source: FewShotSource, key: Array, num_episodes: int, ways: int) -> Episodes:
    num_classes, num_drawings = source.images.shape[:2]
    length = ways * num_drawings
    key_classes, key_order = jax.random.split(key)
    pick = jax.vmap(lambda k: jax.random.permutation(k, num_classes)[:ways])
    classes = pick(jax.random.split(key_classes, num_episodes))  # [N, ways] distinct characters
    shuffle = jax.vmap(lambda k: jax.random.permutation(k, length))
    order = shuffle(jax.random.split(key_order, num_episodes))  # [N, T]: each (group, drawing) once
    group, drawing = order // num_drawings, order % num_drawings
    first = jnp.argmax(group[:, None, :] == jnp.arange(ways)[None, :, None], axis=2)  # [N, ways]
    label_of_group = jnp.argsort(jnp.argsort(first, axis=1), axis=1)
    xs = source.images[jnp.take_along_axis(classes, group, axis=1), drawing].astype(jnp.float32)
    labels = jnp.take_along_axis(label_of_group, group, axis=1)
    return Episodes(xs, jax.nn.one_hot(labels, ways, dtype=jnp.float32))


# --- the 20 one-shot runs of Lake et al. ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OneShotRuns:
    """Lake et al.'s 20 runs of 20-way 1-shot classification (``all_runs.zip``), preprocessed like `load_omniglot`.

    Run r shows one drawing of each of 20 characters (``train_images[r, k]`` is class k) and 20 other drawings
    to classify (``test_images[r, i]``, true class ``test_labels[r, i]``). The characters come from the
    evaluation alphabets, so they are disjoint from both `load_omniglot` splits.
    """

    train_images: np.ndarray  # [runs, 20, 28, 28, 1] float32, normalised
    test_images: np.ndarray  # [runs, 20, 28, 28, 1] float32, normalised
    test_labels: np.ndarray  # [runs, 20] int32 in [0, 20)


_RUN_LINE = re.compile(r"^(run\d+)/test/item(\d+)\.png\s+\1/training/class(\d+)\.png$")


@functools.lru_cache(maxsize=2)
def _load_one_shot_runs(version: tuple[str, int, int], method: str) -> OneShotRuns:
    path = version[0]
    try:
        with zipfile.ZipFile(path) as archive:
            label_files = sorted(n for n in archive.namelist() if n.endswith("/class_labels.txt"))
            texts = [archive.read(n).decode("ascii") for n in label_files]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: corrupt or truncated zip file ({err}); re-copy it ({_FIX})") from err
    pairs = []  # (run, item, class), 1-based numbers from the file names
    for name, text in zip(label_files, texts, strict=True):
        for line in filter(None, (ln.strip() for ln in text.splitlines())):
            match = _RUN_LINE.match(line)
            if match is None or f"{match[1]}/class_labels.txt" != name:
                raise DataError(f"{path}: unexpected line in {name}: {line!r}")
            pairs.append((match[1], int(match[2]), int(match[3])))
    runs = sorted({run for run, _, _ in pairs})
    size = len(pairs) // max(len(runs), 1)
    for run in runs:
        items = sorted(i for r, i, _ in pairs if r == run)
        classes = {c for r, _, c in pairs if r == run}
        if items != list(range(1, size + 1)) or not classes <= set(items):
            raise DataError(f"{path}: {run}/class_labels.txt must map items 1..{size} to classes 1..{size}")
    if not runs:
        raise DataError(f"{path}: no runNN/class_labels.txt inside; {_FIX}")
    wanted = {}
    for run in runs:
        for k in range(1, size + 1):
            wanted[f"{run}/training/class{k:02d}.png"] = ("train", run, k)
            wanted[f"{run}/test/item{k:02d}.png"] = ("test", run, k)
    decoded = _read_pngs(path, wanted)
    images = _preprocess(np.stack([decoded[key] for key in wanted.values()]), method).reshape(
        len(runs), size, 2, IMAGE_SIZE, IMAGE_SIZE, 1
    )
    labels = np.zeros((len(runs), size), np.int32)
    for run, item, cls in pairs:
        labels[runs.index(run), item - 1] = cls - 1
    result = OneShotRuns(images[:, :, 0].copy(), images[:, :, 1].copy(), labels)
    for array in (result.train_images, result.test_images, result.test_labels):
        array.flags.writeable = False
    return result


def load_omniglot_one_shot_runs(
    data_dir: str | os.PathLike[str] | None = None, resize_method: str = "bilinear"
) -> OneShotRuns:
    """Read ``omniglot/all_runs.zip`` under `resolve_data_dir(data_dir)` (cached per file version)."""
    if resize_method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize_method {resize_method!r}; use one of {RESIZE_METHODS}")
    return _load_one_shot_runs(_file_versions(_zip_paths(data_dir, (ONE_SHOT_ZIP,)))[0], resize_method)


def one_shot_run_episodes(runs: OneShotRuns) -> Episodes:
    """One episode per test item: the 20 class drawings in class order (label k), then the item as query.

    Returns ``Episodes(xs [runs * 20, 21, 28, 28, 1], ys [runs * 20, 21, 20])``, the §6.5 layout (labels by
    first appearance, query last) with 20 ways; score it on the last step only.
    """
    num_runs, ways = runs.test_labels.shape
    support = np.broadcast_to(runs.train_images[:, None], (num_runs, ways, *runs.train_images.shape[1:]))
    xs = np.concatenate([support, runs.test_images[:, :, None]], axis=2)  # [runs, items, ways + 1, ...]
    labels = np.concatenate(
        [np.broadcast_to(np.arange(ways), (num_runs, ways, ways)), runs.test_labels[:, :, None]], axis=2
    )
    xs = xs.reshape(num_runs * ways, ways + 1, *xs.shape[3:])
    ys = jax.nn.one_hot(labels.reshape(num_runs * ways, ways + 1), ways, dtype=jnp.float32)
    return Episodes(jnp.asarray(xs, jnp.float32), ys)
