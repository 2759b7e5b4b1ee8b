"""Training a VQ-VAE tokenizer: reconstruction MSE + β · commitment (van den Oord et al. 2017, eq. 3 without the
codebook term, which the EMA codebook replaces; β = 0.25)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from maskvid.models.tokenizer import VQVAE, VQVAEConfig
from maskvid.targets.patchify import unnormalize


@dataclass
class TokenizerStep:
    """loss; metrics: ``recon`` (MSE in [0, 1] pixels), ``commitment``, ``codes_used``, ``perplexity``."""

    loss: torch.Tensor
    metrics: dict


class VQVAETraining(nn.Module):
    """The VQ-VAE and its loss, as a method the training loop runs (``method: vqvae``): every frame of the batch's
    clips is a training image. ``forward(video)`` takes the pipeline's normalized ``(B, C, T, H, W)`` clips, or
    ``frames=`` ``(B, 3, H, W)`` in [0, 1]."""

    inputs = ("video",)

    def __init__(self, config: VQVAEConfig | None = None, commitment: float = 0.25):
        super().__init__()
        self.tokenizer = VQVAE(config)
        self.commitment = commitment

    def prepare(self, batch: dict, device: torch.device) -> dict:
        return {"video": batch["video"].to(device, non_blocking=True)}

    def forward(self, video: torch.Tensor | None = None, frames: torch.Tensor | None = None) -> TokenizerStep:
        if frames is None:
            frames = rearrange(unnormalize(video), "b c t h w -> (b t) c h w")
        out = self.tokenizer(frames)
        recon = F.mse_loss(out.recon.float(), frames.float())
        commitment = F.mse_loss(out.latents.float(), out.quantized.detach().float())
        metrics = {"recon": recon.detach(), "commitment": commitment.detach(),
                   **self.tokenizer.quantizer.usage(out.ids)}
        return TokenizerStep(recon + self.commitment * commitment, metrics)
