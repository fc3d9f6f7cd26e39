"""The shipped pretrained LAs load, describe themselves and still compute what they computed at export time;
`vsml export-pretrained` round-trips a run; bad names and damaged files are clear errors."""

from __future__ import annotations

import json
import re
import shutil

import jax
import numpy as np
import pytest

from vsml import list_pretrained, load_pretrained
from vsml.cli.main import main
from vsml.config import config_to_dict
from vsml.pretrained.load import PRETRAINED_DIR, PretrainedError, describe_pretrained, leaf_key
from vsml.run.checkpoint import save_checkpoint
from vsml.run.experiment import ExperimentConfig, TaskConfig, TrainConfig

SHIPPED = ("vsml_general", "vsml_mnist", "blur_mnist", "blur_mnist_random_init")


def test_the_issue_s_las_are_shipped():
    assert set(SHIPPED) <= set(list_pretrained())


def test_the_default_la_is_shipped_and_online():
    """`LearnedOnlineClassifier()` and the README's first example load DEFAULT_PRETRAINED: it must ship and
    learn from one example per step."""
    from vsml.pretrained.load import DEFAULT_PRETRAINED

    la = load_pretrained(DEFAULT_PRETRAINED)
    assert DEFAULT_PRETRAINED in SHIPPED and la.examples_per_step == 1


@pytest.mark.parametrize("name", list_pretrained())
def test_shipped_la_is_small_and_documented(name):
    la = load_pretrained(name)
    assert (PRETRAINED_DIR / f"{name}.npz").stat().st_size < 1 << 20
    meta = la.metadata
    assert meta["learner"]["name"] in ("vsml", "blur")
    assert meta["meta_parameters"]["count"] == sum(np.size(a) for a in jax.tree.leaves(la.meta))
    training = meta["meta_training"]
    assert training["commands"] and all(
        c["exit_status"] == 0 and c["wall_seconds"] > 0 for c in training["commands"]
    )
    assert (
        training["runs"][-1]["iterations"] >= 1
        and training["runs"][-1]["config"]["learner"] == meta["learner"]
    )
    assert len(meta["provenance"]["git_commit"]) == 40
    table = meta["meta_test"]["datasets"]
    assert {"mnist", "fashion_mnist"} <= set(table)
    roles = {row["role"] for row in table["mnist"]["learners"].values()}
    assert {"meta-trained", "baseline"} <= roles


@pytest.mark.parametrize("name", list_pretrained())
def test_shipped_la_reproduces_its_reference_evaluation(name):
    """Recompute the small digits evaluation stored at export time (raw scikit-learn digits, standardised)."""
    pytest.importorskip("sklearn")
    from vsml.pretrained.export import reference_evaluation

    la = load_pretrained(name)
    stored = la.metadata["reference_check"]
    again = reference_evaluation(la, stored["episodes"], stored["length"], stored["seed"])
    key = "query_accuracy" if la.query_steps else "mean_accuracy"
    # Same episodes and weights; the tolerance covers float differences between machines (a few flipped
    # predictions out of episodes × length), not a different learner.
    assert again[key] == pytest.approx(stored[key], abs=0.02)
    assert again[key] > 0.3  # chance is 0.1: the LA learns digits it never saw in meta-training


# The shipped LAs as they were before the redesign of issue 23: the files, and what loading makes of them.
SHIPPED_NPZ_SHA256 = {
    "blur_mnist": "ef0d85406f5d60011843aa7f1021e4bb7527116f0420df579d64cae249d83d84",
    "vsml_mnist": "455590f2ba356315045708c8f976a74ef4baf810c2466e392f4c985909712369",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_NPZ_SHA256))
def test_shipped_la_loads_unchanged(name):
    import hashlib

    npz_path = PRETRAINED_DIR / f"{name}.npz"
    assert hashlib.sha256(npz_path.read_bytes()).hexdigest() == SHIPPED_NPZ_SHA256[name]
    la = load_pretrained(name)
    with np.load(npz_path, allow_pickle=False) as stored:
        loaded = dict(zip(stored.files, [None] * len(stored.files), strict=True))
        for path, leaf in jax.tree_util.tree_flatten_with_path(la.meta)[0]:
            key = leaf_key(path)
            np.testing.assert_array_equal(np.asarray(leaf), stored[key])
            loaded[key] = leaf
    assert all(leaf is not None for leaf in loaded.values())  # every stored array became a leaf


