"""In-memory dataset registry: mnist, fashion_mnist, emnist, kmnist, cifar10, digits, random, sum (spec/vsml.md
§3.3), and BLUR's 2-D toy tasks (xor, and, twomoon, ...; spec/blur.md §7, `vsml.tasks.toy2d`).

A `Dataset` holds whole splits as numpy arrays, already preprocessed as spec §3.3 steps 1 and 4 say: pixels
to [0, 1], then ``(x - mu) / s`` with the per-dataset scalar constants. Labels stay integers here; episodes
turn them into one-hot vectors (learners/base.py). `sum` ("Sum Sign") is an infinite generated stream, so its
Dataset holds no arrays but a `stream` function that draws examples on device from a key (so do the 2-D toys).

Nothing is downloaded (DESIGN.md, Data): MNIST, Fashion-MNIST, EMNIST and KMNIST are read from IDX files (KMNIST
also from its .npz files), CIFAR-10 from its binary batches, all under a data folder (see `resolve_data_dir`;
the layout: docs/experiments.md, section Data); digits ships with scikit-learn; random, sum and the 2-D toys are
synthetic.
"""

from __future__ import annotations

import functools
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from vsml.tasks.cifar import CIFAR10_IMAGE_SHAPE, read_cifar10_binary
from vsml.tasks.idx import DataError, read_idx
from vsml.tasks.teachers import parse_teacher_name, teacher_stream
from vsml.tasks.toy2d import TOY2D_TASKS, toy2d_stream

__all__ = [
    "DATASET_NAMES",
    "NORMALISATION",
    "Dataset",
    "dataset_files_present",
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
        "emnist": (0.17392, 0.33191),
        "kmnist": (0.19176, 0.34834),
        "cifar10": (0.47336, 0.25157),  # one scalar pair for all three channels, as the spec gives it
        "digits": (0.30526, 0.37605),
        "random": (0.0, 1.0),
        "sum": (0.0, 1.0),
        # The 2-D toys are generated at unit scale, mostly in [-1, 1]^2 (spec/blur.md §7): the identity.
        **{name: (0.0, 1.0) for name in TOY2D_TASKS},
    }
)

# Sub-folders of the data dir per file-backed dataset, tried in order (the layout of ../shared/datasets): our
# name, then where the distributed archive unpacks to (NIST's EMNIST gzip.zip holds gzip/; CIFAR-10's binary
# tarball holds cifar-10-batches-bin/), so the files can be used as unpacked.
_DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion-mnist",),
    "emnist": ("emnist", "emnist/gzip", "gzip"),  # a folder counts only if it holds EMNIST's files
    "kmnist": ("kmnist",),
    "cifar10": ("cifar-10-batches-bin", "cifar10", "cifar10/cifar-10-batches-bin"),
}
# (images, labels) IDX stems per split, each read as `<stem>.gz` or `<stem>`. KMNIST (ROIS-CODH) uses MNIST's.
_MNIST_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Only the "byclass" split of EMNIST: the tfds default the spec names (§3.3, 62 classes).
_EMNIST_IDX_FILES = {
    "train": ("emnist-byclass-train-images-idx3-ubyte", "emnist-byclass-train-labels-idx1-ubyte"),
    "test": ("emnist-byclass-test-images-idx3-ubyte", "emnist-byclass-test-labels-idx1-ubyte"),
}
_IDX_FILES = {
    "mnist": _MNIST_IDX_FILES,
    "fashion_mnist": _MNIST_IDX_FILES,
    "emnist": _EMNIST_IDX_FILES,
    "kmnist": _MNIST_IDX_FILES,
}
# KMNIST's other distributed form: np.savez_compressed files whose one array is under the default key. Where
# both forms are present IDX wins (as for MNIST); a split never mixes them (images .npz means labels .npz).
_KMNIST_NPZ_FILES = {
    "train": ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"),
    "test": ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"),
}
_NPZ_KEY = "arr_0"
_CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
# Image shape and class count per file-backed dataset (spec §3.3's table); a file of another shape is rejected.
_FILE_DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "emnist": ((28, 28, 1), 62),
    "kmnist": ((28, 28, 1), 10),
    "cifar10": (CIFAR10_IMAGE_SHAPE, 10),
}

_RANDOM_SIZE = 20  # spec §3.3: 20 Gaussian images, cycled (a memorisation task)
_DIGITS_SPLIT_SEED = 0  # fixed, so the held-out meta-test half never changes with the run's seed
_IMAGE_28 = (28, 28, 1)

