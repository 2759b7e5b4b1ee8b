"""MAR's running masks (Qing et al., §III-B, Fig. 3–4, Tables II–IV): masks that move on each temporal slice so
that every position is seen in turn.

A running cell of r×q tokens holds a queue of r·q values, k = ratio·r·q of them masked, read in raster order.
Its states A, B, C, ... are the queue rotated by 0, 1, 2, ... places (for 2×2 at 50%: top row, diagonal,
bottom row, anti-diagonal), and each temporal slice moves every cell one state on — as MAR's code does. Over any
r·q consecutive slices each position is masked exactly k times. ``running_uniform``, ``running_random`` and
``running_block`` are the same rotation applied to one cell spanning the whole slice, starting from an evenly
interleaved, a random, or a rectangular pattern (Fig. 3 a–c); MAR notes that a whole-slice cell with a uniform
start is exactly uniform running masking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskvid.errors import ConfigError
from maskvid.masking.base import Grid, MaskStrategy, masked_count, randint, random_subset, rectangle_for_ratio

SPATIAL = ("repeat", "random")
TEMPORAL = ("fixed", "shuffle")


def cell_states(cell: tuple[int, int], masked: int) -> torch.Tensor:
    """Bool ``(r·q, r, q)``: state s is the queue [1]*masked + [0]*rest rotated by s, laid out in raster order."""
    r, q = cell
    queue = torch.arange(r * q) < masked
    return torch.stack([torch.roll(queue, -s).view(r, q) for s in range(r * q)])


@dataclass
class RunningCellMask(MaskStrategy):
    """Cell running masking. ``spatial``: ``repeat`` — all cells share one random start state (MAR's default,
    Fig. 4b) — or ``random`` — each cell its own (Fig. 4a). ``temporal``: ``fixed`` — A→B→C→D — or ``shuffle`` —
    the r·q states in a random order per clip, then cycled (Table III a). ``start``: a fixed start state (0 = A)
    for inference, which also makes the mask independent of the generator.

    ``ratio`` must be a multiple of 1/(r·q) strictly between 0 and 1 (25/50/75% for 2×2), and the grid's height and
    width multiples of the cell, so the count is exactly ratio·N in every clip.
    """

    name = "running_cell"
    ratio: float = 0.5
    cell: tuple[int, int] = (2, 2)
    spatial: str = "repeat"
    temporal: str = "shuffle"
    start: int | None = None

    def validate(self) -> None:
        self.cell = tuple(int(v) for v in self.cell)
        if len(self.cell) != 2 or min(self.cell) < 1 or self.cell[0] * self.cell[1] < 2:
            raise ConfigError("mask.cell", f"an (r, q) cell of at least 2 tokens, got {self.cell}")
        size = self.cell[0] * self.cell[1]
        if abs(self.ratio * size - round(self.ratio * size)) > 1e-6:
            allowed = ", ".join(f"{k / size:g}" for k in range(1, size))
            raise ConfigError("mask.ratio", f"{self.ratio} is not reachable with a {self.cell} cell; use {allowed}")
        if self.spatial not in SPATIAL:
            raise ConfigError("mask.spatial", f"{self.spatial!r} not in {SPATIAL}")
        if self.temporal not in TEMPORAL:
            raise ConfigError("mask.temporal", f"{self.temporal!r} not in {TEMPORAL}")
        if self.start is not None and not 0 <= self.start < size:
            raise ConfigError("mask.start", f"a state in [0, {size}), got {self.start}")

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        t, height, width = grid
        r, q = self.cell
        if height % r or width % q:
            raise ConfigError("mask.cell", f"a {r}×{q} cell must tile the grid's H'×W'; got grid {grid}")
        size = r * q
        states = cell_states(self.cell, round(self.ratio * size))
        rows, cols = height // r, width // q
        if self.start is not None:
            offsets, order = torch.full((rows, cols), self.start), torch.arange(size)
        else:
            if self.spatial == "repeat":
                offsets = torch.full((rows, cols), randint(g, 0, size - 1))
            else:
                offsets = torch.randint(size, (rows, cols), generator=g)
            order = torch.randperm(size, generator=g) if self.temporal == "shuffle" else torch.arange(size)
        step = torch.arange(t).view(t, 1, 1)
        index = order[(offsets[None] + step) % size]  # (T', rows, cols) state of each cell on each slice
        cells = states[index]  # (T', rows, cols, r, q)
        return cells.permute(0, 1, 3, 2, 4).reshape(t, height, width)


def run_pattern(first: torch.Tensor, t: int) -> torch.Tensor:
    """(T', H', W'): slice i is ``first`` with its raster-order queue rotated by i (a whole-slice running cell)."""
    flat = first.flatten()
    return torch.stack([torch.roll(flat, -i).view(first.shape) for i in range(t)])


class _WholeSliceRunning(MaskStrategy):
    """A whole-slice running cell: subclasses draw the first slice, every later slice is it rolled by one more."""

    def first_slice(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        self.check_slice(grid)
        t, height, width = grid
        return run_pattern(self.first_slice(height, width, g), t)


@dataclass
class RunningUniformMask(_WholeSliceRunning):
    """Uniform running masking (MAR Fig. 3c): round(ratio·H'·W') positions evenly interleaved in raster order."""

    name = "running_uniform"
    ratio: float = 0.5

    def first_slice(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        n, k = height * width, masked_count(self.ratio, height * width)
        position = torch.arange(n)
        return ((position + 1) * k // n > position * k // n).view(height, width)  # k of n, evenly spaced


@dataclass
class RunningRandomMask(_WholeSliceRunning):
    """Random running masking (MAR Fig. 3a): a random first-slice pattern of round(ratio·H'·W') tokens, running."""

    name = "running_random"
    ratio: float = 0.5

    def first_slice(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        return random_subset(height * width, masked_count(self.ratio, height * width), g).view(height, width)


@dataclass
class RunningBlockMask(_WholeSliceRunning):
    """Block running masking (MAR Fig. 3b): one rectangle of about ratio·H'·W' tokens at a random place, running."""

    name = "running_block"
    ratio: float = 0.5

    def first_slice(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        h, w = rectangle_for_ratio(self.ratio, height, width)
        top, left = randint(g, 0, height - h), randint(g, 0, width - w)
        first = torch.zeros(height, width, dtype=torch.bool)
        first[top : top + h, left : left + w] = True
        return first
