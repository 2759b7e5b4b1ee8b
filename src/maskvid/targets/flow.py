"""MME's short-term motion baselines (Tab. 5, App. C): per token, the optical flow of the patch (``flow``), its
histogram of flow orientations (``hof``), or the histograms of each flow component's gradient orientations
(``mbh``: MBHx then MBHy — motion boundaries). ``with_hog`` appends the tubelet's HOG (Tab. 5's "HOG + HOF",
"HOG + MBH"); ``dense`` (a worker option) uses every raw frame of the tubelet's span instead of its input frames
(Tab. 6's interpolated MBH).

The flows come with the batch as ``flow`` ``(B, F, 2, H, W)``, made in the data workers
(:mod:`maskvid.motion.flow_fields`; :attr:`spec` says how), ``F / T'`` of them per temporal slice. Histograms have
9 bins over the full circle (a flow's direction matters), one per patch and flow, L2-normalized (as the HOG
target's). ``stride`` is the input stride (from ``data.stride``), which sets the flows per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from maskvid.errors import InputError
from maskvid.motion.flow_fields import FlowFieldSpec
from maskvid.targets.hog import HOG, cell_histograms, sobel


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

    def __post_init__(self):
        super().__post_init__()
        self.spec = FlowFieldSpec(self.flow_stride, self.dense, self.flow, self.flow_preset, camera=self.camera,
                                  raft_weights=self.raft_weights)
        self.per_token = self.spec.per_tubelet(self.patch[0], self.stride)
        if self.with_hog:
            self.inputs = ("flow", "video")

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
    def forward(self, flow: torch.Tensor, video: torch.Tensor | None = None, **aux) -> torch.Tensor:
        out = self.motion(self._flows(flow))
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