# Where the data folder is looked for without --data-dir or $VSML_DATA, relative to the current directory (the
# workspace's layout: a checkout next to shared/). Never relative to the source tree: an installed package
# must behave as a checkout does (STYLE.md §17).
DEFAULT_DATA_DIR = Path("..") / "shared" / "datasets"
_LAYOUT = "the layout: docs/experiments.md, section Data"
_DATA_FIX = (
    "point --data-dir (data_dir=...) or $VSML_DATA at the folder holding the dataset folders (mnist/, "
    f"fashion-mnist/, emnist/, kmnist/, cifar-10-batches-bin/; {_LAYOUT})"
)
# Where each file-backed dataset's files come from, for the error that finds none of its folders.
_SOURCES = {
    "mnist": "MNIST (the four IDX files, e.g. from http://yann.lecun.com/exdb/mnist/)",
    "fashion_mnist": "Fashion-MNIST (the four IDX files of https://github.com/zalandoresearch/fashion-mnist)",
    "emnist": "EMNIST byclass (the gzip/ folder of NIST's gzip.zip, https://www.nist.gov/itl/products-and-"
    "services/emnist-dataset)",
    "kmnist": "KMNIST (the MNIST-format .gz or the .npz files of https://github.com/rois-codh/kmnist)",
    "cifar10": "CIFAR-10 (cifar-10-binary.tar.gz of https://www.cs.toronto.edu/~kriz/cifar.html, unpacked)",
}


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


def _read_npz_array(path: Path) -> np.ndarray:
    """The array under `_NPZ_KEY` of a .npz file (KMNIST's form); anything else is a DataError naming the file."""
    fix = f"check the file, or copy it again from the original dataset ({_LAYOUT})"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: not a .npz archive (a bare .npy array?); {fix}")
            if _NPZ_KEY not in npz.files:
                raise DataError(f"{path}: no array {_NPZ_KEY!r} in the archive (found {npz.files}); {fix}")
            return npz[_NPZ_KEY]
    except DataError:
        raise
    # BadZipFile, EOFError, zlib.error: a truncated or corrupt archive; ValueError: not numpy data at all.
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated .npz file ({err}); {fix}") from err


@functools.lru_cache(maxsize=16)
def _read_array_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """`read_idx`, or `_read_npz_array` for a .npz file, cached per file version (mtime and size are part of the
    key so an updated file is re-read).

    The cached array is made read-only so no caller can corrupt what later loads get.
    """
    del mtime_ns, size
    array = _read_npz_array(Path(path)) if path.endswith(".npz") else read_idx(path)
    array.flags.writeable = False
    return array


