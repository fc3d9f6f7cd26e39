"""In-memory dataset registry: mnist, fashion_mnist, digits, random, sum (spec/vsml.md §3.3), and BLUR's 2-D toy
tasks (xor, and, twomoon, ...; spec/blur.md §7, `vsml.tasks.toy2d`).

A `Dataset` holds whole splits as numpy arrays, already preprocessed as spec §3.3 steps 1 and 4 say: pixels
to [0, 1], then ``(x - mu) / s`` with the per-dataset scalar constants. Labels stay integers here; episodes
turn them into one-hot vectors (learners/base.py). `sum` ("Sum Sign") is an infinite generated stream, so its
Dataset holds no arrays but a `stream` function that draws examples on device from a key (so do the 2-D toys).

Nothing is downloaded (DESIGN.md, Data): MNIST and Fashion-MNIST are read from IDX files under a data folder
(see `resolve_data_dir`); digits ships with scikit-learn; random, sum and the 2-D toys are synthetic.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from vsml.tasks.idx import DataError, read_idx
from vsml.tasks.teachers import parse_teacher_name, teacher_stream
from vsml.tasks.toy2d import TOY2D_TASKS, toy2d_stream

__all__ = [
    "DATASET_NAMES",
    "NORMALISATION",
    "Dataset",
    "load_dataset",
    "resolve_data_dir",
    "sample_sum_sign",
]

SPLITS = ("train", "test")

# (mu, s) of spec §3.3's normalisation (x - mu) / s, applied after scaling pixels to [0, 1].
# digits is ours, not the paper's: the mean and (population, ddof=0) std over all 1797 x 64 pixels of
# scikit-learn's load_digits() after /16, rounded to 5 decimals like the spec's constants
# (0.305260286..., 0.376049221...); tests/tasks/test_datasets.py recomputes them.
NORMALISATION: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "mnist": (0.13066, 0.30811),
        "fashion_mnist": (0.13066, 0.30811),  # spec §3.3: Fashion-MNIST reuses the MNIST constants
        "digits": (0.30526, 0.37605),
        "random": (0.0, 1.0),
        "sum": (0.0, 1.0),
        # The 2-D toys are generated at unit scale, mostly in [-1, 1]^2 (spec/blur.md §7): the identity.
        **{name: (0.0, 1.0) for name in TOY2D_TASKS},
    }
)

# Sub-folder of the data dir per IDX dataset (the layout of ../shared/datasets).
_IDX_FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_RANDOM_SIZE = 20  # spec §3.3: 20 Gaussian images, cycled (a memorisation task)
_DIGITS_SPLIT_SEED = 0  # fixed, so the held-out meta-test half never changes with the run's seed
_IMAGE_28 = (28, 28, 1)

# Where the data folder is looked for without --data-dir or $VSML_DATA, relative to the current directory (the
# workspace's layout: a checkout next to shared/). Never relative to the source tree: an installed package
# must behave as a checkout does (STYLE.md §17).
DEFAULT_DATA_DIR = Path("..") / "shared" / "datasets"
_DATA_FIX = "point --data-dir (data_dir=...) or $VSML_DATA at the folder holding mnist/ and fashion-mnist/"


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset with its train and test splits (spec §3.3).

    Array datasets: ``train_x``/``test_x`` float32 ``[N, *input_shape]`` normalised, ``train_y``/``test_y``
    int32 ``[N]`` in ``[0, num_classes)``; ``stream`` is None. Generated streams (``sum``): the four arrays
    are None and ``stream(key, num) -> (x [num, *input_shape] float32, y [num] int32)`` draws fresh examples;
    both splits are the same i.i.d. stream, kept apart only by the keys the caller uses.
    """

    name: str
    train_x: np.ndarray | None  # [N_train, *input_shape] float32, normalised
    train_y: np.ndarray | None  # [N_train] int32
    test_x: np.ndarray | None  # [N_test, *input_shape] float32, normalised
    test_y: np.ndarray | None  # [N_test] int32
    num_classes: int
    input_shape: tuple[int, ...]  # images are [H, W, C]
    stream: Callable[[jax.Array, int], tuple[jax.Array, jax.Array]] | None = None

    @property
    def is_stream(self) -> bool:
        """True for a generated infinite stream (no arrays)."""
        return self.stream is not None

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``(x, y)`` arrays of ``split`` ("train" or "test") of an array dataset."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        if self.is_stream:
            raise ValueError(f"dataset {self.name!r} is a generated stream without arrays; sample it instead")
        if split == "train":
            return self.train_x, self.train_y  # type: ignore[return-value]
        return self.test_x, self.test_y  # type: ignore[return-value]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the real datasets (DESIGN.md, Data).

    Order: the explicit ``data_dir``; else ``$VSML_DATA``; else ``../shared/datasets`` from the current
    directory (`DEFAULT_DATA_DIR`; e.g. the root of a checkout that sits next to ``shared/``). Where the
    package is installed plays no part. An explicit argument or a set ``$VSML_DATA`` must exist: a typo should
    fail loudly rather than silently read another folder.
    """
    if data_dir is not None:
        path, source = Path(data_dir).expanduser(), "data_dir argument"
    elif os.environ.get("VSML_DATA"):
        path, source = Path(os.environ["VSML_DATA"]).expanduser(), "$VSML_DATA"
    else:
        path, source = Path.cwd() / DEFAULT_DATA_DIR, "the default, relative to the current directory"
    if path.is_dir():
        return path.resolve()
    raise FileNotFoundError(f"data folder not found ({source}); tried: {path}. Fix: {_DATA_FIX}.")


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """`read_idx`, cached per file version (mtime and size are part of the key so an updated file is re-read).

    The cached array is made read-only so no caller can corrupt what later loads get.
    """
    del mtime_ns, size
    array = read_idx(path)
    array.flags.writeable = False
    return array


def _idx_path(folder: Path, stem: str) -> Path:
    """`<stem>.gz` if present, else the decompressed `<stem>`; a missing file names the .gz and the fix."""
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    raise FileNotFoundError(f"dataset file not found: {folder / stem}.gz (nor {stem}). Fix: {_DATA_FIX}.")


def _normalise(pixels: np.ndarray, scale: float, name: str) -> np.ndarray:
    """``(pixels / scale - mu) / s`` as float32, in place as one multiply-add (spec §3.3 steps 1, 4)."""
    mu, s = NORMALISATION[name]
    x = pixels.astype(np.float32)
    x *= np.float32(1.0 / (scale * s))
    x -= np.float32(mu / s)
    return x


def _load_idx_split(name: str, folder: Path, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = _IDX_FILES[split]
    images_path, labels_path = _idx_path(folder, images_stem), _idx_path(folder, labels_stem)
    return _normalised_split(name, _file_version(images_path), _file_version(labels_path), num_classes)


def _file_version(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _normalised_split(
    name: str, images_version: tuple[str, int, int], labels_version: tuple[str, int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One split's normalised images and labels, cached per file version like `_read_idx_cached` and read-only:
    a process that builds the same data set many times (evaluations, the test suite) converts MNIST's 60,000
    images to float once. Read-only arrays also let `standardise_per_feature` reuse its result."""
    images, labels = _read_idx_cached(*images_version), _read_idx_cached(*labels_version)
    images_path, labels_path = images_version[0], labels_version[0]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels [N], got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{labels_path}: labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    x, y = _normalise(images[..., None], 255.0, name), labels.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _load_idx_dataset(name: str, data_dir: str | os.PathLike[str] | None, seed: int) -> Dataset:
    del seed  # the files fix the splits
    folder = resolve_data_dir(data_dir) / _IDX_FOLDERS[name]
    train_x, train_y = _load_idx_split(name, folder, "train", 10)
    test_x, test_y = _load_idx_split(name, folder, "test", 10)
    return Dataset(name, train_x, train_y, test_x, test_y, 10, tuple(train_x.shape[1:]))


