"""Tests of the atomic .npz + JSON checkpoints (DESIGN.md "Files")."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml.run import checkpoint as ckpt
from vsml.run.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    committed_steps,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


class Cell(NamedTuple):
    h: jax.Array  # [A, B]
    c: jax.Array  # [A, B]


class Meta(NamedTuple):
    cell: Cell
    out: dict[str, jax.Array]
    scale: jax.Array  # []


def make_trees(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    meta = Meta(
        cell=Cell(h=jnp.asarray(rng.normal(size=(3, 2))), c=jnp.asarray(rng.normal(size=(3, 2)))),
        out={"w": jnp.asarray(rng.normal(size=(4,))), "n": jnp.arange(5, dtype=jnp.int32) + seed},
        scale=jnp.asarray(float(seed), jnp.float32),
    )
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(meta)
    grads = jax.tree.map(lambda a: jnp.ones_like(a) if jnp.issubdtype(a.dtype, jnp.floating) else a, meta)
    _, opt_state = optimizer.update(grads, opt_state, meta)
    misc = {
        "bf16": jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16),
        "np64": rng.normal(size=(3,)),
        "count": seed,
        "flag": np.bool_(seed % 2),
    }
    return {
        "meta": meta,
        "opt_state": opt_state,
        "key": jax.random.key(seed),
        "raw_key": jax.random.PRNGKey(seed),
        "misc": misc,
    }


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert type(x) is type(y)
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(jax.random.key_data(x), jax.random.key_data(y))
        else:
            assert np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_restores_structure_values_and_dtypes(tmp_path: Path):
    trees = make_trees(3)
    metadata = {"loss": np.float32(1.5), "history": jnp.arange(3), "name": "run", "nested": {"a": [1, 2]}}
    path = save_checkpoint(tmp_path, 7, trees, metadata)
    assert path == tmp_path / "ckpt_00000007.json"

    step, restored, meta_out = load_checkpoint(tmp_path, make_trees(0))
    assert step == 7
    assert_trees_equal(restored, trees)
    assert isinstance(restored["meta"], Meta) and isinstance(restored["meta"].cell, Cell)
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    assert meta_out == {"loss": 1.5, "history": [0, 1, 2], "name": "run", "nested": {"a": [1, 2]}}
    # The restored key works as a key and continues the same stream.
    np.testing.assert_array_equal(
        jax.random.normal(restored["key"], (3,)), jax.random.normal(trees["key"], (3,))
    )

    # The arrays are plain numeric npz entries that load without pickle.
    with np.load(tmp_path / "ckpt_00000007.npz", allow_pickle=False) as npz:
        assert {"meta/0", "opt_state/3", "key/0", "raw_key/0"} <= set(npz.files)
        assert npz["key/0"].dtype == np.uint32
        assert all(npz[k].dtype.kind in "biuf" for k in npz.files)


def test_load_from_npz_or_json_path(tmp_path: Path):
    trees = make_trees(2)
    save_checkpoint(tmp_path, 4, trees, {})
    npz_path, json_path = checkpoint_paths(tmp_path, 4)
    for path in (npz_path, json_path, str(json_path), tmp_path / "latest.json"):
        step, restored, _ = load_checkpoint(path, make_trees(0))
        assert step == 4
        assert_trees_equal(restored, trees)


def test_partial_restore_needs_to_be_asked_for(tmp_path: Path):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 1, trees, {})
    with pytest.raises(CheckpointError, match=r"'key', 'misc', 'opt_state', 'raw_key'.*partial=True"):
        load_checkpoint(tmp_path, {"meta": trees["meta"]})
    _, restored, _ = load_checkpoint(tmp_path, {"meta": make_trees(0)["meta"]}, partial=True)
    assert set(restored) == {"meta"}
    assert_trees_equal(restored["meta"], trees["meta"])


def test_latest_is_the_newest_committed_step(tmp_path: Path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "does-not-exist") is None
    trees = make_trees(1)
    for step in (1, 12, 5):
        save_checkpoint(tmp_path, step, trees, {"step_seen": step})
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000012.json"
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest == {"step": 12, "checkpoint": "ckpt_00000012.json"}
    assert load_checkpoint(tmp_path, trees)[0] == 12


def test_uncommitted_npz_and_temp_files_are_ignored(tmp_path: Path):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 5, trees, {})
    # A crash after the .npz but before its JSON: the .npz of step 9 is an orphan.
    save_checkpoint(tmp_path, 9, trees, {})
    (tmp_path / "ckpt_00000009.json").unlink()
    # A crash mid-write of step 10's JSON leaves only a temporary file.
    (tmp_path / ".ckpt_00000010.json.x1y2.tmp").write_text('{"step": 10')
    assert committed_steps(tmp_path) == [5]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000005.json"
    assert load_checkpoint(tmp_path, trees)[0] == 5
    with pytest.raises(CheckpointError, match=r"ckpt_00000009\.npz.*never committed"):
        load_checkpoint(tmp_path / "ckpt_00000009.npz", trees)


@pytest.mark.parametrize("failing", ["npz", "json"])
def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 1, trees, {})
    before = sorted(p.name for p in tmp_path.iterdir())

    def crash(*args, **kwargs):
        raise OSError("disk full")

    if failing == "npz":
        monkeypatch.setattr(ckpt.np, "savez", crash)
    else:
        monkeypatch.setattr(ckpt.json, "dumps", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, trees, {})
    monkeypatch.undo()
    after = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in after if name.endswith(".tmp")]  # temp files are cleaned up
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000001.json"
    assert set(after) - set(before) <= {"ckpt_00000002.npz"}  # at worst an ignored orphan


def test_bad_metadata_fails_before_writing(tmp_path: Path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path, 1, make_trees(1), {"fn": object()})
    assert list(tmp_path.iterdir()) == []


def test_non_numeric_leaf_is_rejected(tmp_path: Path):
    with pytest.raises(TypeError, match=r"misc\['name'\].*metadata"):
        save_checkpoint(tmp_path, 1, {"misc": {"name": np.asarray("abc")}}, {})


def test_corrupt_npz_is_a_clear_error(tmp_path: Path):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 3, trees, {})
    npz_path, json_path = checkpoint_paths(tmp_path, 3)
    data = bytearray(npz_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*ckpt_00000003\.npz"):
        load_checkpoint(tmp_path, trees)

    # Without the recorded checksum the zip reader itself notices truncation.
    manifest = json.loads(json_path.read_text())
    del manifest["npz_sha256"]
    json_path.write_text(json.dumps(manifest))
    npz_path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*ckpt_00000003\.npz"):
        load_checkpoint(tmp_path, trees)


def test_corrupt_manifest_and_missing_files(tmp_path: Path):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 3, trees, {})
    npz_path, json_path = checkpoint_paths(tmp_path, 3)
    json_path.write_text('{"format": "vsml-checkpoint", "vers')
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint manifest .*ckpt_00000003\.json"):
        load_checkpoint(json_path, trees)
    with pytest.raises(FileNotFoundError, match="ckpt_00000099.json"):
        load_checkpoint(tmp_path / "ckpt_00000099.json", trees)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no committed checkpoint"):
        load_checkpoint(tmp_path / "empty", trees)
    save_checkpoint(tmp_path, 4, trees, {})
    checkpoint_paths(tmp_path, 4)[0].unlink()
    with pytest.raises(CheckpointError, match=r"ckpt_00000004\.npz are missing"):
        load_checkpoint(checkpoint_paths(tmp_path, 4)[1], trees)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t["meta"]._replace(scale=jnp.zeros((2,))), r"meta\.scale.*shape \[\] .*\[2\]"),
        (
            lambda t: t["meta"]._replace(out={**t["meta"].out, "n": jnp.zeros(5)}),
            r"meta\.out\['n'\].*dtype 'int32' .*'float32'",
        ),
        (
            lambda t: t["meta"]._replace(out={"w": t["meta"].out["w"]}),
            r"'meta' .* 5 leaves but the template has 4",
        ),
        (
            lambda t: t["meta"]._replace(out={"w": t["meta"].out["w"], "m": jnp.zeros(5, jnp.int32)}),
            r"saved as meta\.out\['n'\] but the template has meta\.out\['m'\]",
        ),
    ],
)
def test_template_mismatch_names_the_leaf(tmp_path: Path, change, message):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 1, trees, {})
    template = {**make_trees(0), "meta": change(make_trees(0))}
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path, template)


def test_template_key_mismatch_and_missing_tree(tmp_path: Path):
    trees = make_trees(1)
    save_checkpoint(tmp_path, 1, trees, {})
    with pytest.raises(CheckpointError, match=r"leaf key.*dtype 'key'.*'uint32'"):
        load_checkpoint(tmp_path, {**make_trees(0), "key": jax.random.PRNGKey(0)})
    with pytest.raises(CheckpointError, match=r"no tree\(s\) \['extra'\]"):
        load_checkpoint(tmp_path, {**make_trees(0), "extra": jnp.zeros(2)})


def test_keep_last_prunes_old_checkpoints(tmp_path: Path):
    trees = {"meta": make_trees(1)["meta"]}
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, trees, {}, keep_last=2)
    assert committed_steps(tmp_path) == [4, 5]
    assert sorted(p.name for p in tmp_path.glob("ckpt_*")) == [
        "ckpt_00000004.json",
        "ckpt_00000004.npz",
        "ckpt_00000005.json",
        "ckpt_00000005.npz",
    ]


def test_overwriting_a_step_is_atomic(tmp_path: Path):
    save_checkpoint(tmp_path, 1, {"meta": jnp.zeros(3)}, {"v": 1})
    save_checkpoint(tmp_path, 1, {"meta": jnp.ones(3)}, {"v": 2})
    _, trees, metadata = load_checkpoint(tmp_path, {"meta": jnp.zeros(3)})
    np.testing.assert_array_equal(trees["meta"], np.ones(3))
    assert metadata == {"v": 2}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("step", [-1, 1.5, True])
def test_rejects_bad_steps(tmp_path: Path, step):
    with pytest.raises(ValueError, match="non-negative int"):
        save_checkpoint(tmp_path, step, {"meta": jnp.zeros(1)}, {})


def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path: Path):
    """mkstemp makes 0600 files; a checkpoint in a shared folder must stay readable by the others (umask), and a
    file replaced in place keeps the mode its owner gave it."""
    umask = os.umask(0o022)
    os.umask(umask)
    json_path = save_checkpoint(tmp_path, 1, {"meta": {"w": np.zeros(2)}})
    for path in (json_path, json_path.with_suffix(".npz"), tmp_path / "latest.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    (tmp_path / "latest.json").chmod(0o640)
    save_checkpoint(tmp_path, 2, {"meta": {"w": np.zeros(2)}})
    assert (tmp_path / "latest.json").stat().st_mode & 0o777 == 0o640


# ----- messages that name the file ---------------------------------------------------------------------------


def test_a_corrupt_manifest_is_named_by_checkpoint_metadata(tmp_path: Path):
    json_path = save_checkpoint(tmp_path, 3, {"meta": jnp.zeros(2)}, {"experiment": {"seed": 1}})
    assert ckpt.checkpoint_metadata(tmp_path) == {"experiment": {"seed": 1}}
    json_path.write_text('{"format": "vsml-checkpoint", "vers')  # cut off
    for where in (tmp_path, json_path, json_path.with_suffix(".npz")):
        with pytest.raises(CheckpointError, match=f"corrupt checkpoint manifest {json_path}"):
            ckpt.checkpoint_metadata(where)
    json_path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(CheckpointError, match=str(json_path)):
        ckpt.checkpoint_metadata(json_path)


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import errno

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write/fsync raise it: no file named

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match=r"\[Errno 28\] No space left on device: .*ckpt_00000001\.npz") as info:
        save_checkpoint(tmp_path, 1, {"meta": jnp.zeros(2)})
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("ckpt_00000001.npz")
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_are_recognised_by_their_target(tmp_path: Path):
    import tempfile

    from vsml.atomic import stale_temporary_files

    real = Path(tempfile.mkstemp(dir=tmp_path, prefix=".ckpt_00000002.npz.", suffix=".tmp")[1])
    other = Path(tempfile.mkstemp(dir=tmp_path, prefix=".evaluation.json.", suffix=".tmp")[1])
    for name in ("ckpt_00000002.npz", "notes.tmp", ".ckpt_00000002.npz.tmp", ".config.yaml.ab.tmp"):
        (tmp_path / name).write_text("")
    assert stale_temporary_files(tmp_path, lambda name: name.startswith("ckpt_")) == [real]
    assert stale_temporary_files(tmp_path, lambda name: True) == sorted([real, other])
    assert stale_temporary_files(tmp_path / "missing", lambda name: True) == []
