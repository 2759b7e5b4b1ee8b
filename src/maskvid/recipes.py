"""Config → the objects a run needs: the one place that knows every method (DESIGN.md).

Every ``build_*`` validates what it can before any video is read.
"""

from __future__ import annotations

import dataclasses
import os

from maskvid import targets
from maskvid.config import PretrainConfig
from maskvid.data import ClipTransform, VideoDataset
from maskvid.errors import ConfigError
from maskvid.methods.mae import MAE
from maskvid.models import DecoderConfig, ViTConfig

METHODS = ("mae",)


def build_encoder_config(config: PretrainConfig) -> ViTConfig:
    m = config.model
    known = {f.name for f in dataclasses.fields(ViTConfig)}
    unknown = sorted(set(m.overrides) - known)
    if unknown:
        raise ConfigError(f"model.overrides.{unknown[0]}", f"not a model option; known: {', '.join(sorted(known))}")
    return ViTConfig.preset(
        m.preset, attention=m.attention, pos_embed=m.pos_embed, patch=m.patch, drop_path=m.drop_path,
        layer_scale=m.layer_scale, grad_checkpointing=m.grad_checkpointing, num_frames=config.data.num_frames,
        size=config.data.size, **m.overrides,
    )


def build_method(config: PretrainConfig) -> MAE:
    if config.method not in METHODS:
        raise ConfigError("method", f"{config.method!r} not in {METHODS}")
    encoder = build_encoder_config(config)
    m = config.model
    decoder = DecoderConfig(width=m.decoder_width, depth=m.decoder_depth, heads=m.decoder_heads, eps=encoder.eps,
                            head_eps=encoder.eps)
    if decoder.width % decoder.heads:
        raise ConfigError("model.decoder_heads", f"decoder width {decoder.width} not divisible by {decoder.heads}")
    target = targets.build(config.target.name, patch=encoder.patch, channels=encoder.channels,
                           **config.target.options)
    return MAE(encoder, decoder, target)


def build_pretrain_dataset(config: PretrainConfig) -> VideoDataset:
    d = config.data
    if not d.train_list:
        raise ConfigError("data.train_list", "no training list given")
    if not os.path.exists(d.train_list):
        raise ConfigError("data.train_list", f"{d.train_list}: no such file")
    transform = ClipTransform(size=d.size, crop=d.crop, flip=d.flip)
    return VideoDataset.from_list(
        d.train_list, root=d.root, classes=d.classes, require_labels=False, transform=transform,
        num_frames=d.num_frames, stride=d.stride, decode_size=d.decode_size, num_repeats=d.num_repeats,
        seed=config.seed, mask=config.mask.generator, patch=config.model.patch,
    )


def pretrain(config: PretrainConfig, resume: bool = False):
    """Build the method and the data from ``config`` and train; the run directory is ``config.output_dir``."""
    import torch

    from maskvid.engine.train import train

    torch.manual_seed(config.seed)  # the model's initialization
    method = build_method(config)
    dataset = build_pretrain_dataset(config)
    os.makedirs(config.output_dir, exist_ok=True)
    return train(method, dataset, config, config.output_dir, resume=resume)
