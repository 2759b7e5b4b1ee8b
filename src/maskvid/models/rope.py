"""3D rotary position embedding (RoPE over time, height and width; as in V-JEPA 2): position enters attention as a
rotation of each query and key, so that their dot product depends on the two tokens' grid offset, not on where
they sit.

Why maskvid has it: with an additive position table a small MAE learns late to fetch a masked token's content
from the visible token that holds it — on a clip whose frames are all one texture, a plain 64×1 transformer with a
3D sincos table still predicted zero after 300 steps, with 3D RoPE it left that plateau at ~150 (docs/demo.md).

Each head's ``head_dim / 2`` rotation pairs are split among the three axes (time gets a third, height and width
share the rest); the pairs of one axis turn at frequencies ``base^(-i/n)``, ``i < n``, times the token's index on
that axis. Prefix tokens ([CLS]) are not rotated.
"""

from __future__ import annotations

import functools

import torch

from maskvid.models.tokens import grid_positions

ROPE_BASE = 100.0  # grids are tens of tokens a side, not thousands of text positions: 1 to ~1/base rad a token


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """How many rotation pairs each axis (t, h, w) gets out of a head's ``head_dim / 2``."""
    pairs = head_dim // 2
    time = pairs // 3
    height = (pairs - time) // 2
    return time, height, pairs - time - height


@functools.lru_cache(maxsize=32)
def _angles(grid: tuple[int, int, int], head_dim: int, base: float, device: torch.device) -> torch.Tensor:
    """``(N, head_dim/2)`` rotation angle of every pair at every grid position (``(t h w)`` order)."""
    coords = grid_positions(grid).double()  # (N, 3)
    parts = []
    for axis, n in enumerate(axis_pairs(head_dim)):
        frequency = base ** (-torch.arange(n, dtype=torch.float64) / max(n, 1))
        parts.append(coords[:, axis, None] * frequency)
    return torch.cat(parts, 1).float().to(device)


def rotations(grid: tuple[int, int, int], head_dim: int, ids: torch.Tensor | None, prefix: int,
              device: torch.device, base: float = ROPE_BASE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``(B or 1, 1, prefix + K, head_dim/2)``, for tokens at positions ``ids`` ``(B, K)`` of
    ``grid`` (None: all N in order) after ``prefix`` unrotated tokens."""
    angles = _angles(tuple(grid), head_dim, base, device)
    angles = angles[None] if ids is None else angles[ids]  # (1, N, pairs) or (B, K, pairs)
    if prefix:
        angles = torch.cat([angles.new_zeros(angles.shape[0], prefix, angles.shape[2]), angles], 1)
    angles = angles[:, None]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn each channel pair ``(2i, 2i+1)`` of ``x`` ``(B, heads, N, head_dim)`` by its angle."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2).to(x.dtype)
