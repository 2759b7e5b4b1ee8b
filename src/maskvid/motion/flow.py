"""Optical flow with OpenCV (DIS presets, Farneback) on CPU, in data-loader workers.

- :func:`dis_flow`: a coarse motion field in the codec field's layout, for guided masks on videos without usable
  vectors (MGM Tab. 4b compares the two) — one code path serves both.
- :func:`forward_flow` / :class:`FlowEstimator`: full-resolution forward flow, clipped at ±20 px, optionally with
  the camera's motion removed (MME App. A), for dense trajectories.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from maskvid.errors import ConfigError, InputError
from maskvid.motion.camera import CameraMotion, warp_onto
from maskvid.motion.raft import RAFT_MODELS, RaftFlow

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
FLOW_METHODS = ("dis", "farneback", *RAFT_MODELS)


class FlowEstimator:
    """Forward flow between two grayscale frames, optionally with the camera's motion removed first
    (:mod:`maskvid.motion.camera`); one DIS instance and one keypoint detector reused across a clip.

    method: ``dis`` (OpenCV DIS, ``preset``), ``farneback``, or ``raft_small``/``raft_large`` (torchvision RAFT
    from the local ``raft_weights`` file, on ``device``); bound: each component clipped to ±bound pixels (None: no
    clipping); camera: ``klt``, ``orb`` or ``sift`` to remove camera motion, None to keep it.
    """

    def __init__(self, method: str = "dis", preset: str = "medium", bound: float | None = FLOW_BOUND,
                 camera: str | None = None, raft_weights: str | None = None, device: str = "cpu"):
        if method not in FLOW_METHODS:
            raise ConfigError("data.flow_method", f"{method!r} not in {', '.join(FLOW_METHODS)}")
        if preset not in PRESETS:
            raise ConfigError("data.flow_preset", f"{preset!r} not in {tuple(PRESETS)}")
        self.dis = cv2.DISOpticalFlow_create(PRESETS[preset]) if method == "dis" else None
        self.raft = RaftFlow(method, raft_weights, device) if method in RAFT_MODELS else None
        self.camera = CameraMotion(camera) if camera else None
        self.bound = bound

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """``(H, W, 2)`` float32: where each pixel of ``before`` is in ``after`` (minus the camera's motion)."""
        return self.pair(before, after)[1]

    def pair(self, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(image flow, camera-compensated flow)``, both ``(H, W, 2)``: the first moves a point with the
        content of the frames as filmed (to track it), the second is its motion with the camera's taken out (the
        same array without camera removal)."""
        compensated, matrix = self.compensated(before, after)
        return image_flow(compensated, matrix), compensated

    def compensated(self, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The camera-compensated flow and the homography that removed the camera (None without removal): the
        two things a flow cache stores."""
        matrix = None
        if self.camera is not None:  # too few keypoints: the flow before removal gives the matches (camera.py)
            matrix = self.camera.homography(before, after, dense_flow=lambda: self._flow(before, after))
            after = warp_onto(after, matrix)
        flow = self._flow(before, after)
        if self.bound is not None:
            flow = np.clip(flow, -self.bound, self.bound)
        return flow, matrix

    def _flow(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        if self.dis is not None:
            return self.dis.calc(before, after, None)
        if self.raft is not None:
            return self.raft(before, after)
        return cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def image_flow(compensated: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """The flow as filmed from the camera-compensated one: ``w'`` was computed between ``before`` and ``after``
    warped onto it by ``matrix`` (``after``'s pixels → ``before``'s), so a pixel ``x`` of ``before`` is at
    ``matrix⁻¹(x + w'(x))`` in ``after`` — no second flow computation."""
    if matrix is None:
        return compensated
    height, width = compensated.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), -1)
    moved = cv2.perspectiveTransform((grid + compensated.astype(np.float32)).reshape(-1, 1, 2), np.linalg.inv(matrix))
    return moved.reshape(height, width, 2) - grid


def to_gray(frames: torch.Tensor | np.ndarray) -> list[np.ndarray]:
    """uint8 ``(T, H, W, 3)`` RGB → T grayscale frames."""
    array = frames.numpy() if isinstance(frames, torch.Tensor) else frames
    return [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in array]


def forward_flow(frames: torch.Tensor, method: str = "dis", preset: str = "medium",
                 bound: float | None = FLOW_BOUND, camera: str | None = None) -> torch.Tensor:
    """Full-resolution forward flow between consecutive frames: ``(T - 1, H, W, 2)``, flow t maps frame t to t+1.

    Args:
        frames: uint8 ``(T, H, W, 3)`` RGB (for MME's interpolation: every raw frame, stride 1).
        method, preset, bound, camera: as :class:`FlowEstimator`.
    """
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8 or frames.shape[0] < 2:
        raise InputError("frames", f"expected uint8 (T >= 2, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    estimate = FlowEstimator(method, preset, bound, camera)
    gray = to_gray(frames)
    return torch.from_numpy(np.stack([estimate(a, b) for a, b in zip(gray[:-1], gray[1:], strict=True)]))