def _dataset_folder(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """The first of `name`'s folders (`_DATA_FOLDERS`) that holds its first training file, else the first that
    exists (a missing file is then named there), else FileNotFoundError naming the folders and the file."""
    root = resolve_data_dir(data_dir)
    folders = [root / folder for folder in _DATA_FOLDERS[name]]
    first_file = _accepted_names(name, "train", 0)
    for folder in folders:
        if any((folder / file).is_file() for file in first_file):
            return folder
    for folder in folders:
        if folder.is_dir():
            return folder
    tried = ", ".join(f"{folder}/" for folder in folders)
    raise FileNotFoundError(
        f"dataset {name!r}: folder not found; tried {tried}, for {first_file[0]} and the other files of "
        f"{_SOURCES[name]}. Fix: put them in {folders[0]}/, or {_DATA_FIX}."
    )


def _accepted_names(name: str, split: str, which: int) -> tuple[str, ...]:
    """The names under which file `which` (0 images, 1 labels) of `split` is read, preferred first; CIFAR-10
    keeps images and labels together, so there `which` is the batch file's index."""
    if name == "cifar10":
        return (_CIFAR10_FILES[split][which],)
    stem = _IDX_FILES[name][split][which]
    names = (f"{stem}.gz", stem)
    if name == "kmnist":
        names += (_KMNIST_NPZ_FILES[split][which],)
    return names


def _find_file(folder: Path, names: tuple[str, ...]) -> Path:
    """The first of `names` present in `folder`; a missing file names the preferred one and the fix."""
    for file in names:
        if (folder / file).is_file():
            return folder / file
    others = f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""
    raise FileNotFoundError(f"dataset file not found: {folder / names[0]}{others}. Fix: {_DATA_FIX}.")


def _normalise(pixels: np.ndarray, scale: float, name: str) -> np.ndarray:
    """``(pixels / scale - mu) / s`` as float32, in place as one multiply-add (spec §3.3 steps 1, 4)."""
    mu, s = NORMALISATION[name]
    x = pixels.astype(np.float32)
    x *= np.float32(1.0 / (scale * s))
    x -= np.float32(mu / s)
    return x


def _split_files(name: str, folder: Path, split: str) -> tuple[Path, ...]:
    """The files one split is read from: (images, labels), or CIFAR-10's batch files; FileNotFoundError naming a
    missing one."""
    if name == "cifar10":
        return tuple(_find_file(folder, (file,)) for file in _CIFAR10_FILES[split])
    images_path = _find_file(folder, _accepted_names(name, split, 0))
    labels_names = _accepted_names(name, split, 1)
    if images_path.suffix == ".npz":  # KMNIST: labels in the same form as the images, never mixed
        labels_names = labels_names[-1:]
    return images_path, _find_file(folder, labels_names)


def _load_idx_split(name: str, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _split_files(name, folder, split)
    return _normalised_split(name, _file_version(images_path), _file_version(labels_path))


def _file_version(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _normalised_split(
    name: str, images_version: tuple[str, int, int], labels_version: tuple[str, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One split's normalised images and labels, cached per file version like `_read_array_cached` and read-only:
    a process that builds the same data set many times (evaluations, the test suite) converts MNIST's 60,000
    images to float once. Read-only arrays also let `standardise_per_feature` reuse its result.

    EMNIST's images are kept as the files store them (spec §3.3: "Images are not transposed"): NIST's files hold
    each character transposed relative to upright, and tfds, which the paper's code read, passes them on as they
    are; ``x.transpose(0, 2, 1, 3)`` would show them upright.
    """
    images, labels = _read_array_cached(*images_version), _read_array_cached(*labels_version)
    images_path, labels_path = images_version[0], labels_version[0]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    return _checked_split(name, images[..., None], labels, images_path, labels_path)


@functools.lru_cache(maxsize=4)
def _cifar10_split(versions: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 split from its batch files, concatenated in order, normalised, cached like `_normalised_split`."""
    batches = [read_cifar10_binary(path) for path, _, _ in versions]
    images, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    where = ", ".join(path for path, _, _ in versions)
    return _checked_split("cifar10", images, labels, where, where)


def _load_cifar10_split(name: str, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return _cifar10_split(tuple(_file_version(path) for path in _split_files(name, folder, split)))


def _checked_split(
    name: str, images: np.ndarray, labels: np.ndarray, images_path: str, labels_path: str
) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 images ``[N, H, W, C]`` and labels ``[N]`` checked against `_FILE_DATASETS`, then normalised and made
    read-only; any disagreement is a DataError naming the file."""
    shape, num_classes = _FILE_DATASETS[name]
    if images.shape[1:] != shape:
        raise DataError(
            f"{images_path}: {name} images must be {'x'.join(map(str, shape))} (spec §3.3), got "
            f"{'x'.join(map(str, images.shape[1:]))}; is this another dataset's file?"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels [N], got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{labels_path}: labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    x, y = _normalise(images, 255.0, name), labels.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _load_file_dataset(name: str, data_dir: str | os.PathLike[str] | None, seed: int) -> Dataset:
    del seed  # the files fix the splits
    folder = _dataset_folder(name, data_dir)
    load_split = _load_cifar10_split if name == "cifar10" else _load_idx_split
    train_x, train_y = load_split(name, folder, "train")
    test_x, test_y = load_split(name, folder, "test")
    shape, num_classes = _FILE_DATASETS[name]
    return Dataset(name, train_x, train_y, test_x, test_y, num_classes, shape)


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
    **{name: functools.partial(_load_file_dataset, name) for name in _FILE_DATASETS},
    "digits": _load_digits,
    "random": _load_random,
    "sum": _load_sum,
    **{name: functools.partial(_load_toy2d, name) for name in TOY2D_TASKS},
}
DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def _dataset_key(name: str) -> str:
    """A dataset name as the registry spells it: hyphens for underscores are accepted (``fashion-mnist``)."""
    return name.strip().lower().replace("-", "_")


def _unknown_dataset(name: str) -> ValueError:
    return ValueError(
        f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}, generated teacher tasks "
        "linear_teacher_F_C, mlp_teacher_F_C and blobs_teacher_F_C (F features, C classes; "
        "tasks/teachers.py) and, for few-shot episodes as task.dataset or eval.datasets, omniglot"
    )


def dataset_files_present(name: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether every file of a file-backed dataset (mnist, fashion_mnist, emnist, kmnist, cifar10) is in the data
    folder, without reading them; always true for the others (generated or shipped with a package). What reads
    the files still checks them: a present but corrupt file is a DataError then, never "absent". A data folder
    that does not exist is a FileNotFoundError (a typo must not make every dataset absent), an unknown name a
    ValueError."""
    key = _dataset_key(name)
    if key not in _FILE_DATASETS:
        if key not in _LOADERS and parse_teacher_name(key) is None and key != "omniglot":
            raise _unknown_dataset(name)
        return True
    resolve_data_dir(data_dir)
    try:
        folder = _dataset_folder(key, data_dir)
        for split in SPLITS:
            _split_files(key, folder, split)  # the loader's own choice of files
    except FileNotFoundError:
        return False
    return True


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Dataset:
    """Load a registered dataset by name (spec §3.3): one of `DATASET_NAMES`.

    ``data_dir`` is used only by file-backed datasets (mnist, fashion_mnist, emnist, kmnist, cifar10; see
    `resolve_data_dir` and docs/experiments.md, section Data, for the folders). ``seed``
    is used only by ``random`` (which 20 images) and ``fixed_random_xor`` (its frozen P and b); digits' split is
    fixed and the streams (sum, the 2-D toys) are sampled from keys later.
    Hyphens are accepted for underscores (``fashion-mnist``). Files are read and normalised once per file version
    and the arrays shared, read-only, by later loads (EMNIST byclass is large: ~2.5 GB as float32).
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = _dataset_key(name)
    teacher = parse_teacher_name(key)
    if teacher is not None:
        _, features, classes = teacher
        return Dataset(key, None, None, None, None, classes, (features,), stream=teacher_stream(*teacher))
    if key not in _LOADERS:
        raise _unknown_dataset(name)
    return _LOADERS[key](data_dir, seed)
