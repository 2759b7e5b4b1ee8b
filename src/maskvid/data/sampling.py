"""Which frames make a clip: dense with stride, TSN segments, evaluation views, VIMPAC clip pairs.

All samplers return display indices in ``[0, num_frames)``. A video shorter than a clip repeats its last frame
(VideoMAE pads the same way), so every clip has exactly ``clip_len`` frames. Randomness comes only from the
``torch.Generator`` passed in; without one the choice is the deterministic evaluation one (centre).
"""

from __future__ import annotations

import torch


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high]; the centre when no generator is given."""
    if high <= low:
        return low
    if generator is None:
        return (low + high) // 2
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def clamp(indices: list[int], num_frames: int) -> list[int]:
    """Indices past the end become the last frame (short videos repeat their last frame)."""
    return [min(max(i, 0), num_frames - 1) for i in indices]


def dense_indices(
    num_frames: int, clip_len: int, stride: int, generator: torch.Generator | None = None, start: int | None = None
) -> list[int]:
    """``clip_len`` frames ``stride`` apart from a random (or given, or centred) start (VideoMAE: 16 × 4)."""
    _check(num_frames, clip_len, stride)
    span = (clip_len - 1) * stride + 1
    if start is None:
        start = _randint(0, max(num_frames - span, 0), generator)
    return clamp([start + k * stride for k in range(clip_len)], num_frames)


def segment_indices(num_frames: int, clip_len: int, generator: torch.Generator | None = None) -> list[int]:
    """TSN: split the video into ``clip_len`` equal segments, one frame from each (random offset, or the middle)."""
    _check(num_frames, clip_len, 1)
    out = []
    for k in range(clip_len):
        lo = k * num_frames // clip_len
        hi = max((k + 1) * num_frames // clip_len - 1, lo)
        out.append(_randint(lo, hi, generator))
    return clamp(out, num_frames)


def view_starts(num_frames: int, clip_len: int, stride: int, num_clips: int) -> list[int]:
    """Starts of ``num_clips`` clips spread evenly over the video (multi-view evaluation, VideoMAE test protocol)."""
    _check(num_frames, clip_len, stride)
    span = (clip_len - 1) * stride + 1
    room = max(num_frames - span, 0)
    if num_clips == 1:
        return [room // 2]
    return [round(room * k / (num_clips - 1)) for k in range(num_clips)]


def multiview_indices(num_frames: int, clip_len: int, stride: int, num_clips: int) -> list[list[int]]:
    """Frame indices of each of ``num_clips`` evenly spread temporal views."""
    return [
        dense_indices(num_frames, clip_len, stride, start=s)
        for s in view_starts(num_frames, clip_len, stride, num_clips)
    ]


def pair_indices(
    num_frames: int, clip_len: int, stride: int, max_distance: int, generator: torch.Generator | None = None
) -> tuple[list[int], list[int]]:
    """Two clips of one video whose starts are at most ``max_distance`` frames apart (VIMPAC's positive pair)."""
    _check(num_frames, clip_len, stride)
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    span = (clip_len - 1) * stride + 1
    room = max(num_frames - span, 0)
    first = _randint(0, room, generator)
    second = _randint(max(first - max_distance, 0), min(first + max_distance, room), generator)
    return dense_indices(num_frames, clip_len, stride, start=first), dense_indices(
        num_frames, clip_len, stride, start=second
    )


def spatial_offsets(height: int, width: int, crop: int, num_crops: int) -> list[tuple[int, int]]:
    """``(top, left)`` of ``num_crops`` square crops spread along the longer side (1 → centre, 3 → both ends too)."""
    if crop > min(height, width):
        raise ValueError(f"crop {crop} larger than the frame {height}x{width}")
    along_width = width >= height
    room = (width if along_width else height) - crop
    across = ((height if along_width else width) - crop) // 2
    positions = [room // 2] if num_crops == 1 else [round(room * k / (num_crops - 1)) for k in range(num_crops)]
    return [(across, p) if along_width else (p, across) for p in positions]


def _check(num_frames: int, clip_len: int, stride: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {clip_len} and {stride}")
