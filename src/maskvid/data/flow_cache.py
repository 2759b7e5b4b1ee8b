"""An optional on-disk cache of the optical flow trajectories are tracked through (``maskvid extract``).

MME's official pipeline extracts flow offline for a day on 4 nodes; maskvid computes it online in the workers, and
this cache is for users who would rather spend disk than CPU. Trajectories depend on each sample's random crop and
flip, so the cache holds what does not: for every pair of raw frames ``flow_stride`` apart, the camera-compensated
flow (float16, the precision the online path keeps too — cached and online targets are the same numbers) and the
homography that removed the camera. Tracking and HOG along the tracks stay online.

One entry per video, a directory named by a hash of the video's path::

    DIR/ab/abcdef…/meta.json        path, size, mtime_ns, frames, decoded size, the flow options
                   flows.npy        (frames - flow_stride, H, W, 2) float16, read memory-mapped
                   homographies.npy (frames - flow_stride, 3, 3) float64 (NaN: no camera removal)

An entry is valid only for the same file (size and mtime), decode size and flow options; a stale or unreadable
entry is reported (:attr:`FlowCache.problems`), rebuilt, and the clip is served — a cache never stops a run.
Entries are written to a temporary directory and renamed into place, so a killed extraction leaves no half entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from maskvid.data.cache_entries import entry_dir, fill, stored_meta, video_meta, write_entry
from maskvid.data.decode import decode_clip, frame_count
from maskvid.motion.trajectory_features import PairFlow, TrajectorySpec, pair_flow

LAYOUT_VERSION = 2  # 2: camera removal takes matches from the flow where keypoints are too few
CHUNK = 64  # frames decoded at a time while building an entry


class FlowCache:
    """The flow cache under ``root`` for one set of flow options (``spec``) and decode size."""

    def __init__(self, root: str, spec: TrajectorySpec, decode_size: int | None = None, device: str = "cpu"):
        self.root, self.spec, self.decode_size, self.device = root, spec, decode_size, device
        self.problems: list[tuple[str, str]] = []  # (video path, what was wrong with its entry), rebuilt since

    def entry(self, path: str) -> str:
        return entry_dir(self.root, path)

    def _meta(self, path: str) -> dict:
        return {**video_meta(path, LAYOUT_VERSION), "decode_size": self.decode_size, "flow": list(self.spec.flow_key)}

    def check(self, path: str) -> str | None:
        """Why the entry of ``path`` cannot be used (None: it can)."""
        entry = self.entry(path)
        try:
            problem, stored = stored_meta(entry, self._meta(path))
            if problem is not None:
                return problem
            flows = np.load(os.path.join(entry, "flows.npy"), mmap_mode="r")
            matrices = np.load(os.path.join(entry, "homographies.npy"), mmap_mode="r")
            pairs = stored["frames"] - self.spec.flow_stride
            if flows.shape[0] != max(pairs, 0) or flows.dtype != np.float16 or matrices.shape != (flows.shape[0], 3, 3):
                return f"corrupted entry (flows {flows.shape} {flows.dtype}, homographies {matrices.shape})"
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            return f"corrupted entry ({type(e).__name__}: {e})"
        return None

    def load(self, path: str, pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], PairFlow]:
        """The cached flows of ``pairs`` (raw frame index pairs ``flow_stride`` apart) of ``path``; a missing,
        stale or corrupted entry is reported and rebuilt first. Pairs past the video's end are left out (the
        caller computes them: they repeat the last frame)."""
        problem = self.check(path)
        if problem is not None:
            if problem != "no entry":
                self.problems.append((path, problem))
            self.build(path)
        entry = self.entry(path)
        flows = np.load(os.path.join(entry, "flows.npy"), mmap_mode="r")
        matrices = np.load(os.path.join(entry, "homographies.npy"))
        out = {}
        for a, b in pairs:
            if b - a == self.spec.flow_stride and 0 <= a < flows.shape[0]:
                matrix = matrices[a]
                out[a, b] = (np.array(flows[a]), None if np.isnan(matrix).any() else matrix)
        return out

    def build(self, path: str) -> str:
        """Compute and write the entry of ``path`` (decoding ``CHUNK`` frames at a time); returns its directory.

        Raises:
            VideoDecodeError: the video cannot be decoded (the dataset skips and reports it, as any bad video).
        """
        total = frame_count(path)
        stride = self.spec.flow_stride
        estimate = self.spec.estimator(self.device)
        flows, matrices = [], []
        gray: dict[int, np.ndarray] = {}
        for chunk_start in range(0, total, CHUNK):
            indices = list(range(chunk_start, min(chunk_start + CHUNK, total)))
            frames = decode_clip(path, indices, self.decode_size).frames.numpy()
            gray.update({i: cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for i, f in zip(indices, frames, strict=True)})
            for a in range(len(flows), total - stride):
                if a + stride not in gray:
                    break
                compensated, matrix = pair_flow(estimate, gray[a], gray[a + stride])
                flows.append(compensated)
                matrices.append(np.full((3, 3), np.nan) if matrix is None else matrix)
            gray = {i: g for i, g in gray.items() if i >= len(flows)}  # keep what later pairs still read
        meta = {**self._meta(path), "frames": total}
        height, width = gray_shape(flows, path, self.decode_size)
        write_entry(self.entry(path), meta, {
            "flows": np.stack(flows) if flows else np.zeros((0, height, width, 2), np.float16),
            "homographies": np.stack(matrices) if matrices else np.zeros((0, 3, 3))})
        return self.entry(path)


def gray_shape(flows: list[np.ndarray], path: str, decode_size: int | None) -> tuple[int, int]:
    """Frame size of an entry (from its flows, or one decoded frame for a video too short for any pair)."""
    if flows:
        return flows[0].shape[:2]
    return decode_clip(path, [0], decode_size).frames.shape[1:3]


def extract(paths: Sequence[str], root: str, spec: TrajectorySpec, decode_size: int | None = None,
            shard: tuple[int, int] = (0, 1), progress: Callable[[int, int], None] | None = None,
            device: str = "cpu") -> dict:
    """Build the entries of this shard's videos (:func:`~maskvid.data.cache_entries.fill`): RAFT flows run on
    ``device`` (a GPU for raft_large)."""
    return fill(FlowCache(root, spec, decode_size, device), paths, shard, progress)
