"""Synthetic 2-D classification tasks of BLUR (Sandler et al., "Meta-Learning Bidirectional Update Rules",
ICML 2021, §4.1, Figs. 3-4), ported to JAX from the authors' numpy ``blur/data/func2d.py`` (spec/blur.md §7).

The paper meta-trains on xor, and, twomoon ("and several others") and meta-validates on centercirc,
smallcentercirc, pieslice, blob5x1, cross and triangle (and MNIST). Its task names do not map explicitly onto
func2d's functions (spec §7, §10.13); the mappings used here are presumptions: pieslice = ``angular_slice(-0.78,
0.78)``, centercirc / smallcentercirc = ``circ`` with centre 0 and radius 0.5 / 0.3 (the radii are our guess,
inside func2d's default radius range [0.2, 0.7]), blob5x1 = 5 blobs with 5 classes.

Every sampler is ``f(key, num) -> (x [num, 2] float32, y [num] int32)``, pure and jittable with ``num`` static,
like `vsml.tasks.datasets.sample_sum_sign`. Unless stated otherwise ``x ~ U[-1, 1)²`` as in func2d; the moons,
blobs and circles are not confined to [-1, 1]² (Gaussian noise; rotated moons; the ×5 outer circles).

Labels are integer classes (episodes one-hot them later). func2d's binary tasks return ±1 except cross and
triangle, which return {0, 1}; here every binary task gives {0, 1} with **class 1 = func2d's +1** (and class 0 =
its -1; the measure-zero ``sign(0) = 0`` of xor-like tasks also goes to class 0). Multi-class tasks give
0..K-1 as func2d's integer labels do.

Where func2d draws a task's parameters fresh on every call (the circ centre and radius, random_xor's P and b,
the blob centres), one *call* here is one episode: `sample_online_episodes` calls a stream once per episode
with its own key, so the parameters are drawn from that key once per call and shared by the episode's steps.

Not ported: ``sine`` is regression (real targets on x ∈ [0, 2π], not classes) and ``random_func`` returns pure
±1 noise (it computes an OR label and then discards it), so neither is a classification task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "TOY2D_TASKS",
    "FixedRandomXor",
    "angular_slice",
    "blob5x1",
    "blobs",
    "bool_and",
    "bool_or",
    "bool_qand",
    "centercirc",
    "circ",
    "concentric_circles",
    "cross",
    "nxor",
    "random_xor",
    "smallcentercirc",
    "square",
    "toy2d_stream",
    "triangle",
    "two_moon",
    "two_moon_rotated",
    "xor",
]

Array = jax.Array
Sampler = Callable[[Array, int], tuple[Array, Array]]

# func2d's two_moon_rotated default angle is the literal 3.1415 / 2, not pi / 2; kept for fidelity.
_MOON_ROTATION = 3.1415 / 2


def _uniform(key: Array, num: int) -> Array:
    """``num`` points uniform in [-1, 1)², func2d's ``np.random.random((bs, 2)) * 2 - 1``."""
    return jax.random.uniform(key, (num, 2), jnp.float32, -1.0, 1.0)


def _classes(positive: Array) -> Array:
    """A boolean "+1" mask as int32 classes {0, 1}."""
    return positive.astype(jnp.int32)


def _rotate(x: Array, theta: float) -> Array:
    """func2d's ``rotate``: ``x @ [[c, -s], [s, c]]`` (a clockwise rotation of row vectors by ``theta``)."""
    c, s = math.cos(theta), math.sin(theta)
    return x @ jnp.array([[c, -s], [s, c]], jnp.float32)


# ----- quadrant rules ---------------------------------------------------------------------------------------


def xor(key: Array, num: int) -> tuple[Array, Array]:
    """``sign(x0 x1)``: class 1 where both coordinates have the same sign."""
    x = _uniform(key, num)
    return x, _classes(x[:, 0] * x[:, 1] > 0)


def nxor(key: Array, num: int) -> tuple[Array, Array]:
    """``-sign(x0 x1)``: class 1 where the coordinates have opposite signs."""
    x = _uniform(key, num)
    return x, _classes(x[:, 0] * x[:, 1] < 0)


def bool_or(key: Array, num: int) -> tuple[Array, Array]:
    """Class 1 iff ``x0 > 0 or x1 > 0`` (the paper's "or")."""
    x = _uniform(key, num)
    return x, _classes((x[:, 0] > 0) | (x[:, 1] > 0))


