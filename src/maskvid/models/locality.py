"""The decoder's locality prior: an attention bias −(s_t·|Δt| + s_h·|Δh| + s_w·|Δw|) per head, with slopes learned
per block, head and grid axis and started ALiBi-style (Press et al. 2022): ``slope`` for the first head, halved for
each next one, so some heads start sharply local and others broad.

Why: a masked slot of an MAE decoder holds nothing but its position. At initialization attention spreads evenly
over all N tokens, and an even mix of patches whose normalized targets average zero predicts nothing, so neither
the route (which visible tokens to read) nor the value path (what to make of them) gets a gradient from the other:
the micro MAE sat on the trivial loss for hundreds of steps, even on smooth textures a neighbour predicts well
(``docs/demo.md``). Started local, a slot reads its neighbours from the first step, and on such textures the loss
leaves its trivial value within ~100 steps (``maskvid check-routing --content smooth``).
Off by default: VideoMAE's decoder has no such bias, and Hugging Face's format has no place for one.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from maskvid.models.tokens import grid_positions


@functools.lru_cache(maxsize=16)
def grid_distances(grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """``(N, N, 3)`` offsets |Δt|, |Δh|, |Δw| between every pair of tokens of ``grid`` in ``(t h w)`` order."""
    position = grid_positions(grid).float().to(device)  # (N, 3)
    return (position[:, None] - position[None]).abs()


class LocalityBias(nn.Module):
    """``slopes``: ``(depth, heads, 3)``; :meth:`forward` gives block ``i``'s additive bias ``(heads, N, N)``."""

    def __init__(self, depth: int, heads: int, slope: float):
        super().__init__()
        start = slope * 2.0 ** -torch.arange(heads, dtype=torch.float32)  # ALiBi's geometric slopes, one per head
        self.slopes = nn.Parameter(start[None, :, None].repeat(depth, 1, 3))

    def forward(self, block: int, grid: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
        distance = grid_distances(tuple(grid), like.device)
        return -torch.einsum("nmk,hk->hnm", distance, self.slopes[block].float()).to(like.dtype)
