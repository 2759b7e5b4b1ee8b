"""Motion targets: MAM²'s RGB difference of adjacent frames."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from maskvid.targets.patchify import patchify, unnormalize
from maskvid.targets.pixels import Pixels


@dataclass(eq=False)
class RGBDiff(Pixels):
    """MAM² §2.2: the RGB difference between each frame and the next (pixels in [0, 1]), per tubelet, flattened
    ``(t p p C)``. The last frame has no successor: its entries are zero and weighted out of the loss
    (:meth:`entry_weights`), so the target covers frames 0 … T-2, as the paper's ``(T-1)`` differences."""

    @torch.no_grad()
    def forward(self, video: torch.Tensor, **aux) -> torch.Tensor:
        pixels = unnormalize(video, self.mean, self.std)
        diff = F.pad(pixels[:, :, 1:] - pixels[:, :, :-1], (0, 0, 0, 0, 0, 1))  # (B, C, T, H, W), last frame 0
        return patchify(diff, self.patch).flatten(2)

    def entry_weights(self, grid) -> torch.Tensor:
        t_slices, height, width = grid
        t, p, q = self.patch
        weights = torch.ones(t_slices, height * width, t, p * q * self.channels)
        weights[-1, :, -1] = 0  # the clip's last frame sits in the last slot of the last temporal slice
        return weights.flatten(2).flatten(0, 1)  # (N, t·p·p·C)
