"""Optical flow (OpenCV DIS) as a motion field in the codec field's layout, for videos without usable vectors.

MGM's Table 4b compares motion-vector guidance with optical-flow guidance; this is the flow side, shaped like
:func:`maskvid.data.decode_clip`'s motion field so that one code path serves both.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from maskvid.errors import ConfigError, InputError

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def dis_flow(
    frames: torch.Tensor, cell: int = 4, frame_distance: float = 1.0, preset: str = "medium"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Motion of each frame relative to the one before it, on frame t's own pixels (like a codec vector).

    Args:
        frames: uint8 ``(T, H, W, 3)`` RGB.
        cell: output cell in pixels (4 matches the codec field): the flow is area-averaged to cell×cell blocks.
        frame_distance: source frames between consecutive clip frames (the sampling stride); flow is divided by
            it so magnitudes read in pixels per source frame, as codec vectors do.
        preset: DIS preset: ``ultrafast`` (~6 ms per 16×224² clip on one core), ``fast`` (~14 ms) or ``medium``
            (default, ~46 ms) — the faster two under-read motion of periodic textures by half or more.
    Returns:
        ``(field, valid)``: float ``(T, ceil(H/cell), ceil(W/cell), 2)`` and bool ``(T,)`` — frame 0 has no
        predecessor and is invalid (zero field), as an I-frame is.
    """
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ConfigError("frames", f"expected uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if preset not in PRESETS:
        raise ConfigError("data.flow_preset", f"{preset!r} not in {tuple(PRESETS)}")
    count, height, width = frames.shape[:3]
    rows, cols = -(-height // cell), -(-width // cell)
    field = np.zeros((count, rows, cols, 2), np.float32)
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames.numpy()]
    for t in range(1, count):
        backward = dis.calc(gray[t], gray[t - 1], None)  # on frame t's pixels: where each came from
        field[t] = cv2.resize(backward, (cols, rows), interpolation=cv2.INTER_AREA) * (-1.0 / frame_distance)
    valid = torch.ones(count, dtype=torch.bool)
    valid[0] = False
    return torch.from_numpy(field), valid


FLOW_BOUND = 20.0  # MME App. A (denseflow's bound): flow components are clipped to ±20 pixels


def forward_flow(frames: torch.Tensor, method: str = "dis", preset: str = "medium",
                 bound: float | None = FLOW_BOUND) -> torch.Tensor:
    """Full-resolution forward flow between consecutive frames: ``(T - 1, H, W, 2)``, flow t maps frame t to t+1.

    Args:
        frames: uint8 ``(T, H, W, 3)`` RGB (for MME's interpolation: every raw frame, stride 1).
        method: ``dis`` (OpenCV DIS, ``preset``) or ``farneback`` (OpenCV Farneback).
        bound: each component is clipped to ``[-bound, bound]`` pixels (None: no clipping).
    """
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8 or frames.shape[0] < 2:
        raise InputError("frames", f"expected uint8 (T >= 2, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if method not in ("dis", "farneback"):
        raise ConfigError("data.flow_method", f"{method!r} not in dis, farneback")
    if preset not in PRESETS:
        raise ConfigError("data.flow_preset", f"{preset!r} not in {tuple(PRESETS)}")
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames.numpy()]
    dis = cv2.DISOpticalFlow_create(PRESETS[preset]) if method == "dis" else None
    flows = []
    for before, after in zip(gray[:-1], gray[1:], strict=True):
        if dis is not None:
            flow = dis.calc(before, after, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        flows.append(flow)
    out = torch.from_numpy(np.stack(flows))
    return out.clamp(-bound, bound) if bound is not None else out
