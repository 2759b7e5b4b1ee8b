"""Camera-motion removal (MME App. A, after Wang & Schmid's improved dense trajectories).

Keypoints are matched between two consecutive frames, a homography is fitted to the matches with RANSAC, the
second frame is warped onto the first, and the flow is computed again on the warped frame: what the camera did is
gone, what moved in the scene is left. MME used SURF, which OpenCV keeps in its non-free module. Here:

- ``klt`` (default): Shi–Tomasi corners followed into the next frame by pyramidal Lucas–Kanade, kept where the
  backward track returns within half a pixel — sub-pixel accurate. On the panning test scene it recovers the pan
  within 0.08 px in every frame pair.
- ``sift``: SIFT keypoints and Lowe's ratio test; as accurate, ~3× the time.
- ``orb``: ORB keypoints; fast, but its coarser keypoint positions let RANSAC settle on a wrong homography in 2
  of 6 frame pairs of the same scene (a 0.95 scale instead of a 3-px pan; measured), so it is not the default.

Where the keypoints give fewer than ``MIN_MATCHES`` matches (smooth or small frames: the synthetic benchmark's
64-px frames have 3–7 corners, so the pan stayed in MME's targets), the matches come from the dense flow instead —
iDT's second source (Wang & Schmid 2013): a grid of points and where the flow carries them. RANSAC keeps the
dominant motion, the camera's, and leaves a moving object as outliers.

    H = camera_homography(before, after)            # (3, 3): pixels of `after` → pixels of `before`
    aligned = warp_onto(after, H)                    # `after` seen from `before`'s camera
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from maskvid.errors import ConfigError

DETECTORS = ("klt", "orb", "sift")
MIN_MATCHES = 12  # fewer keypoint matches than this: matches from the dense flow, or (without one) a still camera
FLOW_GRID_POINTS = 1024  # about this many flow matches on a regular grid
# RANSAC's reprojection threshold for flow matches: the flow smears a moving object's motion a few pixels into the
# background around it, and at 1 px those points pulled the fit (0.96 px off a 0.6-px pan next to a moving square)
FLOW_MATCH_THRESHOLD = 0.5


def _detector(name: str, features: int):
    if name == "klt":
        return None, None
    if name == "orb":  # 3 levels, 15-px patches: measured on 128² frames, the defaults (8 levels, 31 px) fit a
        # homography scaled by 0.94 to a pure 3-px pan; these recover it within 0.1 px
        orb = cv2.ORB_create(nfeatures=features, nlevels=3, edgeThreshold=15, patchSize=15, fastThreshold=7)
        return orb, cv2.NORM_HAMMING
    if name == "sift":
        return cv2.SIFT_create(nfeatures=features), cv2.NORM_L2
    raise ConfigError("target.camera", f"{name!r} not in {DETECTORS} (or false for no camera-motion removal)")


class CameraMotion:
    """Homographies between consecutive grayscale frames; one detector reused across a clip (creating one costs
    more than using it on a small frame).

    detector: ``klt``, ``orb`` or ``sift``; features: keypoints per frame; ratio: Lowe's ratio test on the two
    nearest descriptor matches; threshold: RANSAC reprojection error in pixels.
    """

    def __init__(self, detector: str = "klt", features: int = 1000, ratio: float = 0.75, threshold: float = 1.0):
        self.name = detector
        self.detector, norm = _detector(detector, features)
        self.matcher = cv2.BFMatcher(norm) if norm is not None else None
        self.features_per_frame, self.ratio, self.threshold = features, ratio, threshold
        self._last: tuple[np.ndarray, tuple] | None = None  # a frame is `after` of one pair, `before` of the next

    def features(self, frame: np.ndarray) -> tuple:
        """Keypoints of ``frame``: ``(corners, None)`` for klt, ``(keypoints, descriptors)`` otherwise."""
        if self._last is not None and self._last[0] is frame:
            return self._last[1]
        if self.detector is None:
            found = (cv2.goodFeaturesToTrack(frame, self.features_per_frame // 2, 0.01, 6), None)  # LK costs per corner
        else:
            found = self.detector.detectAndCompute(frame, None)
        self._last = (frame, found)
        return found

    def matches(self, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matched points ``(M, 2)`` of ``after`` and of ``before``."""
        empty = (np.zeros((0, 2), np.float32),) * 2
        if self.detector is None:
            corners, _ = self.features(before)
            if corners is None:
                return empty
            lk = {"winSize": (15, 15), "maxLevel": 3}
            ahead, found, _ = cv2.calcOpticalFlowPyrLK(before, after, corners, None, **lk)
            back, returned, _ = cv2.calcOpticalFlowPyrLK(after, before, ahead, None, **lk)
            good = (found[:, 0] == 1) & (returned[:, 0] == 1) & (np.linalg.norm(back - corners, axis=-1)[:, 0] < 0.5)
            return ahead[good, 0], corners[good, 0]
        kp_before, desc_before = self.features(before)
        kp_after, desc_after = self.features(after)
        if desc_before is None or desc_after is None or len(kp_before) < 2 or len(kp_after) < 2:
            return empty
        pairs = self.matcher.knnMatch(desc_after, desc_before, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        source = np.float32([kp_after[m.queryIdx].pt for m in good]).reshape(-1, 2)
        return source, np.float32([kp_before[m.trainIdx].pt for m in good]).reshape(-1, 2)

    def homography(self, before: np.ndarray, after: np.ndarray,
                   dense_flow: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        """``(3, 3)`` float64 mapping pixels of ``after`` onto ``before``. Where too few keypoints match, the matches
        come from ``dense_flow()`` (``(H, W, 2)`` from ``before`` to ``after``, called only then); the identity
        where there are still too few or RANSAC finds no consistent model (a textureless or cut scene)."""
        identity = np.eye(3)
        source, destination = self.matches(before, after)
        threshold = self.threshold
        if len(source) < MIN_MATCHES and dense_flow is not None:
            (source, destination), threshold = flow_matches(dense_flow()), FLOW_MATCH_THRESHOLD
        if len(source) < MIN_MATCHES:
            return identity
        matrix, inliers = cv2.findHomography(source, destination, cv2.RANSAC, threshold)
        if matrix is None or inliers is None or int(inliers.sum()) < MIN_MATCHES:
            return identity
        return matrix


def flow_matches(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matches ``(M, 2)`` of ``after`` and of ``before`` read from a dense flow ``(H, W, 2)`` (``before`` → ``after``)
    on a regular grid of about :data:`FLOW_GRID_POINTS` points."""
    height, width = flow.shape[:2]
    step = max(1, round(math.sqrt(height * width / FLOW_GRID_POINTS)))
    ys, xs = np.mgrid[step // 2:height:step, step // 2:width:step]
    points = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)
    return points + flow[ys, xs].reshape(-1, 2).astype(np.float32), points


def camera_homography(before: np.ndarray, after: np.ndarray, detector: str = "klt") -> np.ndarray:
    """One-off :meth:`CameraMotion.homography` on two grayscale uint8 frames."""
    return CameraMotion(detector).homography(before, after)


def warp_onto(after: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``after`` warped by ``matrix`` into the first frame's pixel grid; pixels with no source repeat the border
    (black borders would be read as motion by the flow)."""
    height, width = after.shape[:2]
    return cv2.warpPerspective(after, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
