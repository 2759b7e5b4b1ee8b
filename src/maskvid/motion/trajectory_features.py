"""MME's motion trajectory of a clip, made in the data-loader worker from the raw frames (MME §3.3, App. A–B).

For each input tubelet ``k`` of the clip, ``K`` grid points per patch start at the tubelet's first raw frame and are
tracked through the ``L`` raw frames after it (``flow_stride`` apart: 1 is MME's interpolation, Tab. 6) by the
3×3 median-filtered flow (eq. 6). A point moves with the image flow, so it stays on its object in every frame,
and records the camera-compensated flow at its position as its Δp (as improved dense trajectories do).

Flow is computed on the decoded frames; the points live in the model's input pixels: they start on the token grid
of the cropped, resized clip, are mapped into the decoded frame through the clip's crop box, tracked there, and
mapped back (mirrored if the clip is flipped) — so crops and flips move trajectories exactly as the pixels.
Along each trajectory a 9-bin HOG of the point's neighbourhood (a ``patch/√K`` square, MME's 8×8 cell) is read
at steps ``0 … L-1`` (eq. 5), on the same crop.

    spec = TrajectorySpec(k=4, length=6)
    features, valid = clip_trajectories(frames, starts, spec, box, flip, size=224, patch=16)
    # features (T'·H'·W', K, L, 2 + 9): Δp (eq. 4, input pixels) then HOG; valid (T'·H'·W', K) (eq. 7)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from maskvid.errors import ConfigError, InputError
from maskvid.motion.camera import DETECTORS
from maskvid.motion.flow import FLOW_BOUND, FLOW_METHODS, PRESETS, FlowEstimator
from maskvid.motion.hog_cells import integral_hog, window_histograms
from maskvid.motion.raft import check_raft_weights
from maskvid.motion.trajectories import grid_points, median_filtered, track_points

Box = tuple[int, int, int, int]  # top, left, height, width of the crop in decoded-frame pixels
PairFlow = tuple[np.ndarray, "np.ndarray | None"]  # float16 camera-compensated flow (H, W, 2), homography or None


@dataclass(frozen=True)
class TrajectorySpec:
    """What the worker computes: ``k`` points per patch (a square number), ``length`` tracked raw frames (MME: 6;
    Tab. 7a tries 4 and 8), raw frames ``flow_stride`` apart (1: interpolation; the input stride: none),
    ``camera`` removal with ``klt``, ``orb`` or ``sift`` matches (None: off), flow ``method`` (``dis``,
    ``farneback``, ``raft_small``/``raft_large`` from ``raft_weights``), ``preset``, ``bound``, HOG ``bins``;
    ``hog=False`` leaves the HOG out (a position-only target, Tab. 5 "w/o shape"; a quarter or more of the
    worker's time on the demo's clips)."""

    k: int = 4
    length: int = 6
    flow_stride: int = 1
    camera: str | None = "klt"
    method: str = "dis"
    preset: str = "medium"
    bound: float = FLOW_BOUND
    bins: int = 9
    raft_weights: str | None = None
    hog: bool = True

    def __post_init__(self):
        side = math.isqrt(self.k) if isinstance(self.k, int) and self.k > 0 else 0
        if side * side != self.k:
            raise ConfigError("target.k", f"points per patch must be a square number (1, 4, 9, ...), got {self.k}")
        for key in ("length", "flow_stride", "bins"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"target.{key}", f"must be an integer >= 1, got {value!r}")
        if self.camera not in (None, *DETECTORS):
            raise ConfigError("target.camera", f"{self.camera!r} not in {DETECTORS} or null")
        if self.method not in FLOW_METHODS:
            raise ConfigError("target.flow", f"{self.method!r} not in {FLOW_METHODS}")
        if self.preset not in PRESETS:
            raise ConfigError("target.flow_preset", f"{self.preset!r} not in {tuple(PRESETS)}")
        if not self.bound > 0:
            raise ConfigError("target.bound", f"must be > 0, got {self.bound}")
        if not isinstance(self.hog, bool):
            raise ConfigError("target.shape", f"must be true or false, got {self.hog!r}")
        check_raft_weights(self.method, self.raft_weights)

    @property
    def channels(self) -> int:
        """Entries per point and step: Δx, Δy, then the HOG bins (if made)."""
        return 2 + (self.bins if self.hog else 0)

    def raw_frames(self, start: int) -> list[int]:
        """The raw frames a trajectory starting at ``start`` is tracked through (``length + 1`` of them)."""
        return [start + j * self.flow_stride for j in range(self.length + 1)]

    def estimator(self, device: str = "cpu") -> FlowEstimator:
        return FlowEstimator(self.method, self.preset, self.bound, self.camera, self.raft_weights, device)

    @property
    def flow_key(self) -> tuple:
        """What the flows depend on (a flow cache entry is valid for exactly these)."""
        weights = os.path.basename(self.raft_weights) if self.raft_weights else None
        return (self.method, self.preset, float(self.bound), self.camera, self.flow_stride, weights)


def pair_flow(estimate: FlowEstimator, before: np.ndarray, after: np.ndarray) -> PairFlow:
    """The compensated flow between two grayscale frames, kept at float16 (±20 px in steps of ≤ 1/64 px) — the
    precision a flow cache stores, so that cached and online trajectories are the same numbers."""
    compensated, matrix = estimate.compensated(before, after)
    return compensated.astype(np.float16), matrix


def clip_trajectories(frames: Mapping[int, np.ndarray], starts: list[int], spec: TrajectorySpec, box: Box,
                      flip: bool, size: int, patch: int,
                      flows: Mapping[tuple[int, int], PairFlow] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Trajectory features of one clip.

    Args:
        frames: raw frame index → uint8 ``(H, W, 3)`` RGB decoded frame; must hold ``spec.raw_frames(s)`` for
            every start (frames past the video's end may repeat its last frame).
        starts: the raw frame of each input tubelet's first frame, in order (``T'`` of them).
        box: the clip's crop ``(top, left, height, width)`` in decoded pixels (integers, as the video's crop);
            flip: whether the clip is mirrored; size: the model's input side; patch: its spatial patch.
        flows: ``(a, b)`` raw frame pair → :func:`pair_flow` from a cache; pairs it lacks are computed here.
    Returns:
        ``(T'·H'·W', K, L, spec.channels)`` float32 (tokens in ``(t h w)`` order, the K points of a patch row-major)
        and ``(T'·H'·W', K)`` bool validity.
    """
    if size % patch:
        raise ConfigError("data.size", f"{size} is not a multiple of the patch {patch}")
    missing = [i for s in starts for i in spec.raw_frames(s) if i not in frames]
    if missing:
        raise InputError("frames", f"raw frame {missing[0]} is needed for the trajectories but was not decoded")
    grid = (size // patch, size // patch)
    points = grid_points(grid, patch, spec.k)  # (P, 2) in input pixels
    cell = patch // math.isqrt(spec.k)
    estimate = None
    gray: dict[int, np.ndarray] = {}  # made on first use: flows from a cache and no HOG need none

    def gray_of(i: int) -> np.ndarray:
        if i not in gray:
            gray[i] = cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2GRAY)
        return gray[i]

    known = dict(flows or {})
    tracking: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = {}  # filtered flow, homography
    histograms: dict[int, np.ndarray] = {}
    features, valid = [], []
    for start in starts:
        raw = spec.raw_frames(start)
        for a, b in zip(raw[:-1], raw[1:], strict=True):
            if (a, b) not in tracking:
                if (a, b) not in known:
                    estimate = estimate or spec.estimator()
                    known[a, b] = pair_flow(estimate, gray_of(a), gray_of(b))
                compensated, matrix = known[a, b]
                tracking[a, b] = median_filtered(compensated.astype(np.float32)), matrix  # eq. 6's M, once a pair
        pairs = [tracking[a, b] for a, b in zip(raw[:-1], raw[1:], strict=True)]
        field = torch.from_numpy(np.stack([f for f, _ in pairs]))
        matrices = [m for _, m in pairs] if spec.camera else None
        track = track_points(field, _to_decoded(points, box, size, flip), median=False, homographies=matrices)
        positions = _to_input(track.positions, box, size, flip)  # (L + 1, P, 2)
        deltas = track.deltas * torch.tensor([size / box[3], size / box[2]])  # (L, P, 2) in input pixels
        if flip:
            deltas[..., 0] = -deltas[..., 0]
        per_point = deltas  # (L, P, 2), then (L, P, 2 + bins) with the HOG read along the trajectory
        if spec.hog:
            hog = []
            for j, index in enumerate(raw[:-1]):
                if index not in histograms:
                    histograms[index] = integral_hog(gray_of(index), box, flip, size, spec.bins)
                hog.append(window_histograms(histograms[index], positions[j].numpy(), cell))
            per_point = torch.cat([deltas, torch.from_numpy(np.stack(hog))], -1)
        features.append(per_point.permute(1, 0, 2).reshape(-1, spec.k, spec.length, spec.channels))
        valid.append(track.valid.reshape(-1, spec.k))
    return torch.cat(features), torch.cat(valid)


def _to_decoded(points: torch.Tensor, box: Box, size: int, flip: bool) -> torch.Tensor:
    """Input pixels → decoded-frame pixels through the crop box (pixel centres at integers on both sides)."""
    top, left, height, width = box
    if flip:
        points = points.clone()
        points[:, 0] = size - 1 - points[:, 0]
    scale = torch.tensor([width / size, height / size])
    return (points + 0.5) * scale + torch.tensor([left, top], dtype=torch.float32) - 0.5


def _to_input(positions: torch.Tensor, box: Box, size: int, flip: bool) -> torch.Tensor:
    top, left, height, width = box
    scale = torch.tensor([size / width, size / height])
    out = (positions + 0.5 - torch.tensor([left, top], dtype=torch.float32)) * scale - 0.5
    if flip:
        out[..., 0] = size - 1 - out[..., 0]
    return out
