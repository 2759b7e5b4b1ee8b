"""Motion made from the raw frames between a clip's sampled frames, in the worker: MME's trajectories, the
per-pixel flows of its short-term baselines and its dense HOG. The dataset decodes the extra frames with the clip;
this module says which, and turns them into sample fields once the clip's crop and flip are drawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from maskvid.data.flow_cache import FlowCache
from maskvid.motion.flow_fields import FlowFieldSpec, clip_flow_fields
from maskvid.motion.hog_cells import DenseHOGSpec, clip_dense_hog
from maskvid.motion.trajectory_features import TrajectorySpec, clip_trajectories


@dataclass
class RawMotion:
    """What to make (``trajectories``, ``flow_fields``, ``dense_hog``; each may be None) for clips of ``patch``
    ``(t, p, p)`` tubelets sampled ``stride`` apart, and where cached flows are (``cache``, trajectories only)."""

    patch: tuple[int, int, int]
    stride: int
    trajectories: TrajectorySpec | None = None
    flow_fields: FlowFieldSpec | None = None
    cache: FlowCache | None = None
    dense_hog: DenseHOGSpec | None = None

    def _spans(self, indices: list[int]) -> list[list[int]]:
        return self.dense_hog.spans(indices, self.patch[0], self.stride) if self.dense_hog else []

    def starts(self, indices: list[int]) -> list[int]:
        """The raw frame of each tubelet's first frame."""
        return indices[:: self.patch[0]]

    def _flow_pairs(self, indices: list[int]) -> list[tuple[int, int]]:
        return self.flow_fields.pairs(indices, self.patch[0], self.stride) if self.flow_fields else []

    def frames_needed(self, clips: list[list[int]], last: int) -> dict[int, int]:
        """Raw frames the clips (absolute indices) read → the frame decoded for each (past ``last``: ``last``)."""
        wanted = set()
        for indices in clips:
            if self.trajectories is not None:
                wanted.update(i for s in self.starts(indices) for i in self.trajectories.raw_frames(s))
            wanted.update(i for pair in self._flow_pairs(indices) for i in pair)
            wanted.update(i for span in self._spans(indices) for i in span)
        return {i: min(i, last) for i in sorted(wanted)}

    def fields(self, indices: list[int], frames: dict[int, np.ndarray], path: str, box: tuple[int, int, int, int],
               flip: bool, size: int) -> dict[str, torch.Tensor]:
        """The sample fields of one clip: ``trajectory`` + ``trajectory_valid``, ``flow``, ``dense_hog``."""
        out = {}
        if self.trajectories is not None:
            starts = self.starts(indices)
            flows = self._cached(path, starts)
            out["trajectory"], out["trajectory_valid"] = clip_trajectories(
                frames, starts, self.trajectories, box, flip, size, self.patch[1], flows)
        if self.flow_fields is not None:
            out["flow"] = clip_flow_fields(frames, self._flow_pairs(indices), self.flow_fields, box, flip, size)
        if self.dense_hog is not None:
            out["dense_hog"] = clip_dense_hog(frames, self._spans(indices), box, flip, size, self.patch[1],
                                              self.dense_hog.bins)
        return out

    def _cached(self, path: str, starts: list[int]) -> dict | None:
        """The clip's flows from the cache (None without one); a stale or corrupted entry is logged and rebuilt."""
        if self.cache is None:
            return None
        pairs = set()
        for s in starts:
            raw = self.trajectories.raw_frames(s)
            pairs.update(zip(raw[:-1], raw[1:], strict=True))
        seen = len(self.cache.problems)
        flows = self.cache.load(path, sorted(pairs))
        for bad_path, problem in self.cache.problems[seen:]:
            logging.getLogger("maskvid.data").warning("flow cache: %s: %s; rebuilt", bad_path, problem)
        return flows
