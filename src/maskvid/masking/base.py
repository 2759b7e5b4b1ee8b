"""What every mask generator shares: validation, counts, and draws from an explicit ``torch.Generator``.

A generator is a small dataclass; calling it with a token grid ``(T', H', W')`` returns a bool mask of that shape,
True = masked (hidden from the encoder). Generators never touch the global random state (DESIGN.md, "Habits").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from maskvid.errors import ConfigError, InputError
from maskvid.rng import fresh_generator

Grid = tuple[int, int, int]


def uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def randint(g: torch.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high]``, both ends included."""
    return int(torch.randint(low, high + 1, (), generator=g))


def random_subset(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """Bool ``(n,)`` with exactly ``k`` True at uniformly random positions."""
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[torch.randperm(n, generator=g)[:k]] = True
    return chosen


def masked_count(ratio: float, n: int) -> int:
    """round(ratio·n), kept within [1, n-1] so that something is hidden and something stays visible."""
    return min(max(round(ratio * n), 1), n - 1)


def rectangle_for_ratio(ratio: float, height: int, width: int) -> tuple[int, int]:
    """(h, w) of a rectangle covering about ``ratio`` of an H'×W' slice, with the slice's aspect.

    MGM's w0 = h0 = √(γ·H'·W') for a square grid (14×14 at γ=0.75 → 12×12, 144 tokens); a non-square grid scales
    each side by √γ. A rectangle that would cover the whole slice loses a row or column.
    """
    scale = math.sqrt(ratio)
    h = min(max(round(scale * height), 1), height)
    w = min(max(round(scale * width), 1), width)
    if h * w == height * width > 1:
        h, w = (h - 1, w) if h > 1 and (h >= w or w == 1) else (h, w - 1)
    return h, w


@dataclass
class MaskStrategy:
    """Base of every strategy: holds ``ratio``, validates options on creation and the grid on each call."""

    name: ClassVar[str] = ""
    needs_motion: ClassVar[bool] = False
    ratio: float = 0.75

    def __post_init__(self) -> None:
        if not isinstance(self.ratio, (int, float)) or not 0.0 < float(self.ratio) < 1.0:
            raise ConfigError("mask.ratio", f"must be a number in (0, 1), got {self.ratio!r}")
        self.validate()

    def validate(self) -> None:
        """Strategy-specific option checks; raise :class:`ConfigError` naming ``mask.<option>``."""

    def options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __call__(
        self, grid: Grid, generator: torch.Generator | None = None, motion: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Bool ``(T', H', W')`` mask for ``grid``, True = masked.

        motion: ``(T', h, w)`` motion magnitude per temporal slice at any spatial resolution, NaN on slices
            without motion information (see :func:`maskvid.motion.slice_magnitude`); only guided strategies use it.
        """
        grid = check_grid(grid, self.name)
        if motion is not None:
            motion = check_motion(motion, grid)
        g = generator if generator is not None else fresh_generator()
        mask = self.make(grid, g, motion)
        assert mask.shape == grid and mask.dtype == torch.bool, (mask.shape, mask.dtype)
        return mask

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def check_slice(self, grid: Grid) -> None:
        """Strategies that mask within each temporal slice need a slice with at least two tokens."""
        if grid[1] * grid[2] < 2:
            raise ConfigError("mask.grid", f"{self.name} masks within a slice; needs H'·W' >= 2, got {grid}")


def check_grid(grid, strategy: str) -> Grid:
    try:
        t, h, w = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ConfigError("mask.grid", f"{strategy}: a grid is (T', H', W') of ints, got {grid!r}") from None
    if min(t, h, w) < 1 or t * h * w < 2:
        raise ConfigError("mask.grid", f"{strategy}: need at least 2 tokens with every side >= 1, got {grid!r}")
    return t, h, w


def check_motion(motion: torch.Tensor, grid: Grid) -> torch.Tensor:
    if not isinstance(motion, torch.Tensor) or motion.dim() != 3 or motion.shape[0] != grid[0]:
        shape = tuple(motion.shape) if isinstance(motion, torch.Tensor) else type(motion).__name__
        raise InputError("motion", f"expected (T'={grid[0]}, h, w) motion magnitudes, got {shape}")
    return motion.float()