def _load_digits(data_dir: str | os.PathLike[str] | None, seed: int) -> Dataset:
    """scikit-learn's 1797 8x8 digits, split 50/50 by a fixed permutation; the test half is meta-test data."""
    del data_dir, seed  # bundled with scikit-learn; the split is fixed on purpose
    try:
        from sklearn.datasets import load_digits  # imported only when needed (it is slow to import)
    except ImportError as err:
        raise ImportError(
            "dataset 'digits' comes with scikit-learn, a dependency of vsml that is missing here: "
            "pip install scikit-learn"
        ) from err
    bunch = load_digits()
    x = _normalise(np.asarray(bunch.images)[..., None], 16.0, "digits")  # pixel values are 0..16
    y = np.asarray(bunch.target, dtype=np.int32)
    order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    return Dataset("digits", x[train], y[train], x[test], y[test], 10, (8, 8, 1))


def _random_split(seed: int, split_index: int) -> tuple[np.ndarray, np.ndarray]:
    # One SeedSequence per (seed, split) so the train and eval instances differ, as in spec §3.3.
    rng = np.random.default_rng([seed, split_index])
    x = rng.standard_normal((_RANDOM_SIZE, *_IMAGE_28), dtype=np.float32)
    y = rng.integers(0, 10, size=_RANDOM_SIZE).astype(np.int32)
    return x, y  # NORMALISATION["random"] is the identity