def bool_and(key: Array, num: int) -> tuple[Array, Array]:
    """Class 1 iff ``x0 > 0 and x1 > 0`` (the paper's "and")."""
    x = _uniform(key, num)
    return x, _classes((x[:, 0] > 0) & (x[:, 1] > 0))


def bool_qand(key: Array, num: int) -> tuple[Array, Array]:
    """Class 1 iff ``x0 < 0 and x1 > 0`` (the upper-left quadrant)."""
    x = _uniform(key, num)
    return x, _classes((x[:, 0] < 0) & (x[:, 1] > 0))


# ----- circles ----------------------------------------------------------------------------------------------


def circ(
    key: Array, num: int, center: Sequence[float] | Array | None = None, radius: float | Array | None = None
) -> tuple[Array, Array]:
    """Class 1 iff ``‖x - c‖ < r``. By default ``c ~ U[-1, 1)²`` and ``r ~ U[0.2, 0.7)``, drawn from `key` once
    per call, i.e. one disk per episode (func2d draws them fresh per call too)."""
    key_x, key_c, key_r = jax.random.split(key, 3)
    if center is None:
        center = jax.random.uniform(key_c, (2,), jnp.float32, -1.0, 1.0)
    if radius is None:
        radius = jax.random.uniform(key_r, (), jnp.float32, 0.2, 0.7)
    x = _uniform(key_x, num)
    distance = jnp.linalg.norm(x - jnp.asarray(center, jnp.float32).reshape(1, 2), axis=1)
    return x, _classes(distance < radius)


def centercirc(key: Array, num: int) -> tuple[Array, Array]:
    """The paper's "centercirc", presumed to be ``circ`` with centre 0 and radius 0.5 (not stated anywhere)."""
    return circ(key, num, center=(0.0, 0.0), radius=0.5)


def smallcentercirc(key: Array, num: int) -> tuple[Array, Array]:
    """The paper's "smallcentercirc", presumed to be ``circ`` with centre 0 and radius 0.3 (not stated anywhere)."""
    return circ(key, num, center=(0.0, 0.0), radius=0.3)


# ----- moons ------------------------------------------------------------------------------------------------


def _moons(key: Array, num: int, noise: float) -> tuple[Array, Array]:
    """func2d's ``make_moons(3 num, noise)[:num]``: sklearn's two half circles on an evenly spaced grid of
    ``3 num`` points (outer ``(cos t, sin t)`` = label 0, inner ``(1 - cos t, 0.5 - sin t)`` = label 1,
    t in linspace(0, π)), shuffled, plus N(0, noise²) per coordinate. Truncating the shuffled grid is drawing
    ``num`` grid points without replacement, which is what this does (func2d oversamples so that the points are
    not evenly spaced)."""
    total = 3 * num
    n_out = total // 2
    n_in = total - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    grid = np.concatenate(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], -1),
            np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], -1),
        ]
    ).astype(np.float32)
    labels = np.concatenate([np.zeros(n_out, np.int32), np.ones(n_in, np.int32)])
    key_pick, key_noise = jax.random.split(key)
    pick = jax.random.permutation(key_pick, total)[:num]
    x = jnp.asarray(grid)[pick] + noise * jax.random.normal(key_noise, (num, 2), jnp.float32)
    return x, jnp.asarray(labels)[pick]


def two_moon(key: Array, num: int, noise: float = 0.1) -> tuple[Array, Array]:
    """Two interleaving half circles (sklearn's make_moons), affinely rescaled so that the noise-free moons span
    [-1, 1]² (x0 from [-1, 2], x1 from [-0.5, 1]); the noise can reach slightly outside. Class 1 = the inner
    (lower) moon, sklearn's label 1 and func2d's +1."""
    x, y = _moons(key, num, noise)
    scale = jnp.array([[2 / 3, 2 / 1.5]], jnp.float32)
    shift = jnp.array([[1.0, 0.5]], jnp.float32)
    return (x + shift) * scale - 1.0, y


def two_moon_rotated(
    key: Array, num: int, noise: float = 0.1, angle: float = _MOON_ROTATION
) -> tuple[Array, Array]:
    """The moons of `two_moon`, *not* rescaled, rotated by `angle` (func2d's literal 3.1415 / 2), so x lies
    in about [-0.5, 1] x [-2, 1]. Class 1 = the inner moon."""
    x, y = _moons(key, num, noise)
    return _rotate(x, angle), y


# ----- other uniform-input shapes ---------------------------------------------------------------------------


