"""Pretrained weights from wherever a user has them, into a fine-tuning network.

Sources: a maskvid run directory (its newest checkpoint), a checkpoint directory or ``model.safetensors``, a
Hugging Face VideoMAE directory, or an original VideoMAE ``.pth``. Learned position tables are resized when the
fine-tuning clip length or resolution differs from pretraining (the fixed sincos table is simply rebuilt).
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open

from maskvid.engine.checkpoint import latest_checkpoint, load_weights
from maskvid.errors import CheckpointError
from maskvid.models.vit import ViTConfig, config_from_dict, resize_grid_table


def read_pretrained(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ViTConfig | None]:
    """``(state, encoder_config)``: weights named as maskvid's MAE/classifier names them (``encoder.…``,
    ``heads.0.decoder.…``), and the encoder's config when the source records it."""
    source = os.fspath(source)
    if os.path.isdir(os.path.join(source, "checkpoints")):
        found = latest_checkpoint(source)
        if found is None:
            raise CheckpointError(f"{source}: a run directory without a complete checkpoint")
        source = found
    if os.path.isdir(source) and os.path.exists(os.path.join(source, "config.json")):
        return _from_hf(source)
    file = os.path.join(source, "model.safetensors") if os.path.isdir(source) else source
    if file.endswith(".safetensors"):
        return load_weights(file), _recorded_config(file)
    if os.path.isfile(file):
        return _from_hf(file)
    raise CheckpointError(f"{source}: no checkpoint, model.safetensors, HF directory or .pth here")


def _from_hf(path: str):
    from maskvid.hf import from_hf  # hf sits above this floor's data; imported when needed

    model = from_hf(path)
    return model.state_dict(), model.encoder.config


def _recorded_config(file: str) -> ViTConfig | None:
    with safe_open(file, "pt") as f:
        recorded = (f.metadata() or {}).get("encoder")
    return config_from_dict(json.loads(recorded)) if recorded else None


def resize_position_tables(state: dict, source: ViTConfig | None, target: ViTConfig) -> dict:
    """Interpolate learned (joint, separable or factorized) tables from the pretraining grid to the fine-tuning
    grid."""
    state = dict(state)
    for key, value in list(state.items()):
        if not key.startswith("encoder.pos_embed.") or source is None or source.grid == target.grid:
            continue
        if key.endswith("pos_embed_time"):
            state[key] = resize_grid_table(value, source.grid[:1], target.grid[:1])
        elif key.endswith("pos_embed_space"):
            state[key] = resize_grid_table(value, source.grid[1:], target.grid[1:])
        elif key.endswith("pos_embed_height"):
            state[key] = resize_grid_table(value, source.grid[1:2], target.grid[1:2])
        elif key.endswith("pos_embed_width"):
            state[key] = resize_grid_table(value, source.grid[2:], target.grid[2:])
        else:
            state[key] = resize_grid_table(value, source.grid, target.grid)
    return state


def load_pretrained(model: torch.nn.Module, source: str | os.PathLike, prefix: str, target: ViTConfig,
                    skip: tuple[str, ...] = ()) -> dict:
    """Load ``source`` into ``model`` with ``prefix`` before maskvid's names (``net.`` for a classifier,
    ``net.mae.`` for MAR). Keys starting with ``skip`` (e.g. the pretraining encoder's final norm when the
    classifier uses fc_norm) are left out. Returns what was loaded and what the model kept fresh."""
    state, source_config = read_pretrained(source)
    state = resize_position_tables(state, source_config, target)
    own = model.state_dict()
    wanted = {prefix + k: v for k, v in state.items() if not k.startswith(skip) and prefix + k in own}
    if not any(".encoder." in f".{k}" for k in wanted):
        raise CheckpointError(f"{source}: no encoder weights that fit this model")
    bad = [k for k, v in wanted.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{source}: shapes differ from the configured model at {bad[:3]} — does model.preset "
                              f"match the pretraining? (checkpoint {tuple(wanted[bad[0]].shape)}, "
                              f"model {tuple(own[bad[0]].shape)})")
    model.load_state_dict(wanted, strict=False)
    fresh = sorted(k for k in own if k not in wanted and not k.split(".")[-1].startswith("_"))
    return {"loaded": len(wanted), "fresh": fresh, "source": os.fspath(source)}
