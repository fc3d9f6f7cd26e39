"""`vsml reproduce meta_efficiency`: every variant's stages load, a run follows its curriculum and stops at its
escape, the study skips what results.json holds, and its README and plot are rendered from that file."""

from __future__ import annotations

import json
import math

import pytest

from vsml.cli.main import main
from vsml.report.meta_efficiency import default_summary, variant_table, write_study_report
from vsml.reproduce import meta_efficiency as me
from vsml.run.experiment import population_slices
from vsml.run.trainer import MetaTrainer

# A small task for the suite: 2 pairs, 3-step episodes, held-out evaluation of 2 episodes of 4 steps, and
# scikit-learn's 8x8 digits (projected and not) in place of MNIST, whose loading and standardisation would cost
# more than the runs themselves.
TINY = (
    "es.num_pairs=2",
    "task.episode_length=3",
    "population=[{dataset: digits, transform: {project: true}}, {dataset: digits}]",
    "transform.resize=null",
    "eval.datasets=[digits]",
)
NEVER = me.Escape(accuracy=1.1, every=2, episodes=2, length=4)  # accuracy cannot exceed 1: never escapes
AT_ONCE = me.Escape(accuracy=0.0, every=2, episodes=2, length=4)  # escapes at the first evaluation


@pytest.mark.parametrize("name", list(me.VARIANTS))
def test_every_variant_stage_is_a_valid_config(name):
    for stage in me.VARIANTS[name].stages:
        config = me.stage_config(0, stage)
        assert config.seed == 0 and config.learner["name"] == "vsml"
        assert len(population_slices(config)) >= 2  # half of the population (or more slices) as the task says
    assert me.VARIANTS[name].stages[-1].iterations is None  # the last stage runs to the escape or budget


def test_the_task_is_mnist_8x8_half_projected_from_a_random_v_m():
    config = me.stage_config(0, me.Stage())
    projected = [sl.transform.project for sl in population_slices(config)]
    assert projected == [True, False] and config.transform.resize == (8, 8) and not config.transform.project
    assert config.train.init_from is None and config.eval.datasets == ("mnist",)
    assert (config.es.num_pairs, config.es.sigma, config.es.learning_rate) == (64, 0.05, 0.025)
    assert config.es.fitness_shaping == "raw"


def test_a_curriculum_run_moves_through_its_stages_and_runs_stop_at_escape_or_budget(monkeypatch, tmp_path):
    variants = dict(me.VARIANTS)
    curriculum = me._curriculum("[{iterations: 2, transform: {classes: [0, 1]}}]")
    variants["three_stages"] = me.Variant(
        "2 classes for 2 iterations, then 10; after 4 iterations a higher ES learning rate",
        (me.Stage(curriculum, iterations=4), me.Stage(("es.learning_rate=0.05",))),
    )
    monkeypatch.setattr(me, "VARIANTS", variants)
    record = me.run_variant("three_stages", 0, overrides=TINY, escape=NEVER, max_iterations=6, progress=False)
    assert not record["escaped"] and record["iterations"] == 6
    stages = [(p["iteration"], p["stage"], p["curriculum_stage"]) for p in record["curve"]]
    assert stages == [(2, 0, 0), (4, 0, 1), (6, 1, 0)]
    assert all(0.0 <= p["accuracy"] <= 1.0 and math.isfinite(p["train_loss"]) for p in record["curve"])
    # The first curriculum stage trains 2-class episodes (a 64 -> 2 network: its chance loss is ln 2).
    assert record["curve"][0]["train_loss"] < 0.5 * (math.log(2) + math.log(10))
    assert record["held_out_accuracy"] == record["curve"][-1]["accuracy"]
    assert record["wall_seconds"] > 0 and record["cpu_seconds"] > 0
    # The curriculum inside the first study stage is the config's own: one trainer of that config (what
    # `vsml meta-train` runs) gives the same training losses.
    trainer = MetaTrainer(me.stage_config(0, me.Stage(curriculum), None, TINY), tmp_path)
    losses = [trainer.step().mean_loss for _ in range(4)]
    assert [losses[1], losses[3]] == [p["train_loss"] for p in record["curve"][:2]]
    # A run stops at its escape, and at its budget.
    escaped = me.run_variant("authors", 0, overrides=TINY, escape=AT_ONCE, max_iterations=20, progress=False)
    assert escaped["escaped"] and escaped["iterations"] == 2 and len(escaped["curve"]) == 1
    spent = me.run_variant("authors", 1, overrides=TINY, escape=AT_ONCE, budget_seconds=0.0, progress=False)
    assert not spent["escaped"] and spent["iterations"] == 0 and spent["held_out_accuracy"] is None


