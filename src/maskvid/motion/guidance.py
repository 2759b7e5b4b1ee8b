"""Per-pixel motion fields → what mask generators read: one magnitude map per temporal slice of tubelets."""

from __future__ import annotations

import torch

from maskvid.errors import ConfigError, InputError


def slice_magnitude(field: torch.Tensor, valid: torch.Tensor | None, tubelet: int) -> torch.Tensor:
    """Mean motion magnitude of each temporal slice, at the field's own resolution.

    Args:
        field: ``(T, h, w, 2)`` displacement per frame (codec vectors or flow, after crop/flip).
        valid: ``(T,)`` bool, False for frames without motion (I-frames, the first flow frame); None: all valid.
        tubelet: frames per temporal slice (the model's tubelet depth, 2 for VideoMAE).
    Returns:
        ``(T / tubelet, h, w)`` float: |v| averaged over the slice's valid frames; NaN where a slice has none.
    """
    if field.dim() != 4 or field.shape[-1] != 2:
        raise InputError("field", f"expected a (T, h, w, 2) field, got {tuple(field.shape)}")
    frames = field.shape[0]
    if tubelet < 1 or frames % tubelet:
        raise ConfigError("model.tubelet", f"{tubelet} frames per slice do not divide the clip's {frames} frames")
    if valid is None:
        valid = torch.ones(frames, dtype=torch.bool)
    magnitude = torch.linalg.vector_norm(field.float(), dim=-1)  # (T, h, w)
    weight = valid.to(magnitude).view(-1, 1, 1)
    total = (magnitude * weight).unflatten(0, (-1, tubelet)).sum(1)  # (T', h, w)
    count = weight.unflatten(0, (-1, tubelet)).sum(1)  # (T', 1, 1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))
