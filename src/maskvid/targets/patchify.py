"""One ``patchify`` for every per-token target, in VideoMAE's exact order."""

from __future__ import annotations

import torch
from einops import rearrange

from maskvid.constants import IMAGENET_MEAN, IMAGENET_STD
from maskvid.models.tokens import token_grid


def patchify(video: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C, T, H, W)`` → ``(B, N, t·p·p, C)``: tokens in ``(t h w)`` order, each token's pixels in ``(t p p)``
    order with channels last — VideoMAE's (and Hugging Face's) label layout before flattening to ``t·p·p·C``."""
    t, p, q = patch
    token_grid(patch, *video.shape[2:])  # the tubelet divides the clip
    return rearrange(video, "b c (n t) (h p) (w q) -> b (n h w) (t p q) c", t=t, p=p, q=q)


def frames_of(values: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """Per-token values ``(N, t·p·p·C)`` on a token ``grid`` → pictures ``(T, C, H, W)`` (patchify's inverse)."""
    t, p, q = patch
    return rearrange(values, "(n h w) (t p q c) -> (n t) c (h p) (w q)", h=grid[1], w=grid[2], t=t, p=p, q=q)


def unnormalize(video: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Undo the data pipeline's normalization: back to [0, 1] pixels."""
    shape = (1, -1, 1, 1, 1)
    return video * torch.tensor(std, dtype=video.dtype, device=video.device).view(shape) + torch.tensor(
        mean, dtype=video.dtype, device=video.device
    ).view(shape)
