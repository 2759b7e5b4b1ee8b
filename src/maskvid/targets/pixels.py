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
    unbiased variance, then flattened ``(t p p C)`` — the exact order and statistics of VideoMAE and HF."""

    name = "norm_pixels"

    eps: float = 1e-6

    @torch.no_grad()
    def forward(self, video: torch.Tensor, **aux) -> torch.Tensor:
        tokens = patchify(unnormalize(video, self.mean, self.std), self.patch)  # (B, N, t·p·p, C)
        centred = tokens - tokens.mean(dim=-2, keepdim=True)
        normed = centred / (tokens.var(dim=-2, unbiased=True, keepdim=True).sqrt() + self.eps)
        return normed.flatten(2)
