"""Mask quality after MGM's saliency argument: how much more motion a mask hides than it leaves visible."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from maskvid.errors import InputError


def token_motion(motion: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Mean motion magnitude per token: ``(T', h, w)`` at any resolution → ``(T', H', W')`` (NaN slices stay NaN)."""
    if motion.dim() != 3 or motion.shape[0] != grid[0]:
        raise InputError("motion", f"expected (T'={grid[0]}, h, w) magnitudes, got {tuple(motion.shape)}")
    return F.adaptive_avg_pool2d(motion.float()[:, None], grid[1:])[:, 0]


def motion_inside_outside(mask: torch.Tensor, motion: torch.Tensor) -> tuple[float, float]:
    """Mean motion magnitude of the masked tokens and of the visible ones (NaN where a side is empty); slices
    without motion information are left out."""
    if mask.dim() != 3 or mask.dtype != torch.bool:
        raise InputError("mask", f"expected a bool (T', H', W') mask, got {mask.dtype} {tuple(mask.shape)}")
    per_token = token_motion(motion, tuple(mask.shape))
    usable = torch.isfinite(per_token).flatten(1).all(1)
    values, hidden = per_token[usable], mask[usable]
    inside = float(values[hidden].mean()) if bool(hidden.any()) else math.nan
    outside = float(values[~hidden].mean()) if bool((~hidden).any()) else math.nan
    return inside, outside


def motion_score(mask: torch.Tensor, motion: torch.Tensor) -> float:
    """Mean motion magnitude inside the masked tokens ÷ mean outside them.

    Args:
        mask: bool ``(T', H', W')``, True = masked.
        motion: ``(T', h, w)`` magnitudes, NaN on slices without motion information (they are left out).
    Returns:
        > 1 when the mask hides the moving parts (MGM's goal), about 1 for motion-blind masks; ``inf`` when
        nothing visible moves but something hidden does; ``nan`` when there is no motion to judge by.
    """
    inside, outside = motion_inside_outside(mask, motion)
    if math.isnan(inside) or math.isnan(outside):
        return float("nan")
    if outside == 0.0:
        return float("inf") if inside > 0 else float("nan")
    return inside / outside
