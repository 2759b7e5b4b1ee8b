"""``maskvid extract``: offline caches a run reads instead of computing online.

    report = extract_flows("trajectories", "train.csv", "cache/", config=config, shard=(0, 4))

``trajectories``: the flows (and camera homographies) a trajectory target is tracked through, with the tracking
options of ``config``'s trajectory head (or the defaults: DIS medium, KLT camera removal, flow stride 1);
``flow``: the same without camera removal. A run reads the cache when ``data.cache`` names the directory.
Shards split the list (``--shard i/n``, or torchrun's ``RANK``/``WORLD_SIZE``); finished videos are skipped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from maskvid.config import PretrainConfig, encoder_config, target_geometry
from maskvid.data.annotations import read_annotation_list
from maskvid.data.flow_cache import extract
from maskvid.errors import ConfigError
from maskvid.motion.trajectory_features import TrajectorySpec

KINDS = ("trajectories", "flow")


def trajectory_spec(config: PretrainConfig | None) -> TrajectorySpec:
    """The tracking options of ``config``'s trajectory head (the defaults without a config)."""
    from maskvid import targets

    if config is None:
        return TrajectorySpec()
    heads = [h for h in config.head_configs() if h.target == "trajectory"]
    if not heads:
        raise ConfigError("heads", "the config has no trajectory target to extract flows for")
    geometry = target_geometry("trajectory", encoder_config(config), config.data.stride)
    return targets.build("trajectory", **geometry, **heads[0].options).spec


def shard_of(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → (i, n); without one, torchrun's rank and world size (else the whole list)."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError("--shard", f"expected i/n, e.g. 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise ConfigError("--shard", f"need 0 <= i < n, got {text!r}")
    return index, count


def extract_flows(kind: str, video_list: str, out: str, config: PretrainConfig | None = None,
                  root: str | None = None, decode_size: int | None = None, shard: tuple[int, int] = (0, 1),
                  progress: Callable[[int, int], None] | None = None, device: str = "cpu") -> dict:
    """Fill the flow cache ``out`` for the videos of ``video_list`` (this shard's share)."""
    if kind not in KINDS:
        raise ConfigError("extract", f"{kind!r} not in {KINDS}")
    if not os.path.exists(video_list):
        raise ConfigError("--list", f"{video_list}: no such file")
    spec = trajectory_spec(config)
    if kind == "flow":
        spec = dataclasses.replace(spec, camera=None)
    if config is not None and decode_size is None:
        decode_size = config.data.decode_size
    records = read_annotation_list(video_list, root, require_labels=False)
    report = extract([r.path for r in records], out, spec, decode_size, shard, progress, device)
    return {**report, "kind": kind, "out": out, "shard": list(shard), "flow": list(spec.flow_key),
            "decode_size": decode_size}
