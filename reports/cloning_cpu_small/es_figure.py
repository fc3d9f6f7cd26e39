"""The figure of reports/cloning_cpu_small/: held-out accuracy during ES meta-training from the cloned V_M and from a random one."""
import tempfile
from vsml.experiment import load_experiment
from vsml.meta.trainer import MetaTrainer, read_metrics
from vsml.report import plot_meta_training
runs = {
    "cloned V_M, relative ES (seed 42)": "runs/es_from_clone_v3",
    "cloned V_M, relative ES (seed 43)": "runs/es_from_clone_v3_s43",
    "cloned V_M (κ = 2000), relative ES (seed 42)": "runs/es_from_clone_v2",
    "random V_M, plain ES (seed 42)": "runs/es_from_random",
    "random V_M, plain ES (seed 43)": "runs/es_from_random_s43",
    "cloned V_M (κ = 2000), plain ES (seed 42)": "runs/es_from_clone_v2_plain",
    "random V_M, relative ES (seed 42)": "runs/es_from_random_rel",
}
start = {}
for label, run in runs.items():  # the evaluation of the starting V_M, as the trainer logs it at eval.every
    with tempfile.TemporaryDirectory() as d:
        start[label] = MetaTrainer(load_experiment(f"{run}/config.yaml"), d).evaluate()["eval_accuracy_digits"]
    print(label, round(start[label], 3))
print(plot_meta_training({k: read_metrics(v) for k, v in runs.items()}, "eval_accuracy_digits",
    "reports/cloning_cpu_small/es_from_clone_vs_random.png",
    "ES meta-training on digits from the cloned backprop V_M and from a random V_M "
    "(held-out digits, 32 episodes x 100 online steps)", chance=0.1, start=start,
    ylabel="mean online accuracy, held-out digits"))
