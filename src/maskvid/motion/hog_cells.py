"""HOG cells at any position of a frame seen through a clip's crop: integral images of orientation votes, then one
window sum per point — MME's HOG along trajectories (eq. 5) and its dense HOG over every raw frame (Tab. 6).

Votes are on the grayscale frame cropped, resized and mirrored exactly as the clip, so cells are in input pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from maskvid.errors import ConfigError

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class DenseHOGSpec:
    """Dense HOG: every ``step``-th raw frame of each tubelet's span (``t·stride`` raw frames), ``bins`` bins."""

    step: int = 1
    bins: int = 9

    def __post_init__(self):
        for key in ("step", "bins"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"target.{key}", f"must be an integer >= 1, got {value!r}")

    def per_tubelet(self, tubelet: int, stride: int) -> int:
        if (tubelet * stride) % self.step:
            raise ConfigError("target.step", f"{self.step} does not divide a tubelet's span of {tubelet}×{stride} "
                              "raw frames")
        return tubelet * stride // self.step

    def spans(self, indices: list[int], tubelet: int, stride: int) -> list[list[int]]:
        """The raw frames of each tubelet of a clip sampled at ``indices``."""
        count = self.per_tubelet(tubelet, stride)
        return [[s + j * self.step for j in range(count)] for s in indices[::tubelet]]


def integral_hog(gray: np.ndarray, box: Box, flip: bool, size: int, bins: int) -> np.ndarray:
    """Integral images ``(size + 1, size + 1, bins)`` of magnitude-weighted unsigned-orientation votes on the
    frame cropped and resized as the clip (and mirrored), so that a window sum is a HOG cell in input pixels."""
    top, left, height, width = box
    crop = gray[top:top + height, left:left + width]
    interpolation = cv2.INTER_AREA if height > size else cv2.INTER_LINEAR
    image = cv2.resize(crop, (size, size), interpolation=interpolation).astype(np.float32)
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
    dx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    dy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    return cv2.integral(orientation_votes(dx, dy, bins).reshape(size, size, bins), sdepth=cv2.CV_64F)


def orientation_votes(dx: np.ndarray, dy: np.ndarray, bins: int) -> np.ndarray:
    """``(H·W, bins)`` float32: each pixel's gradient magnitude voted linearly into the two nearest of ``bins``
    unsigned-orientation bins (as the HOG target). Plain IEEE operations, so the same gradients give the same bits
    on every call: ``cv2.magnitude`` did not (from one call to the next the last bit of some pixels changed), and
    two runs of one MME seed trained apart (``tests/test_mme.py``)."""
    magnitude = np.sqrt(dx * dx + dy * dy)  # each operation rounded once, as IEEE says, in any lane
    position = (np.arctan2(dy, dx) % np.pi) * (bins / np.pi)
    floor = np.floor(position)
    low = floor.astype(np.int32) % bins
    high = low + 1
    high[high == bins] = 0
    upper = (magnitude * (position - floor)).ravel()
    votes = np.zeros((magnitude.size, bins), np.float32)
    pixels = np.arange(magnitude.size)
    votes[pixels, low.ravel()] = magnitude.ravel() - upper
    votes[pixels, high.ravel()] += upper
    return votes


def window_histograms(integral: np.ndarray, positions: np.ndarray, cell: int) -> np.ndarray:
    """``(P, bins)`` L2-normalized histograms of the ``cell × cell`` windows centred at ``positions`` (x, y)."""
    side = integral.shape[0] - 1
    corner = np.floor(positions + 0.5 - cell / 2 + 0.5).astype(np.int64)  # first pixel of the window
    x0 = np.clip(corner[:, 0], 0, side - cell)
    y0 = np.clip(corner[:, 1], 0, side - cell)
    x1, y1 = x0 + cell, y0 + cell
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    sums /= np.linalg.norm(sums, axis=1, keepdims=True) + 1e-6
    return sums.astype(np.float32)


def clip_dense_hog(frames: Mapping[int, np.ndarray], raw: list[list[int]], box: Box, flip: bool, size: int,
                   patch: int, bins: int = 9) -> torch.Tensor:
    """MME's dense HOG (Tab. 6): for each temporal slice ``k`` of the clip, the HOG of every patch in each raw
    frame ``raw[k]`` of its span. Returns ``(T'·H'·W', F, bins)`` float32, tokens in ``(t h w)`` order."""
    grid = size // patch
    centres = (np.arange(grid) * patch + patch / 2 - 0.5).astype(np.float64)
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    positions = np.stack([xs.ravel(), ys.ravel()], -1)  # (H'·W', 2) patch centres
    integrals: dict[int, np.ndarray] = {}
    out = []
    for span in raw:
        per_frame = []
        for index in span:
            if index not in integrals:
                gray = cv2.cvtColor(np.ascontiguousarray(frames[index]), cv2.COLOR_RGB2GRAY)
                integrals[index] = integral_hog(gray, box, flip, size, bins)
            per_frame.append(window_histograms(integrals[index], positions, patch))
        out.append(np.stack(per_frame, 1))  # (H'·W', F, bins)
    return torch.from_numpy(np.concatenate(out))