def square(
    key: Array,
    num: int,
    angle: float = 0.0,
    size: float = 0.2,
    centers: Sequence[Sequence[float]] = ((0.0, 0.0),),
) -> tuple[Array, Array]:
    """Class 1 iff x is within L∞ distance `size` of one of `centers` (a 0.4-wide square by default, 4 % of the
    points); x is rotated by `angle` *after* labelling, as in func2d."""
    x = _uniform(key, num)
    boxes = jnp.asarray(centers, jnp.float32)  # [C, 2]
    inside = jnp.max(jnp.abs(x[:, None, :] - boxes[None, :, :]), axis=-1) < size  # [num, C]
    return _rotate(x, angle), _classes(jnp.any(inside, axis=1))


def _random_xor_params(key: Array) -> tuple[Array, Array]:
    """func2d's random_xor parameters: ``P ~ U[-1, 1)^{2x2}``, ``b ~ U[-0.5, 0.5)²``."""
    key_p, key_b = jax.random.split(key)
    proj = jax.random.uniform(key_p, (2, 2), jnp.float32, -1.0, 1.0)
    bias = jax.random.uniform(key_b, (2,), jnp.float32, -0.5, 0.5)
    return proj, bias


def random_xor(
    key: Array, num: int, proj: Array | None = None, bias: Array | None = None
) -> tuple[Array, Array]:
    """xor of an affine map of x: class 1 iff ``z0 z1 > 0`` with ``z = x P + b``. P and b not given are drawn
    from `key` once per call (one random xor per episode, as func2d draws them per call)."""
    key_x, key_params = jax.random.split(key)
    drawn_proj, drawn_bias = _random_xor_params(key_params)
    proj = drawn_proj if proj is None else jnp.asarray(proj, jnp.float32)
    bias = drawn_bias if bias is None else jnp.asarray(bias, jnp.float32)
    x = _uniform(key_x, num)
    z = x @ proj + bias.reshape(1, 2)
    return x, _classes(z[:, 0] * z[:, 1] > 0)


@dataclass(frozen=True)
class FixedRandomXor:
    """func2d's ``fixed_random_xor``: one random xor whose P and b are frozen. func2d draws them once per process
    from numpy's unseeded RNG; here they come from ``seed`` (the run's seed via `load_dataset`), so a seed
    reproduces them. A frozen dataclass, so equal seeds give equal (hash-equal) streams: jit caches are shared.
    """

    seed: int = 0

    def params(self) -> tuple[Array, Array]:
        """The frozen ``(P [2, 2], b [2])``; computed from a constant key, so jit folds them into constants."""
        return _random_xor_params(jax.random.PRNGKey(self.seed))

    def __call__(self, key: Array, num: int) -> tuple[Array, Array]:
        proj, bias = self.params()
        return random_xor(key, num, proj, bias)


def angular_slice(
    key: Array, num: int, angle_begin: float = -0.78, angle_end: float = 0.78
) -> tuple[Array, Array]:
    """Class 1 iff ``angle_begin <= atan2(x1, x0) <= angle_end`` (the paper's "pieslice" by default: a slice of
    1.56 rad around the positive x0 axis, about a quarter of the points)."""
    x = _uniform(key, num)
    angle = jnp.arctan2(x[:, 1], x[:, 0])
    return x, _classes((angle_begin <= angle) & (angle <= angle_end))


def cross(key: Array, num: int, width: float = 0.3) -> tuple[Array, Array]:
    """Class 1 iff ``|x0| < width or |x1| < width`` (func2d's labels are already {0, 1} here)."""
    x = _uniform(key, num)
    return x, _classes((jnp.abs(x[:, 0]) < width) | (jnp.abs(x[:, 1]) < width))


def triangle(key: Array, num: int) -> tuple[Array, Array]:
    """Class 1 iff ``x0 + x1 < 1 and -x0 + x1 < 1 and x1 > -0.5`` (apex (0, 1); half of the square)."""
    x = _uniform(key, num)
    x0, x1 = x[:, 0], x[:, 1]
    return x, _classes((x0 + x1 < 1) & (-x0 + x1 < 1) & (x1 > -0.5))


# ----- multi-class ------------------------------------------------------------------------------------------


