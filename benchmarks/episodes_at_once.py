"""How many episodes to run together: the "auto" choice of `es.members_at_once` / `grad.episodes_at_once`
against every other count, in the same run.

For dense VSML layers of each `--inputs` size (A → 10, or A → H → 10 with `--hidden H`), times the meta-loss of N
episodes of T steps run k at a time (`learners.base.map_in_batches`) for every k of `--choices` ("all": one vmap):
forward only, as ES evaluates its members (budget `CPU_APPLICATIONS_AT_ONCE`; the learner of
fig6_mnist_rand_proj.yaml; here all episodes share one meta-parameter set, where ES gives each member its own, a
difference of 2.4k numbers), and differentiated with per-step remat, the gradient meta-optimiser's step (budget
`CPU_APPLICATIONS_AT_ONCE_BACKPROP`; with LayerNorm as fig6_mnist_rand_proj_grad.yaml). The results of every k are
checked against k = all first; calls are interleaved (best of R rounds each). Prints JSON: seconds per k, the
fastest k, what "auto" picks on this backend and auto's time over the fastest (1.0: auto chose the best; the
budgets were tuned on 2 CPU cores, and on a GPU auto is all at once).

    python benchmarks/episodes_at_once.py [--inputs 64,196,400,784] [--hidden 32] [--episodes 8] [--length 50]
        [--choices 1,2,4,all] [--modes forward,gradient] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import jax
from timing import at_once_label, best_times, machine_fields, random_episodes, tree_difference

from vsml.learners.base import (
    CPU_APPLICATIONS_AT_ONCE,
    CPU_APPLICATIONS_AT_ONCE_BACKPROP,
    TaskSpec,
    resolve_at_once,
)
from vsml.learners.vsml import VSML
from vsml.meta.problem import meta_batch_loss

TOLERANCE = 1e-4  # relative to the largest entry: batching only reorders float32 sums
# mode: (the budget "auto" uses, the learner of the Fig. 6 config that meta-trains that way)
MODES = {
    "forward": (CPU_APPLICATIONS_AT_ONCE, VSML()),
    "gradient": (CPU_APPLICATIONS_AT_ONCE_BACKPROP, VSML(layer_norm=True)),
}


def positive(text: str, what: str) -> int:
    """A positive integer from a comma-separated flag's entry, or an argparse error naming the flag."""
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{what}, got {text!r}")
    return int(text)


def parse_count(text: str) -> int | None:
    """A --choices entry: "all" or a positive count."""
    if text.strip() == "all":
        return None
    return positive(text, "--choices takes positive counts or 'all'")


def bench(inputs: int, mode: str, args: argparse.Namespace) -> dict:
    budget, model = MODES[mode]
    model = dataclasses.replace(model, hidden_sizes=tuple(args.hidden))
    N, T = args.episodes, args.length
    xs, ys, keys = random_episodes(N, T, inputs)
    meta = model.init_meta(jax.random.PRNGKey(0))
    network = "dense " + "->".join(map(str, (inputs, *model.hidden_sizes, 10)))
    network += ", LayerNorm" if model.layer_norm else ""
    auto = resolve_at_once(model, "auto", xs, ys, budget)
    choices = sorted({*args.choices, None, auto}, key=lambda k: N + 1 if k is None else k)
    choices = [k for k in choices if k is None or k < N]  # k ≥ N runs all N at once: the same as "all"

    def program(at_once: int | None):
        remat = mode == "gradient"  # as the gradient config; ES does not differentiate
        loss = lambda m: meta_batch_loss(model, "mean", remat, m, xs, ys, keys, at_once)
        return jax.jit(loss if mode == "forward" else jax.grad(loss))

    programs = {at_once_label(k): program(k) for k in choices}
    want = programs["all"](meta)
    for name, fn in programs.items():
        difference, scale = tree_difference(fn(meta), want)
        if not difference <= TOLERANCE * max(scale, 1e-30):
            raise SystemExit(f"{mode} {network} at {name} at once differs from all at once by {difference}")
    seconds = best_times({name: (lambda fn=fn: fn(meta)) for name, fn in programs.items()}, args.repeats)
    fastest = min(seconds, key=seconds.get)
    return {
        "network": network,
        "mode": mode,
        "episodes": N,
        "length": T,
        "repeats": args.repeats,
        "sub_rnn_applications_per_micro_tick": model.sub_rnn_applications(TaskSpec((inputs,), 10)),
        "seconds": seconds,
        "fastest": fastest,
        "auto": at_once_label(auto),
        "auto_over_fastest_time": seconds[at_once_label(auto)] / seconds[fastest],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="64,196,400,784", help="comma-separated input sizes A (A -> 10)")
    parser.add_argument(
        "--hidden",
        default=[],
        type=lambda text: [
            positive(h, "--hidden takes positive sizes") for h in text.split(",") if h.strip()
        ],
        help="comma-separated hidden layer sizes (default: none, A -> 10)",
    )
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument(
        "--choices",
        default="1,2,4,all",
        type=lambda text: [parse_count(c) for c in text.split(",") if c.strip()],
        help="episodes at once to try besides auto (counts of N or more are the same as 'all')",
    )
    parser.add_argument("--modes", default="forward,gradient", help=f"comma-separated, of {list(MODES)}")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    sizes = [int(a) for a in args.inputs.split(",")]
    results = [bench(a, mode, args) for mode in modes for a in sizes]
    print(
        json.dumps({"benchmark": "vsml_episodes_at_once", "results": results, **machine_fields()}, indent=1)
    )


if __name__ == "__main__":
    main()