def _load_random(data_dir: str | os.PathLike[str] | None, seed: int) -> Dataset:
    """20 N(0, 1) images with uniform labels over 10 classes, drawn once per split from `seed` (spec §3.3)."""
    del data_dir
    train_x, train_y = _random_split(seed, 0)
    test_x, test_y = _random_split(seed, 1)
    return Dataset("random", train_x, train_y, test_x, test_y, 10, _IMAGE_28)


def sample_sum_sign(
    key: jax.Array, num: int, input_shape: tuple[int, ...] = _IMAGE_28
) -> tuple[jax.Array, jax.Array]:
    """Draw `num` "Sum Sign" examples (spec §3.3): x = m + truncated N(0, 1) noise (cut at +-2), m ~ U(-1, 1)
    per image; label 1 if the sum of the pixels is >= 0, else 0. Returns (x [num, *input_shape] float32,
    y [num] int32). Jittable with `num` and `input_shape` static; normalisation (mu 0, s 1) is the identity.
    """
    key_mean, key_noise = jax.random.split(key)
    mean = jax.random.uniform(key_mean, (num,) + (1,) * len(input_shape), jnp.float32, -1.0, 1.0)
    noise = jax.random.truncated_normal(key_noise, -2.0, 2.0, (num, *input_shape), jnp.float32)
    x = mean + noise
    y = (jnp.sum(x.reshape(num, -1), axis=-1) >= 0).astype(jnp.int32)
    return x, y


def _load_sum(data_dir: str | os.PathLike[str] | None, seed: int) -> Dataset:
    del data_dir, seed  # an infinite stream: all randomness comes from the sampling key
    return Dataset("sum", None, None, None, None, 2, _IMAGE_28, stream=sample_sum_sign)


def _load_toy2d(name: str, data_dir: str | os.PathLike[str] | None, seed: int) -> Dataset:
    """A BLUR 2-D toy task as an infinite stream of ``[2]`` inputs; `seed` only freezes fixed_random_xor."""
    del data_dir
    stream, num_classes = toy2d_stream(name, seed)
    return Dataset(name, None, None, None, None, num_classes, (2,), stream=stream)


_LOADERS: dict[str, Callable[[str | os.PathLike[str] | None, int], Dataset]] = {
    "mnist": functools.partial(_load_idx_dataset, "mnist"),
    "fashion_mnist": functools.partial(_load_idx_dataset, "fashion_mnist"),
    "digits": _load_digits,
    "random": _load_random,
    "sum": _load_sum,
    **{name: functools.partial(_load_toy2d, name) for name in TOY2D_TASKS},
}
DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Dataset:
    """Load a registered dataset by name (spec §3.3): one of `DATASET_NAMES`.

    ``data_dir`` is used only by file-backed datasets (mnist, fashion_mnist; see `resolve_data_dir`). ``seed``
    is used only by ``random`` (which 20 images) and ``fixed_random_xor`` (its frozen P and b); digits' split is
    fixed and the streams (sum, the 2-D toys) are sampled from keys later.
    Hyphens are accepted for underscores (``fashion-mnist``). IDX files are cached per file, so repeated loads
    only redo the normalisation.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    teacher = parse_teacher_name(key)
    if teacher is not None:
        _, features, classes = teacher
        return Dataset(key, None, None, None, None, classes, (features,), stream=teacher_stream(*teacher))
    if key not in _LOADERS:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}, generated teacher tasks "
            "linear_teacher_F_C, mlp_teacher_F_C and blobs_teacher_F_C (F features, C classes; "
            "tasks/teachers.py) and, for few-shot episodes as task.dataset or eval.datasets, omniglot"
        )
    return _LOADERS[key](data_dir, seed)
