"""The standard masks: per-token random (ST-MAE), tube (VideoMAE) and whole-frame masking (MAR Table II)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskvid.errors import ConfigError
from maskvid.masking.base import Grid, MaskStrategy, masked_count, random_subset


@dataclass
class RandomMask(MaskStrategy):
    """ST-MAE (Feichtenhofer et al. 2022): exactly round(ratio·N) tokens, uniformly at random over the clip."""

    name = "random"
    ratio: float = 0.9

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        n = grid[0] * grid[1] * grid[2]
        return random_subset(n, masked_count(self.ratio, n), g).view(grid)


@dataclass
class TubeMask(MaskStrategy):
    """VideoMAE: one random spatial mask of round(ratio·H'·W') tokens, repeated in every temporal slice."""

    name = "tube"
    ratio: float = 0.9

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        self.check_slice(grid)
        t, h, w = grid
        spatial = random_subset(h * w, masked_count(self.ratio, h * w), g).view(1, h, w)
        return spatial.expand(t, h, w).clone()


@dataclass
class FrameMask(MaskStrategy):
    """Whole temporal slices: round(ratio·T') random slices are masked entirely (MAR's "frame" baseline)."""

    name = "frame"
    ratio: float = 0.5

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        t, h, w = grid
        if t < 2:
            raise ConfigError("mask.grid", f"frame masking needs T' >= 2 temporal slices, got {grid}")
        slices = random_subset(t, masked_count(self.ratio, t), g)
        return slices.view(t, 1, 1).expand(t, h, w).clone()
