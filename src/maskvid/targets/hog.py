"""HOG target (MaskFeat; MME appendix C): per frame and RGB channel, a 9-bin histogram of unsigned gradient
orientations in each patch-sized cell, weighted by gradient magnitude and L2-normalized — computed on the device
with Sobel convolutions, no loop over pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from maskvid.errors import ConfigError, InputError
from maskvid.motion.hog_cells import DenseHOGSpec
from maskvid.targets.base import Target
from maskvid.targets.patchify import unnormalize
from maskvid.targets.pixels import Pixels

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


@dataclass(eq=False)
class HOG(Pixels):
    """``(B, N, t·C·bins)``: for each of the tubelet's t frames and C channels, one histogram per token."""

    name = "hog"

    bins: int = 9

    def __post_init__(self):
        super().__post_init__()
        if self.bins < 2:
            raise ConfigError("target.bins", f"need at least 2 orientation bins, got {self.bins}")

    @property
    def dim(self) -> int:
        return self.patch[0] * self.channels * self.bins

    @torch.no_grad()
    def forward(self, video: torch.Tensor, **aux) -> torch.Tensor:
        t, p, q = self.patch
        b, c, frames, height, width = video.shape
        images = rearrange(unnormalize(video, self.mean, self.std), "b c t h w -> (b t c) 1 h w").float()
        cells = cell_histograms(*sobel(images), self.bins, (p, q))  # (BTC, bins, H/p, W/q)
        cells = rearrange(cells, "(b n t c) k h w -> b (n h w) (t c k)", b=b, t=t, c=c)
        return cells.to(video.dtype)


def sobel(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dx, d/dy of ``(B, 1, H, W)`` images, reflect-padded: two ``(B, H, W)``."""
    kernel = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(images)  # (2, 1, 3, 3)
    grad = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="reflect"), kernel)
    return grad[:, 0], grad[:, 1]


def cell_histograms(dx: torch.Tensor, dy: torch.Tensor, bins: int, cell: tuple[int, int],
                    signed: bool = False) -> torch.Tensor:
    """Orientation histograms of the vectors ``(dx, dy)`` ``(B, H, W)``, weighted by their length, each vote split
    linearly between the two nearest bins, summed over ``cell`` blocks and L2-normalized: ``(B, bins, H/p, W/q)``.
    Orientations are unsigned (``[0, π)``, HOG) or signed (``[0, 2π)``, flow directions: HOF, MBH)."""
    magnitude = torch.sqrt(dx * dx + dy * dy)
    period = 2 * math.pi if signed else math.pi
    position = (torch.atan2(dy, dx) % period) / period * bins
    low = position.floor().long() % bins
    frac = position - position.floor()
    votes = torch.zeros(dx.shape[0], bins, *dx.shape[1:], device=dx.device, dtype=dx.dtype)
    votes.scatter_add_(1, low[:, None], (magnitude * (1 - frac))[:, None])
    votes.scatter_add_(1, ((low + 1) % bins)[:, None], (magnitude * frac)[:, None])
    cells = F.avg_pool2d(votes, cell) * (cell[0] * cell[1])
    return F.normalize(cells, dim=1)


@dataclass(eq=False)
class DenseHOG(Target):
    """MME's dense HOG (Tab. 6): ``(B, N, F·bins)``, the HOG of the patch in every raw frame of the tubelet's span
    (``F = t·stride/step``, not only its input frames), on the grayscale frame. Made in the workers (``dense_hog``
    ``(B, N, F, bins)``, :mod:`maskvid.motion.hog_cells`); ``stride`` is the input stride (``data.stride``)."""

    name = "dense_hog"
    inputs = ("dense_hog",)

    patch: tuple[int, int, int] = (2, 16, 16)
    stride: int = 2
    step: int = 1
    bins: int = 9

    def __post_init__(self):
        super().__init__()
        self.patch = tuple(self.patch)
        self.spec = DenseHOGSpec(self.step, self.bins)
        self.per_token = self.spec.per_tubelet(self.patch[0], self.stride)

    @property
    def dim(self) -> int:
        return self.per_token * self.bins

    @torch.no_grad()
    def forward(self, dense_hog: torch.Tensor, **aux) -> torch.Tensor:
        if dense_hog.dim() != 4 or tuple(dense_hog.shape[2:]) != (self.per_token, self.bins):
            raise InputError("dense_hog", f"expected (B, N, {self.per_token}, {self.bins}), got "
                             f"{tuple(dense_hog.shape)}")
        return dense_hog.float().flatten(2)
