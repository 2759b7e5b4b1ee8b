"""Per-pixel optical flow of a clip in the model's input pixels, for MME's short-term motion baselines (Tab. 5–6):
the ``flow``, ``hof`` and ``mbh`` targets. Made in the data-loader worker from the decoded frames, then cropped,
resized and mirrored exactly as the clip (vectors scaled by the resize, x negated by a flip).

Which flows: for every input frame ``f``, the flow ``f → f + flow_stride`` (sparse: as many flows as input frames;
``flow_stride`` defaults to the input stride, MME's ``s_flow = s_rgb``), or with ``dense`` every raw frame of each
tubelet's span at ``flow_stride`` (MME's interpolated HOF/MBH, Tab. 6) — ``t·stride/flow_stride`` flows a tubelet.

    spec = FlowFieldSpec(dense=False)
    pairs = spec.pairs(indices, tubelet=2, stride=2)             # [(a, b), ...] raw frame pairs, in token order
    fields = clip_flow_fields(frames, pairs, spec, box, flip, size=224)   # (len(pairs), 2, 224, 224) float16
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from maskvid.errors import ConfigError, InputError
from maskvid.motion.flow import FLOW_BOUND, FLOW_METHODS, PRESETS, FlowEstimator
from maskvid.motion.raft import check_raft_weights

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FlowFieldSpec:
    """flow_stride: raw frames between the two frames of a flow (None: the input stride); dense: every raw frame
    of a tubelet's span, not only the input frames; method/preset/bound/camera: as :class:`FlowEstimator`."""

    flow_stride: int | None = None
    dense: bool = False
    method: str = "dis"
    preset: str = "medium"
    bound: float = FLOW_BOUND
    camera: str | None = None
    raft_weights: str | None = None

    def __post_init__(self):
        if self.flow_stride is not None and (isinstance(self.flow_stride, bool) or not isinstance(
                self.flow_stride, int) or self.flow_stride < 1):
            raise ConfigError("target.flow_stride", f"must be an integer >= 1 or null, got {self.flow_stride!r}")
        if not isinstance(self.dense, bool):
            raise ConfigError("target.dense", f"must be true or false, got {self.dense!r}")
        if self.method not in FLOW_METHODS:
            raise ConfigError("target.flow", f"{self.method!r} not in {FLOW_METHODS}")
        if self.preset not in PRESETS:
            raise ConfigError("target.flow_preset", f"{self.preset!r} not in {tuple(PRESETS)}")
        check_raft_weights(self.method, self.raft_weights)

    def step(self, stride: int) -> int:
        return self.flow_stride or stride

    def per_tubelet(self, tubelet: int, stride: int) -> int:
        """Flows per token: the tubelet's frames, or every ``step``-th raw frame of its span when dense."""
        if not self.dense:
            return tubelet
        step = self.step(stride)
        if (tubelet * stride) % step:
            raise ConfigError("target.flow_stride", f"{step} does not divide a tubelet's span of "
                              f"{tubelet}×{stride} raw frames")
        return tubelet * stride // step

    def pairs(self, indices: list[int], tubelet: int, stride: int) -> list[tuple[int, int]]:
        """Raw frame pairs ``(a, a + step)`` of a clip sampled at ``indices``, tubelet by tubelet."""
        step = self.step(stride)
        if not self.dense:
            return [(f, f + step) for f in indices]
        count = self.per_tubelet(tubelet, stride)
        return [(s + j * step, s + (j + 1) * step) for s in indices[::tubelet] for j in range(count)]


def clip_flow_fields(frames: Mapping[int, np.ndarray], pairs: list[tuple[int, int]], spec: FlowFieldSpec,
                     box: Box, flip: bool, size: int) -> torch.Tensor:
    """``(len(pairs), 2, size, size)`` float16: each pair's flow (x, y in input pixels) over the clip's crop."""
    missing = [i for pair in pairs for i in pair if i not in frames]
    if missing:
        raise InputError("frames", f"raw frame {missing[0]} is needed for the flow but was not decoded")
    estimate = FlowEstimator(spec.method, spec.preset, spec.bound, spec.camera, spec.raft_weights)
    gray = {i: cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for i, f in frames.items()}
    top, left, height, width = box
    scale = np.array([size / width, size / height], np.float32)
    computed: dict[tuple[int, int], np.ndarray] = {}
    out = []
    for pair in pairs:
        if pair not in computed:
            flow = estimate(gray[pair[0]], gray[pair[1]])[top:top + height, left:left + width]
            interpolation = cv2.INTER_AREA if height > size else cv2.INTER_LINEAR
            flow = cv2.resize(flow, (size, size), interpolation=interpolation) * scale
            if flip:
                flow = flow[:, ::-1] * np.array([-1.0, 1.0], np.float32)
            computed[pair] = np.ascontiguousarray(flow.transpose(2, 0, 1)).astype(np.float16)
        out.append(computed[pair])
    return torch.from_numpy(np.stack(out))
