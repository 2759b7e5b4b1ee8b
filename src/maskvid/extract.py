"""``maskvid extract``: offline caches a run reads instead of computing online.

    report = extract_flows("trajectories", "train.csv", "cache/", config=config, shard=(0, 4))

``trajectories``: the flows (and camera homographies) a trajectory target is tracked through, with the tracking
options of ``config``'s trajectory head (or the defaults: DIS medium, KLT camera removal, flow stride 1);
``flow``: the same without camera removal. A run reads the cache when ``data.cache`` names the directory.
``tokens``: the VQ ids of every frame in a fixed set of spatial views (:mod:`maskvid.data.token_cache`), read
when ``data.tokens_cache`` names the directory.
Shards split the list (``--shard i/n``, or torchrun's ``RANK``/``WORLD_SIZE``); finished videos are skipped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

from maskvid.config import PretrainConfig, encoder_config, target_geometry
from maskvid.data.annotations import read_annotation_list
from maskvid.data.cache_entries import fill
from maskvid.data.flow_cache import extract
from maskvid.data.token_cache import TokenCache, token_views
from maskvid.errors import ConfigError
from maskvid.motion.trajectory_features import TrajectorySpec

KINDS = ("trajectories", "flow", "tokens")


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
    if kind not in KINDS[:2]:
        raise ConfigError("extract", f"{kind!r} not in {KINDS[:2]}")
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


@dataclass
class TokenOptions:
    """What ``maskvid extract tokens`` tokenizes: ``tokenizer`` (a maskvid ``.safetensors``); clips of ``size``²
    with ``patch``² frame patches (one id each); the views: short side at ``scales`` × size, crops at
    ``positions``, and each flipped too with ``flip`` (VIMPAC App. C: scales 1, 1.25, three positions, flip)."""

    tokenizer: str | None = None
    size: int | None = None
    patch: int | None = None
    scales: tuple[float, ...] = (1.0,)
    positions: tuple[str, ...] = ("center",)
    flip: bool = False


def token_options(options: TokenOptions, config: PretrainConfig | None) -> TokenOptions:
    """``options`` with what it leaves out taken from ``config``: its tokens head's tokenizer, data.size, the
    model's patch."""
    if config is not None:
        heads = [h for h in config.head_configs() if h.target == "tokens"]
        tokenizer = options.tokenizer or (heads[0].options.get("tokenizer") if heads else None)
        options = dataclasses.replace(options, tokenizer=tokenizer, size=options.size or config.data.size,
                                      patch=options.patch or config.model.patch[-1])
    for key in ("tokenizer", "size", "patch"):
        if getattr(options, key) is None:
            raise ConfigError(f"--{key}", "needed (or a --config whose tokens head and data say it)")
    return options


def extract_tokens(video_list: str, out: str, options: TokenOptions, config: PretrainConfig | None = None,
                   root: str | None = None, decode_size: int | None = None, shard: tuple[int, int] = (0, 1),
                   progress: Callable[[int, int], None] | None = None, device: str = "cpu") -> dict:
    """Fill the token cache ``out`` for the videos of ``video_list`` (this shard's share)."""
    if not os.path.exists(video_list):
        raise ConfigError("--list", f"{video_list}: no such file")
    options = token_options(options, config)
    if config is not None and decode_size is None:
        decode_size = config.data.decode_size
    views = token_views(options.scales, options.positions, options.flip)
    cache = TokenCache.create(out, options.tokenizer, options.size, options.size // options.patch, views,
                              decode_size, device)
    cache.tokenizer  # noqa: B018 — load it now: a bad tokenizer file is one error before any video
    records = read_annotation_list(video_list, root, require_labels=False)
    report = fill(cache, [r.path for r in records], shard, progress)
    return {**report, "kind": "tokens", "out": out, "shard": list(shard), "views": len(views),
            "grid": cache.grid, "decode_size": decode_size}
