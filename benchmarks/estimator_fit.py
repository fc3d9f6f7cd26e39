"""How long `LearnedOnlineClassifier.fit` takes on a user's arrays, against scikit-learn's online SGD in the same run.

The README's first example: a `fit` of N examples (default 1,000 of scikit-learn's 8×8 digits, 64 features, 10
classes) by a shipped learned LA, one online pass. The first fit compiles the learner's scan for this shape;
the timed fits reuse it (a fresh estimator each time, as a user refitting would). The reference is
`sklearn.linear_model.SGDClassifier` fed the same examples one `partial_fit` call each (one online pass, what a
user has for streaming data), and the same classifier's one-epoch batch `fit`. Best of R interleaved calls each;
prints JSON with the seconds, examples/s and the ratios. Absolute figures depend on the machine and its load;
the ratios are measured in one run.

    python benchmarks/estimator_fit.py [--pretrained vsml_general] [--examples 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from timing import best_times, machine_fields

from vsml.pretrained.load import DEFAULT_PRETRAINED
from vsml.sklearn import LearnedOnlineClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", default=DEFAULT_PRETRAINED, help=f"a shipped LA (default {DEFAULT_PRETRAINED})")
    parser.add_argument("--examples", type=int, default=1000, help="examples per fit (< 1797; the rest is held out)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    if not 2 <= args.examples < len(x):
        parser.error(f"--examples must be in [2, {len(x) - 1}] (the rest is held out), got {args.examples}")
    x_fit, y_fit = x[: args.examples], y[: args.examples]
    classes = np.unique(y)

    start = time.perf_counter()
    first = LearnedOnlineClassifier(args.pretrained).fit(x_fit, y_fit)
    jax.block_until_ready(first.state_)
    first_fit_seconds = time.perf_counter() - start

    def la_fit() -> object:
        return LearnedOnlineClassifier(args.pretrained).fit(x_fit, y_fit).state_

    def sgd_online() -> None:
        sgd = SGDClassifier(random_state=0)
        for i in range(len(x_fit)):
            sgd.partial_fit(x_fit[i : i + 1], y_fit[i : i + 1], classes=classes)

    def sgd_one_epoch() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch is what is asked for
            SGDClassifier(max_iter=1, tol=None, random_state=0).fit(x_fit, y_fit)

    # Interleaved, each call waited for (la_fit returns the state JAX may still be computing); the LA is
    # compiled by the first fit above, so no warm-up call.
    fns = {"la": la_fit, "sgd_online": sgd_online, "sgd_one_epoch": sgd_one_epoch}
    seconds = best_times(fns, args.repeats, warm_up=False)
    report = {
        "benchmark": "estimator_fit",
        **machine_fields(),
        "pretrained": args.pretrained,
        "examples": args.examples,
        "features": int(x.shape[1]),
        "classes": int(len(classes)),
        "repeats": args.repeats,
        "first_fit_seconds": first_fit_seconds,  # compilation included
        "fit_seconds": seconds["la"],
        "fit_examples_per_s": args.examples / seconds["la"],
        "sgd_online_seconds": seconds["sgd_online"],
        "sgd_one_epoch_seconds": seconds["sgd_one_epoch"],
        "fit_over_sgd_online_time": seconds["la"] / seconds["sgd_online"],
        "fit_over_sgd_one_epoch_time": seconds["la"] / seconds["sgd_one_epoch"],
        # The fit did learn (this times real work): accuracy on the digits after the first N, never seen.
        "held_out_examples": len(x) - args.examples,
        "held_out_accuracy": float(first.score(x[args.examples :], y[args.examples :])),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
