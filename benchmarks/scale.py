"""A VSML learning algorithm training a network of more than 100k synapses online, and how fast.

The LA is the hand-constructed backprop V_M of learning-algorithm cloning (`vsml.meta.cloning`, no cloning
steps needed: it implements online backprop up to O(ε²)), run free on 784 → 128 → 10 with the backward pass:
101,632 synapses, each a 16-unit LSTM, 4 sub-RNN applications per synapse per example (2 micro ticks, forward
and reverse tick). One online pass over `--steps` MNIST training examples (predict, then learn from the label),
then the test set. The same online backprop written directly in JAX (the clone's teacher) runs alongside from
the same initial weights, for the accuracy and as the speed baseline. Prints JSON: examples/s of each, their
ratio, synapse-micro-ticks/s, online and test accuracy. Compilation is excluded (each is compiled first).

    python benchmarks/scale.py [--steps 10000] [--hidden 128] [--dataset mnist] [--data-dir DIR]
        [--dense-kernel xla|pallas]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from timing import machine_fields

from vsml.evaluation.clone import (
    clone_online,
    clone_test_logits,
    encode_network,
    init_network,
    teacher_online,
    teacher_test_logits,
)
from vsml.learners.base import TaskSpec
from vsml.learners.vsml.codec import clone_learner, constructed_backprop
from vsml.meta.cloning import CloneTeacher
from vsml.tasks.datasets import load_dataset


def timed(compiled, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="online training examples (one pass)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[128], help="hidden layer sizes")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--test-examples", type=int, default=10_000)
    parser.add_argument(
        "--dense-kernel",
        choices=["xla", "pallas"],
        default="xla",
        help="VSML.dense_kernel (pallas: the fused GPU kernel; interpreted, slowly, off a GPU)",
    )
    parser.add_argument("--learning-rate", type=float, default=CloneTeacher().learning_rate)
    args = parser.parse_args()

    data = load_dataset(args.dataset, args.data_dir)
    train_x, train_y = data.split("train")
    test_x, test_y = data.split("test")
    steps = min(args.steps, len(train_x))
    order = np.random.default_rng(0).permutation(len(train_x))[:steps]
    xs = jnp.asarray(train_x[order].reshape(steps, -1))
    labels = train_y[order]
    ys = jax.nn.one_hot(labels, data.num_classes)
    n_test = min(args.test_examples, len(test_x))
    test_xs, test_labels = jnp.asarray(test_x[:n_test].reshape(n_test, -1)), test_y[:n_test]

    hidden = tuple(args.hidden)
    sizes = (xs.shape[1], *hidden, data.num_classes)
    vsml = dataclasses.replace(clone_learner(hidden_sizes=hidden), dense_kernel=args.dense_kernel)
    teacher = CloneTeacher(learning_rate=args.learning_rate)
    params = constructed_backprop(vsml, teacher)
    weights, biases = init_network(jax.random.PRNGKey(0), sizes, 1.0)
    state = encode_network(vsml, params.codec, weights, biases)
    synapses = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    ticks_per_example = vsml.sub_rnn_applications_per_step(TaskSpec((xs.shape[1],), data.num_classes))

    clone = clone_online.lower(vsml, params.meta, state, xs, ys).compile()
    baseline = teacher_online.lower(weights, biases, xs, ys, args.learning_rate).compile()
    vsml_seconds, (clone_logits, clone_state) = timed(clone, params.meta, state, xs, ys)
    sgd_seconds, (teacher_logits, teacher_w, teacher_b) = timed(baseline, weights, biases, xs, ys)

    def accuracy(logits, truth) -> float:
        return float(np.mean(np.argmax(np.asarray(logits), -1) == truth))

    result = {
        "benchmark": "vsml_scale",
        "network": "-".join(map(str, sizes)) + ", backward pass",
        "synapses": synapses,
        "dense_kernel": args.dense_kernel,
        "dataset": args.dataset,
        "online_examples": steps,
        "vsml_seconds": vsml_seconds,
        "vsml_examples_per_s": steps / vsml_seconds,
        "vsml_synapse_micro_ticks_per_s": steps * ticks_per_example / vsml_seconds,
        "backprop_seconds": sgd_seconds,
        "backprop_examples_per_s": steps / sgd_seconds,
        "vsml_over_backprop_time": vsml_seconds / sgd_seconds,
        "vsml_online_accuracy": accuracy(clone_logits, labels),
        "backprop_online_accuracy": accuracy(teacher_logits, labels),
        "vsml_test_accuracy": accuracy(
            clone_test_logits(vsml, params.meta, clone_state, test_xs), test_labels
        ),
        "backprop_test_accuracy": accuracy(teacher_test_logits(teacher_w, teacher_b, test_xs), test_labels),
        "test_examples": n_test,
        **machine_fields(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