def test_a_pickled_npz_is_an_error_naming_the_file(tmp_path):
    metadata = _copy_la(tmp_path)
    with np.load(tmp_path / "la.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    first = sorted(arrays)[0]
    arrays[first] = np.array([{"not": "numbers"}], dtype=object)  # np.savez pickles object arrays
    np.savez(tmp_path / "la.npz", **arrays)
    metadata["meta_parameters"]["npz_sha256"] = None  # as if re-exported: only the content is wrong
    (tmp_path / "la.json").write_text(json.dumps(metadata))
    with pytest.raises(PretrainedError, match=rf"{tmp_path / 'la.npz'}: array .* without pickle.*without pickles"):
        load_pretrained("la", tmp_path)
    import pickle

    (tmp_path / "la.npz").write_bytes(pickle.dumps(arrays))  # not even a zip: a plain pickle
    with pytest.raises(PretrainedError, match=rf"{tmp_path / 'la.npz'} is not a readable \.npz.*without pickles"):
        load_pretrained("la", tmp_path)


def test_export_needs_an_explicit_destination(tmp_path):
    from vsml.pretrained.export import export_destination, export_pretrained

    with pytest.raises(ValueError, match="needs a destination: --out DIR.*--into-package"):
        export_pretrained(tmp_path / "nowhere", "tiny")  # before the run is even read
    with pytest.raises(ValueError, match="not both"):
        export_pretrained(tmp_path / "nowhere", "tiny", out_dir=tmp_path, into_package=True)
    assert export_destination(tmp_path, False) == tmp_path
    assert export_destination(None, True) == PRETRAINED_DIR


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(PretrainedError, match="available: .*vsml_mnist"):
        load_pretrained("vsml_imagenet")
    with pytest.raises(PretrainedError, match="plain string"):
        load_pretrained("../vsml_mnist")


def test_damaged_files_are_errors(tmp_path):
    for suffix in (".npz", ".json"):
        shutil.copy(PRETRAINED_DIR / f"vsml_mnist{suffix}", tmp_path / f"la{suffix}")
    load_pretrained("la", tmp_path)  # a faithful copy loads
    metadata = json.loads((tmp_path / "la.json").read_text())
    metadata["meta_parameters"]["npz_sha256"] = "0" * 64
    (tmp_path / "la.json").write_text(json.dumps(metadata))
    with pytest.raises(PretrainedError, match="SHA-256"):
        load_pretrained("la", tmp_path)
    metadata["meta_parameters"]["npz_sha256"] = None
    # Learner settings that need other meta-parameters than the .npz holds:
    metadata["learner"]["separate_backward_rnn"] = True
    (tmp_path / "la.json").write_text(json.dumps(metadata))
    with pytest.raises(PretrainedError, match="do not belong together"):
        load_pretrained("la", tmp_path)
    metadata["learner"] = {"name": "vsml", "state_size": 8}
    (tmp_path / "la.json").write_text(json.dumps(metadata))
    with pytest.raises(PretrainedError, match=r"sets\[0\]\.lstm_W has shape \(32, 64\), the learner expects"):
        load_pretrained("la", tmp_path)


def test_list_pretrained_command(capsys):
    assert main(["list-pretrained"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == describe_pretrained()
    assert any(line.startswith("vsml_mnist: vsml, meta-trained on digits -> mnist") for line in lines)


def test_list_pretrained_of_another_folder(tmp_path, capsys):
    import shutil

    for suffix in (".npz", ".json"):
        shutil.copy(PRETRAINED_DIR / f"vsml_mnist{suffix}", tmp_path / f"mine{suffix}")
    assert main(["list-pretrained", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("mine: vsml, meta-trained on digits -> mnist")
    assert main(["list-pretrained", "--dir", str(tmp_path / "empty")]) == 2
    assert "is not a folder of pretrained LAs" in capsys.readouterr().err


def _fake_run(directory, config: ExperimentConfig, step: int, seed: int):
    from vsml.learners import build_learner

    meta = build_learner(config.learner).init_meta(jax.random.PRNGKey(seed))
    save_checkpoint(directory, step, {"meta": meta}, {"experiment": config_to_dict(config)})
    return meta


def _exportable_run(tmp_path):
    """A two-run warm-start chain (first -> second), the second meta-tested, and a commands file."""
    learner = {"name": "vsml", "feed_label": True}
    first = ExperimentConfig(learner=learner, task=TaskConfig(normalisation="per_feature"))
    _fake_run(tmp_path / "first", first, 4, seed=1)
    second = ExperimentConfig(
        learner=learner,
        task=TaskConfig(dataset="mnist", normalisation="per_feature"),
        train=TrainConfig(init_from=str(tmp_path / "first")),
    )
    meta = _fake_run(tmp_path / "second", second, 7, seed=2)
    (tmp_path / "second" / "metrics.jsonl").write_text(
        "".join(json.dumps({"iteration": i, "seconds": 1.5}) + "\n" for i in range(1, 8))
    )
    row = {"role": "meta-trained", "mean_accuracy": 0.5, "final_accuracy": 0.6, "block_accuracy": [0.5]}
    row["curve"] = [0.5] * 120
    learners = {"VSML, meta-trained V_M (7 ES it.)": row}
    dataset = {"num_classes": 10, "chance": 0.1, "learners": learners}
    evaluation = {
        "iteration": 7,
        "episodes": 2,
        "length": 120,
        "query_steps": 0,
        "datasets": {"mnist": dataset},
    }
    (tmp_path / "second" / "evaluation.json").write_text(json.dumps(evaluation))
    commands = tmp_path / "commands.jsonl"
    commands.write_text(
        json.dumps({"command": "vsml meta-train x", "wall_seconds": 3.0, "exit_status": 0}) + "\n"
    )
    return meta, commands


def test_export_round_trip(tmp_path, capsys):
    pytest.importorskip("sklearn")
    meta, commands = _exportable_run(tmp_path)

    out = tmp_path / "shipped"
    argv = ["export-pretrained", str(tmp_path / "second"), "--name", "tiny", "--out", str(out)]
    assert main([*argv, "--commands", str(commands), "--description", "a test"]) == 0
    assert "tiny.json" in capsys.readouterr().out

    la = load_pretrained("tiny", out)
    for got, want in zip(jax.tree.leaves(la.meta), jax.tree.leaves(meta), strict=True):
        np.testing.assert_array_equal(got, want)
    training = la.metadata["meta_training"]
    assert training["trained_on"] == "digits -> mnist"
    assert [r["iterations"] for r in training["runs"]] == [4, 7]
    assert training["runs"][1]["meta_step_seconds"] == 10.5 and training["started_from"] is None
    assert training["commands"][0]["wall_seconds"] == 3.0
    learners = la.metadata["meta_test"]["datasets"]["mnist"]["learners"]
    assert "curve" not in next(iter(learners.values()))  # kept small
    assert la.normalisation == "per_feature" and la.examples_per_step == 1
    assert 0.0 <= la.metadata["reference_check"]["mean_accuracy"] <= 1.0

    assert main(["export-pretrained", str(tmp_path / "first"), "--name", "x", "--out", str(out)]) == 2
    assert "vsml evaluate" in capsys.readouterr().err  # no evaluation.json: says how to make one


def _copy_la(directory, name="la"):
    """A faithful copy of vsml_mnist as `name` in `directory`; returns its metadata for editing."""
    for suffix in (".npz", ".json"):
        shutil.copy(PRETRAINED_DIR / f"vsml_mnist{suffix}", directory / f"{name}{suffix}")
    return json.loads((directory / f"{name}.json").read_text())


def _broken_meta_test(metadata):
    rows = metadata["meta_test"]["datasets"]["mnist"]["learners"]
    del next(row for row in rows.values() if row["role"] == "baseline")["mean_accuracy"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.pop("learner"), r'"learner" must be a mapping'),
        (lambda m: m.update(learner="vsml"), r'"learner" must be a mapping.*got \'vsml\''),
        (lambda m: m["learner"].pop("name"), r'"learner"\."name" must be a learner name'),
        (lambda m: m.update(meta_parameters=None), r'"meta_parameters" must be a mapping, got None'),
        (lambda m: m.update(input=None), r'"input" must be a mapping, got None'),
        (
            lambda m: m["input"].update(examples_per_step="1"),
            r'"input"\."examples_per_step" must be an integer',
        ),
        (lambda m: m.update(meta_test=[]), r'"meta_test" must be a mapping \(or null\)'),
        (
            _broken_meta_test,
            r'"meta_test"\."datasets"\."mnist"\."learners"\."[^"]+"\."mean_accuracy" must be a number, got None',
        ),
        (
            lambda m: m["learner"].update(state_size="big"),
            r'its "learner" settings do not build a learner: .*state_size',
        ),
    ],
)
def test_hand_edited_metadata_is_a_clear_error(tmp_path, edit, field):
    metadata = _copy_la(tmp_path)
    edit(metadata)
    (tmp_path / "la.json").write_text(json.dumps(metadata))
    with pytest.raises(PretrainedError, match=f"la.json: {field}"):
        load_pretrained("la", tmp_path)


def test_describe_reports_a_bad_pair_and_lists_the_others(tmp_path):
    _copy_la(tmp_path, "good")
    (tmp_path / "stray.json").write_text(json.dumps({"something": "else"}))
    np.savez(tmp_path / "stray.npz", x=np.zeros(2))
    broken = _copy_la(tmp_path, "broken")
    _broken_meta_test(broken)
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    lines = describe_pretrained(tmp_path)
    assert len(lines) == 3
    assert lines[0].startswith("broken: cannot be read: ") and "mean_accuracy" in lines[0]
    assert lines[1].startswith("good: vsml, meta-trained on digits -> mnist")
    assert lines[2].startswith("stray: cannot be read: ") and "not a vsml pretrained LA" in lines[2]


def test_non_finite_meta_parameters_are_an_error(tmp_path):
    from vsml.pretrained.load import as_pretrained

    metadata = _copy_la(tmp_path)
    with np.load(tmp_path / "la.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    key = sorted(arrays)[0]
    arrays[key] = np.full_like(arrays[key], np.nan)
    np.savez(tmp_path / "la.npz", **arrays)
    metadata["meta_parameters"]["npz_sha256"] = None  # past the checksum, to the values
    (tmp_path / "la.json").write_text(json.dumps(metadata))
    with pytest.raises(PretrainedError, match=rf"la.npz: {re.escape(key)} has \d+ NaN or infinite values"):
        load_pretrained("la", tmp_path)

    la = load_pretrained("vsml_mnist")
    infinite = jax.tree.map(lambda leaf: leaf + np.inf, la.meta)
    with pytest.raises(ValueError, match=r"meta-parameters of .* are not finite: sets\[0\]"):
        as_pretrained((la.learner, infinite))
    with pytest.raises(ValueError, match="not finite"):
        as_pretrained(la, infinite)


def test_export_refuses_to_overwrite_and_names_a_bad_commands_line(tmp_path):
    pytest.importorskip("sklearn")
    from vsml.pretrained.export import export_pretrained

    _, commands = _exportable_run(tmp_path)
    run = tmp_path / "second"
    shipped = (PRETRAINED_DIR / "vsml_mnist.json").read_bytes()
    with pytest.raises(FileExistsError, match="'vsml_mnist' already exists.*--force"):
        export_pretrained(run, "vsml_mnist", into_package=True)  # the package's folder: the shipped LAs
    assert (PRETRAINED_DIR / "vsml_mnist.json").read_bytes() == shipped

    bad = tmp_path / "bad.jsonl"
    bad.write_text(commands.read_text() + "not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        export_pretrained(run, "tiny", out_dir=tmp_path / "out", commands=bad)

    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "tiny.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"tiny\.json\): pick another --name"):
        export_pretrained(run, "tiny", out_dir=out)
    assert (out / "tiny.json").read_text() == "{}"
    export_pretrained(run, "tiny", out_dir=out, overwrite=True)
    assert load_pretrained("tiny", out).metadata["name"] == "tiny"
