"""What a checkpoint holds besides the weights — optimizer, RNG states, step, the bad videos met so far — written
with each checkpoint and restored by ``--resume`` so the run continues exactly.

The bad-video tally goes on across a resume: the videos skipped before it stay in the run's report, their reads
still count against ``data.max_bad_fraction``, and a video that killed a loader worker is not opened again.

Resuming takes the newest checkpoint whose files read; one left truncated (a kill or a full disk mid-write) is
skipped with a warning for the one before it. A checkpoint that reads but does not fit — a key missing from
``state.pt``, a tensor of another shape — is a ``CheckpointError`` naming the key and both shapes: an older
checkpoint of the same run would not fit either.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np
import torch

from maskvid.engine.checkpoint import (
    UnreadableCheckpoint,
    list_checkpoints,
    load_state,
    restore_model,
    save_checkpoint,
)
from maskvid.errors import CheckpointError

log = logging.getLogger(__name__)
REQUIRED = {"optimizer": dict, "rng_cpu": torch.Tensor, "step": int}


class Resumed(NamedTuple):
    step: int
    global_batch: int | None  # None: a checkpoint from before it was recorded
    bad_videos: dict  # :func:`bad_video_state` as saved ({}: a checkpoint from before it was)


def bad_video_state(skipped: dict[str, str], crashed: dict[str, str], bad_attempts: int, good: int) -> dict:
    """The run's bad-video tally over all ranks: the videos skipped (path -> why), those that killed a loader
    worker, and the reads counted against ``data.max_bad_fraction``."""
    return {"skipped": dict(skipped), "crashed": dict(crashed), "bad_attempts": int(bad_attempts), "good": int(good)}


def restore_bad_videos(saved: dict, bad_log, watch, counts: bool) -> None:
    """Put a checkpoint's :func:`bad_video_state` back into this rank's ``bad_log`` (a
    :class:`~maskvid.data.BadVideoLog`) and ``watch`` (its dataset's :class:`~maskvid.data.worker_watch.WorkerWatch`,
    or None). The counts go to one rank only (``counts``): the ranks' counts are summed."""
    for path, why in saved.get("skipped", {}).items():
        bad_log.bad.setdefault(path, why)
    if watch is not None:
        watch.crashed.update(saved.get("crashed", {}))
    if counts:
        bad_log.bad_attempts += saved.get("bad_attempts", 0)
        bad_log.good += saved.get("good", 0)


def save_run(run_dir: str, step: int, epoch: int, method, optimizer, config, keep: int, ema,
             global_batch: int | None = None, bad_videos: dict | None = None) -> str:
    """``global_batch``: samples per step over all ranks, so that a resume with another world size finds where in
    the epoch's order this run stood; ``bad_videos``: :func:`bad_video_state`."""
    state = {
        "bad_videos": bad_videos or {},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "global_batch": global_batch,
        "rng_cpu": torch.get_rng_state(),
        "rng_numpy": _numpy_rng_state(),  # timm's mixup draws from numpy's global generator
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": config.to_dict(),
    }
    return save_checkpoint(run_dir, step, method, state, keep, ema=ema.module if ema is not None else None)


def resume_run(run_dir: str, method, optimizer, device, ema) -> Resumed:
    """Restore the newest readable checkpoint of ``run_dir`` into ``method``, ``optimizer`` (and ``ema``), and the
    RNG states; returns its step, the global batch it was taken with and its bad videos."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: nothing to resume (no complete checkpoint under checkpoints/)")
    skipped = []
    for path in reversed(found):
        try:
            state = load_state(path)
            _check_state(state, os.path.join(path, "state.pt"), method, optimizer)
            restore_model(method, path)
            if ema is not None:
                restore_model(ema.module, os.path.join(path, "ema.safetensors"))
        except UnreadableCheckpoint as e:
            log.warning("skipping checkpoint %s: %s", path, e)
            skipped.append(str(e))
            continue
        _restore_state(state, optimizer)
        method.to(device)
        return Resumed(state["step"], state.get("global_batch"), state.get("bad_videos") or {})
    raise CheckpointError(f"{run_dir}: no checkpoint reads:\n  " + "\n  ".join(skipped))


def _check_state(state: dict, file: str, method, optimizer) -> None:
    for key, kind in REQUIRED.items():
        if key not in state:
            raise CheckpointError(f"{file}: key {key!r} is missing")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{file}: key {key!r} holds {type(state[key]).__name__}, not {kind.__name__}")
    bad = state.get("bad_videos", {})
    if not isinstance(bad, dict) or not all(isinstance(bad.get(k, {}), dict) for k in ("skipped", "crashed")):
        raise CheckpointError(f"{file}: key 'bad_videos' is not a bad-video tally (skipped, crashed, counts)")
    saved = state["optimizer"]
    groups, per_param = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(per_param, dict):
        raise CheckpointError(f"{file}: key 'optimizer' is not an optimizer state (no param_groups / state)")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in groups for i in g.get("params", [])]
    if len(groups) != len(optimizer.param_groups) or len(ids) != len(params):
        raise CheckpointError(f"{file}: optimizer: {len(ids)} tensors in {len(groups)} groups saved, the model has "
                              f"{len(params)} in {len(optimizer.param_groups)}")
    names = {id(p): name for name, p in method.named_parameters()}
    for i, param in zip(ids, params, strict=True):
        for key, value in per_param.get(i, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(f"{file}: optimizer.{key} of {names.get(id(param), i)}: the checkpoint holds "
                                      f"shape {tuple(value.shape)}, the model {tuple(param.shape)}")


def _restore_state(state: dict, optimizer) -> None:
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_numpy" in state:
        _set_numpy_rng_state(state["rng_numpy"])
    if state.get("rng_cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(state: dict) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))
