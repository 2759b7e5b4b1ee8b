"""RAFT optical flow (torchvision's ``raft_small`` / ``raft_large``) from a weights file the user gives.

Nothing downloads: the architecture comes from torchvision with ``weights=None`` and the state dict from a local
file — torchvision's published ``.pth`` (read with ``weights_only=True``) or a ``.safetensors`` of the same keys.
RAFT is worth its cost on a GPU (``maskvid extract … --device cuda``); on a CPU worker it is ~10-50× DIS.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from maskvid.errors import CheckpointError, ConfigError

RAFT_MODELS = ("raft_small", "raft_large")
MIN_SIDE = 128  # torchvision's RAFT: feature maps (1/8) of at least 16 for its 4-level correlation pyramid


def _architecture(name: str) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    return {"raft_small": raft_small, "raft_large": raft_large}[name](weights=None, progress=False)


def check_raft_weights(method: str, weights: str | None) -> None:
    """A RAFT ``method`` needs an existing local weights file (checked when the config is built)."""
    if method not in RAFT_MODELS:
        return
    if not weights:
        raise ConfigError("target.raft_weights", f"{method} needs a local weights file (torchvision's .pth or a "
                          ".safetensors); nothing is downloaded")
    if not os.path.isfile(weights):
        raise ConfigError("target.raft_weights", f"{weights}: no such file")


def load_raft(name: str, weights: str | None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The RAFT model ``name`` with the weights at ``weights``, in eval mode on ``device``."""
    if name not in RAFT_MODELS:
        raise ConfigError("target.flow", f"{name!r} not in {RAFT_MODELS}")
    check_raft_weights(name, weights)
    model = _architecture(name)
    try:
        if weights.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable file is the same problem for the user
        raise CheckpointError(f"{weights}: not a readable RAFT weights file ({type(e).__name__}: {e})") from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(f"{weights}: not {name} weights — missing {missing[0]} (and {len(missing) - 1} more)")
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise CheckpointError(f"{weights}: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, {name} expects "
                              f"{tuple(own[wrong[0]].shape)}")
    model.load_state_dict({k: state[k] for k in own})
    return model.eval().to(device)


def pad_for_raft(images: torch.Tensor) -> torch.Tensor:
    """``(K, 3, H, W)`` → padded on the right and bottom (replicating the border) to a multiple of 8, RAFT's
    feature stride, and to at least 128, the least its correlation pyramid takes."""
    height, width = images.shape[-2:]
    pad_w, pad_h = max(MIN_SIDE, width + -width % 8) - width, max(MIN_SIDE, height + -height % 8) - height
    return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")


@torch.no_grad()
def raft_pairs(model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor, updates: int = 12) -> torch.Tensor:
    """Batched RAFT on the model's device: ``(K, 3, H, W)`` frames in [0, 1] → ``(K, 2, H, W)`` forward flows
    (x, y in pixels)."""
    height, width = before.shape[-2:]
    flow = model(pad_for_raft(before * 2.0 - 1.0), pad_for_raft(after * 2.0 - 1.0), num_flow_updates=updates)[-1]
    return flow[..., :height, :width].float()


class RaftFlow:
    """Forward flow between two uint8 frames (grayscale ``(H, W)`` or RGB ``(H, W, 3)``) → ``(H, W, 2)`` float32;
    frames are padded (replicating the border) to a multiple of 8, RAFT's feature stride, and to at least 128, the
    least its correlation pyramid takes; the flow is cropped back."""

    def __init__(self, name: str, weights: str | None, device: str | torch.device = "cpu", updates: int = 12):
        self.model = load_raft(name, weights, device)
        self.device, self.updates = torch.device(device), updates

    def _prepare(self, frame: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).float()
        image = image[..., None].expand(*image.shape, 3) if image.dim() == 2 else image
        return pad_for_raft(image.permute(2, 0, 1)[None] / 127.5 - 1.0)  # RAFT's [-1, 1]

    @torch.no_grad()
    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        height, width = before.shape[:2]
        flow = self.model(self._prepare(before), self._prepare(after), num_flow_updates=self.updates)[-1]
        return flow[0, :, :height, :width].permute(1, 2, 0).float().cpu().numpy()