def blobs(
    key: Array, num: int, n_centers: int, center_box: tuple[float, float] = (-1.0, 1.0), std: float = 0.1
) -> tuple[Array, Array]:
    """sklearn's ``make_blobs(num, centers=n_centers, center_box, cluster_std=std)`` as func2d calls it: centres
    ``U[center_box)²`` drawn from `key` once per call (func2d's seed=None draws them per call), class i = blob i
    with ``num // n_centers`` points (the first ``num % n_centers`` blobs one more), N(0, std²) around its
    centre, in random order."""
    key_c, key_order, key_noise = jax.random.split(key, 3)
    centres = jax.random.uniform(key_c, (n_centers, 2), jnp.float32, center_box[0], center_box[1])
    y = jax.random.permutation(key_order, jnp.arange(num, dtype=jnp.int32) % n_centers)
    x = centres[y] + std * jax.random.normal(key_noise, (num, 2), jnp.float32)
    return x, y


def blob5x1(key: Array, num: int) -> tuple[Array, Array]:
    """The paper's "blob5x1", presumed to be 5 blobs with 5 classes (not stated anywhere)."""
    return blobs(key, num, n_centers=5)


def _circles(key: Array, num: int, noise: float, factor: float) -> tuple[Array, Array]:
    """sklearn's ``make_circles(num, noise, factor)``: ``num // 2`` points evenly spaced on the unit circle
    (label 0), the rest on the circle of radius `factor` (label 1), plus N(0, noise²). Unordered (the caller
    shuffles)."""
    n_out = num // 2
    n_in = num - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    grid = np.concatenate(
        [np.stack([np.cos(t_out), np.sin(t_out)], -1), factor * np.stack([np.cos(t_in), np.sin(t_in)], -1)]
    ).astype(np.float32)
    labels = np.concatenate([np.zeros(n_out, np.int32), np.ones(n_in, np.int32)])
    return jnp.asarray(grid) + noise * jax.random.normal(key, (num, 2), jnp.float32), jnp.asarray(labels)


def concentric_circles(key: Array, num: int, noise: float = 0.1, factor: float = 0.5) -> tuple[Array, Array]:
    """Four classes on four circles: func2d's two ``make_circles`` sets, the second (noise included) scaled ×5
    with labels +2, so classes 0..3 lie on radii 1, 0.5, 5 and 2.5 (x is far outside [-1, 1]²).

    Two deviations, both for a usable online stream: func2d concatenates the sets unshuffled (an online
    episode would see classes 0-1 first, then 2-3), here the ``num`` points are shuffled; and func2d returns
    ``2 (bs // 2)`` points, here the first set takes ``num - num // 2`` so that there are exactly ``num``.
    """
    key_a, key_b, key_order = jax.random.split(key, 3)
    x1, y1 = _circles(key_a, num - num // 2, noise, factor)
    x2, y2 = _circles(key_b, num // 2, noise, factor)
    x = jnp.concatenate([x1, 5.0 * x2])
    y = jnp.concatenate([y1, y2 + 2])
    order = jax.random.permutation(key_order, num)
    return x[order], y[order]


# ----- registry ---------------------------------------------------------------------------------------------

# Dataset name (the paper's where it has one) -> (sampler, number of classes). fixed_random_xor's entry uses
# seed 0; `toy2d_stream` gives the one of another seed.
TOY2D_TASKS: Mapping[str, tuple[Sampler, int]] = MappingProxyType(
    {
        "xor": (xor, 2),
        "nxor": (nxor, 2),
        "or": (bool_or, 2),
        "and": (bool_and, 2),
        "qand": (bool_qand, 2),
        "circ": (circ, 2),
        "centercirc": (centercirc, 2),
        "smallcentercirc": (smallcentercirc, 2),
        "twomoon": (two_moon, 2),
        "twomoon_rotated": (two_moon_rotated, 2),
        "square": (square, 2),
        "random_xor": (random_xor, 2),
        "fixed_random_xor": (FixedRandomXor(0), 2),
        "pieslice": (angular_slice, 2),
        "cross": (cross, 2),
        "triangle": (triangle, 2),
        "blob5x1": (blob5x1, 5),
        "concentric_circles": (concentric_circles, 4),
    }
)


def toy2d_stream(name: str, seed: int = 0) -> tuple[Sampler, int]:
    """``(sampler, num_classes)`` of task `name` of `TOY2D_TASKS`; `seed` freezes fixed_random_xor's P and b and
    is ignored by the other tasks (all their randomness comes from the sampling key)."""
    if name not in TOY2D_TASKS:
        raise ValueError(f"unknown 2-D task {name!r}; known: {', '.join(TOY2D_TASKS)}")
    if name == "fixed_random_xor":
        return FixedRandomXor(int(seed)), 2
    return TOY2D_TASKS[name]
