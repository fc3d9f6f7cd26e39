"""The cloning run folder of `vsml clone CONFIG --out R`: clone online backprop into a VSML V_M
(`vsml.meta.cloning`) under the folder's lock, then save the config and one checkpoint (`{"meta", "codec"}`),
which `train.init_from` of a meta-training run can start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsml.config import config_to_dict, dump_config
from vsml.learners.vsml.codec import CloneParams, VSMLCloneStudent, clone_learner
from vsml.meta.cloning import CloneConfig, train_clone
from vsml.run.checkpoint import save_checkpoint
from vsml.run.run_dir import CONFIG_FILE, clear_stale_temporaries, lock_run_folder


def clone_into(config: CloneConfig, out_dir: str | Path, progress: bool = True) -> tuple[CloneParams, dict[str, Any]]:
    """Clone into `out_dir` and checkpoint the result; returns (the clone's parameters, its training history).
    One writer per folder, as for `vsml meta-train` (`run_dir.lock_run_folder`): a second clone is refused."""
    out = Path(out_dir)
    with lock_run_folder(out) as lock:
        clear_stale_temporaries(out, lock)
        params, history = train_clone(config, VSMLCloneStudent(clone_learner(config.num_micro_ticks)), progress)
        dump_config(config, out / CONFIG_FILE)
        save_checkpoint(
            out, config.train.steps, {"meta": params.meta, "codec": params.codec},
            {"config": config_to_dict(config), "history": history, "kind": "clone"},
        )  # fmt: skip
    return params, history


__all__ = ["clone_into"]
