"""Pixel targets: raw pixels in [0, 1] and VideoMAE's per-patch normalized pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from maskvid.constants import IMAGENET_MEAN, IMAGENET_STD
from maskvid.targets.base import Target
from maskvid.targets.patchify import patchify, unnormalize


@dataclass(eq=False)
class Pixels(Target):
    """Pixels of each tubelet, un-normalized to [0, 1], flattened ``(t p p C)`` → ``(B, N, t·p·p·C)``."""

    name = "pixels"

    patch: tuple[int, int, int] = (2, 16, 16)
    channels: int = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        super().__init__()
        self.patch = tuple(self.patch)

    @property
    def dim(self) -> int:
        return math.prod(self.patch) * self.channels

    @torch.no_grad()
    def forward(self, video: torch.Tensor, **aux) -> torch.Tensor:
        return patchify(unnormalize(video, self.mean, self.std), self.patch).flatten(2)


@dataclass(eq=False)
class NormPixels(Pixels):
    """VideoMAE's ``norm_pix_loss`` target: per patch and channel, (x - mean) / (std + 1e-6) over the t·p·p pixels,
    unbiased variance, then flattened ``(t p p C)`` — the exact order and statistics of VideoMAE and HF.

    Computed on the normalized clip itself: undoing the pipeline's per-channel ``(x - m) / s`` first (as VideoMAE
    does) scales a patch's deviations and its std alike by ``s``, so only the epsilon changes, to ``1e-6 / s`` —
    the same values up to float rounding, without two passes over the whole clip.
    """

    name = "norm_pixels"

    eps: float = 1e-6

    @torch.no_grad()
    def forward(self, video: torch.Tensor, **aux) -> torch.Tensor:
        tokens = patchify(video, self.patch)  # (B, N, t·p·p, C)
        var, mean = torch.var_mean(tokens, dim=-2, unbiased=True, keepdim=True)
        scale = var.sqrt_()
        for c, s in enumerate(self.std):  # Python scalars: no host-to-device copy per step
            scale[..., c].add_(self.eps / s)
        return ((tokens - mean) / scale).flatten(2)
