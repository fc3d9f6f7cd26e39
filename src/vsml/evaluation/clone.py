"""The cloned learning algorithm run free: VSML trains a network online with no teacher in the loop.

For a dataset and an architecture (784 → 10 "shallow", 784 → h → 10 "deep"), both contenders start from the
same initial weights and see the same stream of training examples, one at a time, once each:

- the **teacher**: online backprop of the mean-aggregated tanh-input network (`cloning` module docstring),
  written literally here (`teacher_network_step`), at learning rate α;
- the **clone**: the VSML RNN with the cloned V_M, its state written from those weights by the clone's codec,
  stepping forward only (`VSML.step`; the backward pass is its own reverse tick, not `jax.grad`).

Each reports its online accuracy (prediction before the label, last `tail` steps) and the accuracy on held-out
test examples of the network it ends with (the clone: `VSML.predict`, a forward tick whose state is discarded).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml.learners.base import Array, TaskSpec
from vsml.learners.vsml import VSML, VSMLMeta, VSMLState
from vsml.learners.vsml.codec import (
    CloneCodec,
    CloneParams,
    VSMLCloneStudent,
    check_clone_learner,
    clone_learner,
)
from vsml.meta.cloning import CloneConfig, init_clone_params
from vsml.run.checkpoint import load_checkpoint
from vsml.tasks.datasets import load_dataset

Weights = list[Array]  # per layer [A, B]
Biases = list[Array]  # per layer [B]


def init_network(key: Array, sizes: tuple[int, ...], weight_std: float) -> tuple[Weights, Biases]:
    """N(0, weight_std²) weights and zero biases. With the mean over inputs, weight_std 1 is the scale at
    which a 784 → 100 → 10 net leaves its saddle within the first thousand steps."""
    keys = jax.random.split(key, len(sizes) - 1)
    weights = [
        weight_std * jax.random.normal(k, (a, b)) for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    return weights, [jnp.zeros((b,)) for b in sizes[1:]]


def teacher_forward(weights: Weights, biases: Biases, x: Array) -> list[Array]:
    """Pre-activations of every layer, input first: z_b = mean_a tanh(z_a) w_ab + b_b."""
    activations = [x]
    for w, b in zip(weights, biases, strict=True):
        activations.append(jnp.mean(jnp.tanh(activations[-1])[:, None] * w, axis=0) + b)
    return activations


def teacher_network_step(
    weights: Weights, biases: Biases, x: Array, y: Array, learning_rate: float
) -> tuple[Array, Weights, Biases]:
    """One online step of the teacher: predict x, then backprop its error (δ through the old weights)."""
    activations = teacher_forward(weights, biases, x)
    logits = activations[-1]
    delta = jax.nn.softmax(logits) - y
    new_weights, new_biases = list(weights), list(biases)
    for k in reversed(range(len(weights))):
        t = jnp.tanh(activations[k])
        new_weights[k] = weights[k] - learning_rate * t[:, None] * delta[None, :]
        new_biases[k] = biases[k] - learning_rate * delta
        delta = jnp.mean((1.0 - t * t)[:, None] * weights[k] * delta[None, :], axis=1)
    return logits, new_weights, new_biases


@partial(jax.jit, static_argnames=("learning_rate",))
def teacher_online(
    weights: Weights, biases: Biases, xs: Array, ys: Array, learning_rate: float
) -> tuple[Array, Weights, Biases]:
    """The teacher over a stream xs [T, D], ys [T, C]: logits [T, C] and the final weights."""

    def step(carry: tuple, xy: tuple[Array, Array]) -> tuple[tuple, Array]:
        logits, w, b = teacher_network_step(*carry, *xy, learning_rate)
        return (w, b), logits

    (weights, biases), logits = jax.lax.scan(step, (weights, biases), (xs, ys))
    return logits, weights, biases


def encode_network(vsml: VSML, codec: CloneCodec, weights: Weights, biases: Biases) -> VSMLState:
    """The VSML state holding these weights: every synapse's cell state is [w_ab, b_b] @ encoder (each input's
    share of a bias is the bias itself: the forward message is a mean over inputs), h = 0, no messages."""
    check_clone_learner(vsml)
    M = vsml.msg_size
    cs = [
        jnp.stack([w, jnp.broadcast_to(b[None, :], w.shape)], axis=-1) @ codec.encoder
        for w, b in zip(weights, biases, strict=True)
    ]
    return VSMLState(
        h=tuple(jnp.zeros_like(c) for c in cs),
        c=tuple(cs),
        fwd_in=tuple(jnp.zeros((w.shape[0], M)) for w in weights[1:]),
        bwd_in=tuple(jnp.zeros((w.shape[1], M)) for w in weights[:-1]),
        feedback=jnp.zeros((weights[-1].shape[1], 2)),
    )


def read_network(codec: CloneCodec, state: VSMLState) -> tuple[Weights, Biases]:
    """The weights a VSML state holds, by the codec's read-out (biases: the mean share over inputs)."""
    read = [c @ codec.readout for c in state.c]  # per layer [A, B, 2]
    return [r[..., 0] for r in read], [jnp.mean(r[..., 1], axis=0) for r in read]


