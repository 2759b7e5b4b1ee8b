"""Dense trajectories (MME §3.3, eq. 2, 4, 6, 7; after Wang et al.'s DT): points on a regular grid in each patch,
tracked frame by frame through median-filtered optical flow.

    points = grid_points((14, 14), patch=16, k=4)             # (196·4, 2) x, y in pixels
    track = track_points(flows, points)                        # flows (L, H, W, 2) forward, frame t → t+1
    track.deltas                                               # (L, P, 2): Δp_t = p_{t+1} − p_t (eq. 4)
    track.valid                                                # (P,): False once a point leaves the frame (eq. 7)

Each step is eq. 6: ``p_{t+1} = p_t + (M * ω_t)(p_t)`` with M the 3×3 median filter, the filtered flow read at the
sub-pixel position by bilinear interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from maskvid.errors import ConfigError, InputError


@dataclass
class Trajectories:
    """positions: ``(L + 1, P, 2)`` x, y of every point at every step; valid: ``(P,)``; steps: ``(L, P, 2)``
    the camera-compensated movements when the camera was removed, or None."""

    positions: torch.Tensor
    valid: torch.Tensor
    steps: torch.Tensor | None = None

    @property
    def deltas(self) -> torch.Tensor:
        """``(L, P, 2)``: the relative movement between adjacent points, MME's position features (eq. 4) — the
        camera-compensated movement when the track was given one."""
        return self.steps if self.steps is not None else self.positions[1:] - self.positions[:-1]


def grid_points(grid: tuple[int, int], patch: int, k: int = 4) -> torch.Tensor:
    """``(H'·W'·k, 2)`` float x, y: ``k`` points (a square number) spread evenly over each ``patch×patch`` cell of a
    ``H'×W'`` token grid, patches in raster order, the k points of a patch together (row-major inside it)."""
    side = math.isqrt(k)
    if k < 1 or side * side != k:
        raise ConfigError("target.k", f"points per patch must be a square number (1, 4, 9, 16, ...), got {k}")
    offsets = (torch.arange(side, dtype=torch.float32) + 0.5) * patch / side  # cell centres of a side×side split
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    inner = torch.stack([ox.flatten(), oy.flatten()], -1)  # (k, 2)
    rows, cols = grid
    py, px = torch.meshgrid(torch.arange(rows) * patch, torch.arange(cols) * patch, indexing="ij")
    corners = torch.stack([px.flatten(), py.flatten()], -1).float()  # (H'W', 2)
    return (corners[:, None, :] + inner[None]).reshape(-1, 2) - 0.5  # pixel centres are at integer coordinates


def track_points(flows: torch.Tensor, points: torch.Tensor, median: bool = True,
                 homographies: list | None = None) -> Trajectories:
    """Follow ``points`` ``(P, 2)`` (x, y) through forward ``flows`` ``(L, H, W, 2)`` (flow t maps frame t to t+1).

    With ``homographies`` (one ``(3, 3)`` or None per step), ``flows`` are camera-compensated: flow t was computed
    between frame t and frame t+1 warped onto it by homography t (frame t+1's pixels → frame t's). The step a
    point records is the compensated flow at it (its own motion, :attr:`Trajectories.deltas`), and the point moves
    to where that lands in frame t+1 as filmed, ``H⁻¹(p + w'(p))`` — as improved dense trajectories track in the
    image and describe with the warped flow, so a point stays on its object however the camera moved.
    A point whose position leaves the frame at any step is invalid for the whole trajectory (MME eq. 7); it keeps
    being tracked at the clamped border so that shapes stay regular.
    """
    if flows.dim() != 4 or flows.shape[-1] != 2:
        raise InputError("flows", f"expected (L, H, W, 2) forward flows, got {tuple(flows.shape)}")
    if homographies is not None and len(homographies) != flows.shape[0]:
        raise InputError("homographies", f"expected one per flow ({flows.shape[0]}), got {len(homographies)}")
    if points.dim() != 2 or points.shape[-1] != 2:
        raise InputError("points", f"expected (P, 2) x, y positions, got {tuple(points.shape)}")
    steps, height, width = flows.shape[:3]
    position = points.double().numpy().copy()
    inside = _inside(position, height, width)
    out, moves = [position.copy()], []
    for t in range(steps):
        step = _bilinear(_filtered(flows[t], median), position)
        matrix = homographies[t] if homographies is not None else None
        if homographies is not None:
            moves.append(step)
        landed = position + step
        if matrix is not None:
            landed = cv2.perspectiveTransform(landed[:, None], np.linalg.inv(matrix))[:, 0]
        position = landed
        inside &= _inside(position, height, width)
        out.append(position.copy())
    positions = torch.from_numpy(np.stack(out)).float()
    recorded = torch.from_numpy(np.stack(moves)).float() if moves else None
    return Trajectories(positions, torch.from_numpy(inside), recorded)


def _filtered(flow: torch.Tensor, median: bool) -> np.ndarray:
    flow = flow.float().numpy()
    return median_filtered(flow) if median else flow


def median_filtered(flow: np.ndarray) -> np.ndarray:
    """eq. 6's M: a 3×3 median per component of ``(H, W, 2)``, robust to flow outliers at motion boundaries."""
    return np.stack([cv2.medianBlur(np.ascontiguousarray(flow[..., c]), 3) for c in range(2)], -1)


def _inside(position: np.ndarray, height: int, width: int) -> np.ndarray:
    x, y = position[:, 0], position[:, 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def _bilinear(field: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``field`` ``(H, W, C)`` at sub-pixel ``position`` ``(P, 2)`` x, y (clamped to the frame)."""
    height, width = field.shape[:2]
    x = np.clip(position[:, 0], 0, width - 1)
    y = np.clip(position[:, 1], 0, height - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = field[y0, x0] * (1 - fx) + field[y0, x1] * fx
    bottom = field[y1, x0] * (1 - fx) + field[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
