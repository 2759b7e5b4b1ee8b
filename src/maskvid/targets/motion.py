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
    (:meth:`validity`), so the target covers frames 0 … T-2, as the paper's ``(T-1)`` differences."""

    name = "rgb_diff"

    @torch.no_grad()
    def forward(self, video: torch.Tensor, **aux) -> torch.Tensor:
        pixels = unnormalize(video, self.mean, self.std)
        diff = F.pad(pixels[:, :, 1:] - pixels[:, :, :-1], (0, 0, 0, 0, 0, 1))  # (B, C, T, H, W), last frame 0
        return patchify(diff, self.patch).flatten(2)

    def validity(self, video: torch.Tensor, **aux) -> torch.Tensor:
        """``(B, N, t·p·p·C)``: False on the entries of the clip's last frame, which has no successor."""
        t, p, q = self.patch
        b, _, frames, height, width = video.shape
        valid = torch.ones(b, frames // t, (height // p) * (width // q), t, p * q * self.channels, dtype=torch.bool,
                           device=video.device)
        valid[:, -1, :, -1] = False  # the last frame sits in the last slot of the last temporal slice
        return valid.flatten(3).flatten(1, 2)
