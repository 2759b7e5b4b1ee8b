"""Block masks: BEiT's 2D blocks repeated over time ("cube", MAM²/MME) and VIMPAC's union of 3D blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from maskvid.errors import ConfigError
from maskvid.masking.base import Grid, MaskStrategy, masked_count, randint, uniform


def _place_block(mask: torch.Tensor, budget: int, min_block: int, log_aspect: tuple[float, float], g) -> int:
    """One BEiT block attempt (up to 10 tries); returns how many new tokens it masked (0: none fitted)."""
    height, width = mask.shape
    for _ in range(10):
        area = uniform(g, min_block, budget)
        aspect = math.exp(uniform(g, *log_aspect))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if not (0 < h < height and 0 < w < width):
            continue
        top, left = randint(g, 0, height - h), randint(g, 0, width - w)
        new = h * w - int(mask[top : top + h, left : left + w].sum())
        if 0 < new <= budget:
            mask[top : top + h, left : left + w] = True
            return new
    return 0


_FOUR_NEIGHBOURS = torch.tensor([[[[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]])


def grow_to_count(mask: torch.Tensor, count: int, g: torch.Generator) -> torch.Tensor:
    """Mask random unmasked 4-neighbours of the masked region until exactly ``count`` tokens are masked."""
    while int(mask.sum()) < count:
        short = count - int(mask.sum())
        touching = F.conv2d(mask[None, None].float(), _FOUR_NEIGHBOURS, padding=1)[0, 0] > 0
        frontier = (touching & ~mask).flatten().nonzero().flatten()
        if frontier.numel() == 0:  # nothing masked yet
            frontier = (~mask).flatten().nonzero().flatten()
        pick = frontier[torch.randperm(frontier.numel(), generator=g)[:short]]
        mask.view(-1)[pick] = True
    return mask


@dataclass
class CubeMask(MaskStrategy):
    """BEiT block-wise mask (blocks of ≥ ``min_block`` tokens, aspect in [``min_aspect``, 1/``min_aspect``]),
    repeated over time — MAM²'s and MME's "cube". BEiT's loop can stop a few tokens short; we grow the blocks at
    their border to exactly round(ratio·H'·W') per slice, so every clip has the same count."""

    name = "cube"
    ratio: float = 0.4
    min_block: int = 16
    min_aspect: float = 0.3

    def validate(self) -> None:
        if self.min_block < 1:
            raise ConfigError("mask.min_block", f"must be >= 1, got {self.min_block}")
        if not 0 < self.min_aspect <= 1:
            raise ConfigError("mask.min_aspect", f"must be in (0, 1], got {self.min_aspect}")

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        self.check_slice(grid)
        t, h, w = grid
        count = masked_count(self.ratio, h * w)
        log_aspect = (math.log(self.min_aspect), -math.log(self.min_aspect))
        spatial = torch.zeros(h, w, dtype=torch.bool)
        masked = 0
        while masked < count:
            added = _place_block(spatial, count - masked, min(self.min_block, count - masked), log_aspect, g)
            if added == 0:
                break
            masked += added
        spatial = grow_to_count(spatial, count, g)
        return spatial.expand(t, h, w).clone()


def _block_lengths(grid: Grid) -> tuple[int, int, int]:
    """Longest block per axis: ⌊2/3·T'⌋ in time, ⌊½·H'⌋ and ⌊½·W'⌋ in space (at least 1)."""
    t, h, w = grid
    return max(1, 2 * t // 3), max(1, h // 2), max(1, w // 2)


def _cover_probability(length: int, longest: int) -> torch.Tensor:
    """P(position i is inside a block) along one axis: block length uniform in [1, longest], start uniform."""
    cover = torch.zeros(length, dtype=torch.float64)
    for span in range(1, longest + 1):
        starts = length - span + 1
        for start in range(starts):
            cover[start : start + span] += 1.0 / (longest * starts)
    return cover


def expected_block3d_ratio(grid: Grid, blocks: int) -> float:
    """Expected masked fraction of a union of ``blocks`` independent random 3D blocks (VIMPAC Table 2)."""
    (t, h, w), longest = grid, _block_lengths(grid)
    pt, ph, pw = (_cover_probability(n, m) for n, m in zip((t, h, w), longest, strict=True))
    inside = pt[:, None, None] * ph[None, :, None] * pw[None, None, :]
    return float((1 - (1 - inside) ** blocks).mean())


@lru_cache(maxsize=64)
def blocks_for_ratio(grid: Grid, ratio: float) -> int:
    """The number of blocks whose expected ratio is nearest ``ratio`` (VIMPAC App. B.1 picks 15% this way)."""
    previous, k = 0.0, 1
    while True:
        current = expected_block3d_ratio(grid, k)
        if current >= ratio or current - previous < 1e-4 or k >= 10_000:
            return k if k == 1 or abs(current - ratio) <= abs(previous - ratio) else k - 1
        previous, k = current, k + 1


@dataclass
class Block3DMask(MaskStrategy):
    """VIMPAC (Tan et al. 2021, Eq. 3): the union of K spatio-temporal blocks, each with independent uniform
    length and start per axis, lengths up to ⌊2/3·T'⌋ in time and ⌊½·H'⌋, ⌊½·W'⌋ in space.

    ``blocks`` fixes K; otherwise K is the count whose expected ratio is nearest ``ratio`` (default 15%, BERT's).
    The paper writes the temporal bound as "2/3, rounded up"; its Table 2 (e.g. 14.5% for 5 blocks on 5×16×16) is
    reproduced to 0.1 points only when it is rounded down, so we round down. The masked count varies from clip to
    clip (a union of random blocks); its expectation is the induced ratio. A union that would hide the whole clip
    leaves one random token visible.
    """

    name = "block3d"
    ratio: float = 0.15
    blocks: int | None = None

    def validate(self) -> None:
        if self.blocks is not None and (not isinstance(self.blocks, int) or self.blocks < 1):
            raise ConfigError("mask.blocks", f"must be a positive int or null, got {self.blocks!r}")

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        count = self.blocks if self.blocks is not None else blocks_for_ratio(grid, float(self.ratio))
        longest = _block_lengths(grid)
        mask = torch.zeros(grid, dtype=torch.bool)
        for _ in range(count):
            ranges = []
            for size, most in zip(grid, longest, strict=True):
                span = randint(g, 1, most)
                start = randint(g, 0, size - span)
                ranges.append(slice(start, start + span))
            mask[tuple(ranges)] = True
        if bool(mask.all()):
            mask.view(-1)[randint(g, 0, mask.numel() - 1)] = False
        return mask


