"""MME's short-term motion baselines (Tab. 5, App. C): per token, the optical flow of the patch (``flow``), its
histogram of flow orientations (``hof``), or the histograms of each flow component's gradient orientations
(``mbh``: MBHx then MBHy — motion boundaries). ``with_hog`` appends the tubelet's HOG (Tab. 5's "HOG + HOF",
"HOG + MBH"); ``dense`` (a worker option) uses every raw frame of the tubelet's span instead of its input frames
(Tab. 6's interpolated MBH).

The flows come with the batch as ``flow`` ``(B, F, 2, H, W)``, made in the data workers
(:mod:`maskvid.motion.flow_fields`; :attr:`spec` says how), ``F / T'`` of them per temporal slice. Histograms have
9 bins over the full circle (a flow's direction matters), one per patch and flow, L2-normalized (as the HOG
target's). ``stride`` is the input stride (from ``data.stride``), which sets the flows per token.

``online: true`` (RAFT only: MAM²'s optical-flow motion target, §2.2) computes the flows on the training device
instead, from the clip itself: between each input frame and the next, as MAM² runs RAFT "on the consecutive
sampled frames"; the last frame has no successor, so its entries are left out of the loss (as ``rgb_diff``'s).
The RAFT model is frozen: never trained, never in a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from maskvid.errors import ConfigError, InputError
from maskvid.models.frozen import Frozen
from maskvid.motion.flow_fields import FlowFieldSpec
from maskvid.motion.raft import load_raft, raft_pairs
from maskvid.targets.hog import HOG, cell_histograms, sobel
from maskvid.targets.patchify import unnormalize


@dataclass(eq=False)
class Flow(HOG):
    """``(B, N, f·p·p·2)``: the flow of each pixel of the patch (``f`` flows per token), x then y per pixel."""

    name = "flow"
    inputs = ("flow",)

    flow_stride: int | None = None
    dense: bool = False
    flow: str = "dis"
    flow_preset: str = "medium"
    camera: str | None = None
    raft_weights: str | None = None
    stride: int = 2
    with_hog: bool = False
    online: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.spec = FlowFieldSpec(self.flow_stride, self.dense, self.flow, self.flow_preset, camera=self.camera,
                                  raft_weights=self.raft_weights)
        self.per_token = self.spec.per_tubelet(self.patch[0], self.stride)
        self.raft = None
        if self.online:
            self._online_raft()
        elif self.with_hog:
            self.inputs = ("flow", "video")

    def _online_raft(self) -> None:
        if not self.flow.startswith("raft"):
            raise ConfigError("target.online", f"flows on the training device come from RAFT (flow: raft_small or "
                              f"raft_large), not {self.flow}; DIS runs in the data workers")
        if self.dense or self.camera is not None or self.flow_stride is not None:
            raise ConfigError("target.online", "online flows are between consecutive input frames: no dense, "
                              "camera or flow_stride")
        self.raft = Frozen(load_raft(self.flow, self.raft_weights), self.raft_weights)
        self.per_token = self.patch[0]
        self.inputs = ("video",)

    def _online_flows(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` normalized clip → ``(B, T, 2, H, W)``: RAFT from each frame to the next, the
        last frame's zero."""
        frames = unnormalize(video).float().clamp(0, 1).transpose(1, 2)  # (B, T, 3, H, W)
        b, t = frames.shape[:2]
        flows = raft_pairs(self.raft.module, frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1))
        return F.pad(flows.reshape(b, t - 1, *flows.shape[1:]), (0, 0, 0, 0, 0, 0, 0, 1))

    def validity(self, video: torch.Tensor | None = None, **aux) -> torch.Tensor | None:
        """Online: False on the entries of the clip's last frame, which has no successor."""
        if self.raft is None:
            return None
        p, q = self.patch[1:]
        b, _, frames, height, width = video.shape
        per_frame = self.motion_dim // self.patch[0]
        valid = torch.ones(b, frames // self.patch[0], (height // p) * (width // q), self.patch[0], per_frame,
                           dtype=torch.bool, device=video.device)
        valid[:, -1, :, -1] = False
        motion = valid.flatten(3).flatten(1, 2)
        if not self.with_hog:
            return motion
        return torch.cat([motion, torch.ones(*motion.shape[:2], self.dim - self.motion_dim, dtype=torch.bool,
                                             device=video.device)], -1)

    @property
    def motion_dim(self) -> int:
        return self.per_token * self.patch[1] * self.patch[2] * 2

    @property
    def dim(self) -> int:
        return self.motion_dim + (super().dim if self.with_hog else 0)

    def _flows(self, flow: torch.Tensor) -> torch.Tensor:
        if flow.dim() != 5 or flow.shape[2] != 2 or flow.shape[1] % self.per_token:
            raise InputError("flow", f"expected (B, F, 2, H, W) with {self.per_token} flows per token, got "
                             f"{tuple(flow.shape)}")
        return flow.float()

    def motion(self, flow: torch.Tensor) -> torch.Tensor:
        _, p, q = self.patch
        return rearrange(flow, "b (n f) c (h p) (w q) -> b (n h w) (f p q c)", f=self.per_token, p=p, q=q)

    @torch.no_grad()
    def forward(self, flow: torch.Tensor | None = None, video: torch.Tensor | None = None, **aux) -> torch.Tensor:
        out = self.motion(self._online_flows(video) if self.raft is not None else self._flows(flow))
        if self.with_hog:
            out = torch.cat([out, super().forward(video)], -1)
        return out


@dataclass(eq=False)
class HOF(Flow):
    """``(B, N, f·bins)``: per flow, the histogram of its vectors' orientations in the patch."""

    name = "hof"

    @property
    def motion_dim(self) -> int:
        return self.per_token * self.bins

    def motion(self, flow: torch.Tensor) -> torch.Tensor:
        b = flow.shape[0]
        cells = cell_histograms(flow[:, :, 0].flatten(0, 1), flow[:, :, 1].flatten(0, 1), self.bins, self.patch[1:],
                                signed=True)  # (B·F, bins, H', W')
        return rearrange(cells, "(b n f) k h w -> b (n h w) (f k)", b=b, f=self.per_token)


@dataclass(eq=False)
class MBH(Flow):
    """``(B, N, f·2·bins)``: per flow, the histograms of the gradient orientations of its x and of its y
    component (MBHx, MBHy) in the patch."""

    name = "mbh"

    @property
    def motion_dim(self) -> int:
        return self.per_token * 2 * self.bins

    def motion(self, flow: torch.Tensor) -> torch.Tensor:
        b = flow.shape[0]
        components = flow.flatten(0, 2)[:, None]  # (B·F·2, 1, H, W)
        cells = cell_histograms(*sobel(components), self.bins, self.patch[1:], signed=True)
        return rearrange(cells, "(b n f c) k h w -> b (n h w) (f c k)", b=b, f=self.per_token, c=2)