def fake_record(variant: str, seed: int, escaped: bool = True, wall: float = 120.0) -> dict:
    curve = [{"iteration": 10, "wall_seconds": wall / 2, "accuracy": 0.1, "stage": 0, "train_loss": 2.3}]
    curve.append({"iteration": 20, "wall_seconds": wall, "accuracy": 0.25 if escaped else 0.12, "stage": 0,
                  "train_loss": 2.2})  # fmt: skip
    return {"variant": variant, "seed": seed, "escaped": escaped, "iterations": 20, "wall_seconds": wall,
            "cpu_seconds": 2 * wall, "held_out_accuracy": curve[-1]["accuracy"], "budget_seconds": 900.0,
            "cores": 2, "curve": curve}  # fmt: skip


def test_the_study_skips_the_records_it_holds(tmp_path, monkeypatch):
    calls = []

    def fake_run(name, seed, **kwargs):
        calls.append((name, seed))
        return fake_record(name, seed)

    monkeypatch.setattr(me, "run_variant", fake_run)
    me.run_study(tmp_path, ("authors", "pairs_16"), (0, 1), progress=False)
    assert calls == [("authors", 0), ("authors", 1), ("pairs_16", 0), ("pairs_16", 1)]
    me.run_study(tmp_path, ("authors", "centered_rank"), (0, 1), progress=False)  # only the new variant runs
    assert calls[4:] == [("centered_rank", 0), ("centered_rank", 1)]
    data = json.loads((tmp_path / me.RESULTS_FILE).read_text())
    assert len(data["records"]) == 6 and data["escape_accuracy"] == me.ESCAPE.accuracy == 0.2
    assert {r["confirm"] for r in data["records"]} == {False} and {r["default"] for r in data["records"]} == {False}
    monkeypatch.setattr(me, "DEFAULT_VARIANT", "pairs_16")  # chosen later: its earlier records are marked too
    me.write_results(tmp_path / me.RESULTS_FILE, data["records"])
    data = json.loads((tmp_path / me.RESULTS_FILE).read_text())
    assert [(r["variant"], r["default"]) for r in data["records"] if r["seed"] == 0] == [
        ("authors", False), ("centered_rank", False), ("pairs_16", True)
    ]
    with pytest.raises(ValueError, match="unknown meta_efficiency variant 'nope'"):
        me.run_study(tmp_path, ("nope",), (0,))
    monkeypatch.setattr(me, "DEFAULT_VARIANT", None)
    with pytest.raises(ValueError, match="no default variant"):
        me.run_study(tmp_path, confirm=True)
    (tmp_path / me.RESULTS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not a meta_efficiency results file"):
        me.run_study(tmp_path, ("authors",), (0,))


def test_the_report_is_rendered_from_the_results(tmp_path):
    records = [fake_record("authors", s, escaped=False, wall=900.0) for s in (0, 1, 2)]
    records += [fake_record("centered_rank", 0, wall=60.0), fake_record("centered_rank", 1, wall=180.0)]
    records += [fake_record("centered_rank", 2, escaped=False, wall=900.0)]
    table = variant_table(records, {"authors": "the paper's"})
    authors, ranks = (line for line in table.splitlines()[2:])
    assert "0/3" in authors and "the paper's" in authors
    assert "2/3" in ranks and "2.00" in ranks and "3.00" in ranks  # median of 1 and 3 min; slowest 3 min
    results = {"task": "meta_efficiency", "escape_accuracy": 0.2, "default_variant": None, "records": records,
               "eval": {"every": 10, "episodes": 64, "length": 100}}  # fmt: skip
    readme, plot = write_study_report(results, tmp_path, {}, "vsml reproduce meta_efficiency")
    assert plot.read_bytes().startswith(b"\x89PNG")
    text = readme.read_text()
    assert "`vsml reproduce meta_efficiency`" in text and table.splitlines()[0] in text
    assert "No default chosen yet." in text
    records += [fake_record("centered_rank", 3, wall=300.0), fake_record("centered_rank", 4, wall=700.0)]
    records[-2]["confirm"] = records[-1]["confirm"] = True
    summary = default_summary(records, "centered_rank", 10.0)
    assert "seeds it was chosen on: 2/3 escaped within the target" in summary
    confirmed = "fresh confirmation seeds: 1/2 escaped within the target (seed 3: 5.00 min (20 it.), seed 4: 11.67"
    assert confirmed in summary


def test_cli_plans_and_refuses_bad_options(capsys):
    from vsml.cli.reproduce import DEFAULT_BUDGET_MINUTES

    assert DEFAULT_BUDGET_MINUTES * 60 == me.BUDGET_SECONDS
    assert (
        main(["reproduce", "meta_efficiency", "--dry-run", "--variants", "authors,mixture", "--seeds", "0,4"])
        == 0
    )
    assert capsys.readouterr().out.split("\n")[:4] == ["authors seed 0", "authors seed 4", "mixture seed 0",
                                                       "mixture seed 4"]  # fmt: skip
    assert main(["reproduce", "meta_efficiency", "--seeds", "zero"]) == 2
    assert "--seeds takes comma-separated integers" in capsys.readouterr().err
    assert main(["reproduce", "--list"]) == 0
    assert "meta_efficiency" in capsys.readouterr().out
