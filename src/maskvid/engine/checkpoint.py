"""Atomic checkpoints: ``checkpoints/step_NNNNNNN/{model.safetensors, state.pt}``, written to a temporary directory
and renamed into place, so a kill at any moment leaves the previous checkpoint whole. ``state.pt`` (optimizer, RNG
states, step, epoch) is loaded with ``weights_only=True``: a file that would run code when unpickled is refused."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile

import torch
from safetensors.torch import load_file, save_file

from maskvid.errors import CheckpointError

STEP_DIR = re.compile(r"^step_(\d+)$")


def save_checkpoint(run_dir: str, step: int, model: torch.nn.Module, state: dict, keep: int = 2,
                    ema: torch.nn.Module | None = None) -> str:
    """Write ``model.safetensors`` (+ ``ema.safetensors`` for an EMA copy) and ``state.pt`` atomically."""
    root = os.path.join(run_dir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step_{step:07d}")
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"step": str(step)}
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "config"):  # lets a fine-tune resize learned position tables
        metadata["encoder"] = json.dumps(encoder.config.to_dict())
    save_file(weights, os.path.join(tmp, "model.safetensors"), metadata=metadata)
    if ema is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema.state_dict().items()},
                  os.path.join(tmp, "ema.safetensors"), metadata=metadata)
    torch.save({**state, "step": step}, os.path.join(tmp, "state.pt"))
    for name in os.listdir(tmp):
        with open(os.path.join(tmp, name), "rb") as f:
            os.fsync(f.fileno())
    if os.path.exists(final):  # a rerun of the same step (e.g. resumed and saved again): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint directories holding both files, oldest first (temporary ones from a killed write are ignored;
    whether the files *read* is found out when one is loaded, see :func:`resume_from`)."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    steps = sorted((int(m.group(1)), name) for name in os.listdir(root) if (m := STEP_DIR.match(name)))
    return [os.path.join(root, name) for _, name in steps
            if all(os.path.isfile(os.path.join(root, name, f)) for f in ("model.safetensors", "state.pt"))]


def remove_unfinished_writes(run_dir: str) -> list[str]:
    """Delete the ``.tmp-*`` directories a killed checkpoint write left behind; returns what was removed."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    leftovers = [os.path.join(root, name) for name in os.listdir(root) if name.startswith(".tmp-")]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def latest_checkpoint(run_dir: str) -> str | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint file is missing, truncated or not what its name says (as a killed write or a full disk leaves
    it); resuming falls back to an older checkpoint."""


def load_weights(path: str) -> dict[str, torch.Tensor]:
    file = os.path.join(path, "model.safetensors") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise UnreadableCheckpoint(f"{file}: missing")
    try:
        return load_file(file)
    except Exception as e:  # noqa: BLE001
        raise UnreadableCheckpoint(f"{file}: not a readable safetensors file ({e})") from e


def load_state(path: str) -> dict:
    """``state.pt`` of a checkpoint directory, unpickled with ``weights_only=True``."""
    file = os.path.join(path, "state.pt") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise UnreadableCheckpoint(f"{file}: missing")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{file}: refused — it holds objects that could run code when loaded ({e})") from e
    except Exception as e:  # noqa: BLE001
        raise UnreadableCheckpoint(f"{file}: cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: expected a dict of training state, got {type(state).__name__}")
    return state


def restore_model(model: torch.nn.Module, path: str) -> None:
    """Load weights into ``model``; a missing, unexpected or differently shaped tensor is a CheckpointError naming
    the key (and both shapes) before anything is loaded."""
    weights = load_weights(path)
    own = model.state_dict()
    for key, tensor in weights.items():
        if key in own and tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{path}: {key}: the checkpoint holds shape {tuple(tensor.shape)}, the model "
                                  f"{tuple(own[key].shape)}")
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model — missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    model.load_state_dict(weights)