@partial(jax.jit, static_argnames=("vsml",))
def clone_online(
    vsml: VSML, meta: VSMLMeta, state: VSMLState, xs: Array, ys: Array
) -> tuple[Array, VSMLState]:
    """The clone over a stream: logits [T, C] (each before its label) and the final state."""

    def step(state: VSMLState, xy: tuple[Array, Array]) -> tuple[VSMLState, Array]:
        logits, state = vsml.step(meta, state, *xy)
        return state, logits

    state, logits = jax.lax.scan(step, state, (xs, ys))
    return logits, state


@partial(jax.jit, static_argnames=("vsml",))
def clone_test_logits(vsml: VSML, meta: VSMLMeta, state: VSMLState, xs: Array) -> Array:
    # in chunks: a vmap over all test examples would hold [N, A, B, 4H] gate pre-activations at once
    return jax.lax.map(lambda x: vsml.predict(meta, state, x), xs, batch_size=64)


@jax.jit
def teacher_test_logits(weights: Weights, biases: Biases, xs: Array) -> Array:
    return jax.vmap(lambda x: teacher_forward(weights, biases, x)[-1])(xs)


def _accuracy(logits: Array, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == labels))


def evaluate_clone(
    params: CloneParams,
    dataset: str,
    hidden_sizes: tuple[int, ...],
    *,
    steps: int,
    learning_rate: float,
    num_micro_ticks: int = 2,
    weight_std: float = 1.0,
    test_examples: int = 10_000,
    tail: int = 1000,
    seed: int = 0,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Teacher and clone on one dataset and architecture (module docstring); a JSON-ready dict."""
    data = load_dataset(dataset, data_dir)
    train_x, train_y = data.split("train")
    test_x, test_y = data.split("test")
    if steps > len(train_x):
        raise ValueError(
            f"steps={steps} exceeds the {len(train_x)} training examples of {dataset} (one pass)"
        )
    order = np.random.default_rng(seed).permutation(len(train_x))[:steps]
    xs = jnp.asarray(train_x[order].reshape(steps, -1))
    labels = train_y[order]
    ys = jax.nn.one_hot(labels, data.num_classes)
    test_xs = jnp.asarray(test_x[:test_examples].reshape(min(test_examples, len(test_x)), -1))
    test_labels = test_y[:test_examples]

    sizes = (xs.shape[1], *hidden_sizes, data.num_classes)
    weights, biases = init_network(jax.random.PRNGKey(seed), sizes, weight_std)
    vsml = clone_learner(num_micro_ticks, hidden_sizes)
    vsml.layer_plans(TaskSpec((xs.shape[1],), data.num_classes))  # validates the shapes

    teacher_logits, teacher_w, teacher_b = teacher_online(weights, biases, xs, ys, learning_rate)
    clone_logits, clone_state = clone_online(
        vsml, params.meta, encode_network(vsml, params.codec, weights, biases), xs, ys
    )
    clone_w, _ = read_network(params.codec, clone_state)
    teacher_correct = np.argmax(np.asarray(teacher_logits), -1) == labels
    clone_correct = np.argmax(np.asarray(clone_logits), -1) == labels
    clone_test = clone_test_logits(vsml, params.meta, clone_state, test_xs)
    teacher_test = teacher_test_logits(teacher_w, teacher_b, test_xs)
    drift = [
        float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(clone_w, teacher_w, strict=True)
    ]
    tail = min(tail, steps)  # the last `tail` steps, or all of a shorter run (as the slices below take)
    return {
        "dataset": dataset,
        "architecture": "-".join(str(s) for s in sizes),
        "steps": steps,
        "learning_rate": learning_rate,
        "weight_std": weight_std,
        "test_examples": int(len(test_labels)),
        "clone": {
            "online_accuracy_tail": float(clone_correct[-tail:].mean()),
            "online_accuracy": float(clone_correct.mean()),
            "test_accuracy": _accuracy(clone_test, test_labels),
        },
        "teacher": {
            "online_accuracy_tail": float(teacher_correct[-tail:].mean()),
            "online_accuracy": float(teacher_correct.mean()),
            "test_accuracy": _accuracy(teacher_test, test_labels),
        },
        "same_online_prediction": float(
            np.mean(np.argmax(np.asarray(clone_logits), -1) == np.argmax(np.asarray(teacher_logits), -1))
        ),
        "final_weight_deviation": drift,  # per layer max |w_clone − w_teacher| / max |w_teacher|
        "online_correct": {"clone": clone_correct.tolist(), "teacher": teacher_correct.tolist()},
        "tail": tail,
    }


# ----- a cloning run's checkpoint (written by `vsml.report.clone.run_clone`) -------------------------------------

CHECKPOINT_TREES = ("meta", "codec")


def load_clone(run_dir: str | Path, config: CloneConfig) -> CloneParams:
    """The cloned V_M and codec of a run directory (its newest checkpoint)."""
    template = init_clone_params(
        VSMLCloneStudent(clone_learner(config.num_micro_ticks)),
        "constructed",
        jax.random.PRNGKey(0),
        config.teacher,
    )
    _, trees, _ = load_checkpoint(run_dir, {"meta": template.meta, "codec": template.codec})
    return CloneParams(trees["meta"], trees["codec"])
