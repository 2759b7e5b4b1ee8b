"""Masked autoencoding (VideoMAE; MGM and MME change only the mask and the target).

    video (B, C, T, H, W), mask (B, N) ──encoder──► visible tokens (B, K, D)
        ──encoder_to_decoder──► (B, K, d) ──scatter among mask tokens + position──► (B, N, d)
        ──decoder──► (B, N, D_target) ──keep the masked tokens──► pred (B, M, D_target)
    loss = mean over masked tokens (and the target's valid entries) of the squared error

Samples may mask different numbers of tokens: the encoder pads, the decoder always sees all N tokens, and the loss
averages over every masked token of the batch (so each token weighs the same, as in VideoMAE's element mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from maskvid.errors import ConfigError
from maskvid.models import DecoderConfig, MAEDecoder, PositionEmbedding, VideoViT, ViTConfig


@dataclass
class MAEOutput:
    """loss: scalar; pred: ``(B, M, D)`` predictions of each sample's masked tokens in (t h w) order, padded to
    the largest M; pred_valid: ``(B, M)`` bool or None when every sample masks the same count; metrics: logged."""

    loss: torch.Tensor
    pred: torch.Tensor
    pred_valid: torch.Tensor | None
    metrics: dict


class MAE(nn.Module):
    def __init__(self, encoder: ViTConfig, decoder: DecoderConfig, target: nn.Module):
        super().__init__()
        self.decoder_config = decoder
        self.encoder = VideoViT(encoder)
        self.encoder_to_decoder = nn.Linear(encoder.width, decoder.width, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.width))
        self.decoder_pos_embed = PositionEmbedding("sincos", encoder.grid, decoder.width)
        self.decoder = MAEDecoder(decoder, target.dim)
        self.target = target
        nn.init.xavier_uniform_(self.encoder_to_decoder.weight)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, video: torch.Tensor, mask: torch.Tensor, **aux) -> MAEOutput:
        if mask is None or not bool(mask.any()):
            raise ConfigError("mask", "MAE needs a mask with at least one masked token per batch")
        tokens, layout = self.encoder(video, mask)  # (B, K, D)
        return self.reconstruct(tokens, layout, video, mask, **aux)

    def prepare(self, batch: dict, device: torch.device) -> dict:
        """The loop's batch → this method's arguments, on ``device``."""
        return {"video": batch["video"].to(device, non_blocking=True),
                "mask": batch["mask"].to(device, non_blocking=True)}

    def reconstruct(self, tokens, layout, video: torch.Tensor, mask: torch.Tensor, **aux) -> MAEOutput:
        """Decoder half: encoded visible tokens → predictions and loss on the masked ones (MAR reuses it)."""
        grid = layout.grid
        b, n = mask.shape
        x = self.encoder_to_decoder(tokens)  # (B, K, d)
        fill = self.mask_token.to(x.dtype).expand(b, n, -1)
        if layout.valid is not None:  # padding slots point at masked positions: keep the mask token there
            x = torch.where(layout.valid[..., None], x, fill.gather(1, layout.ids[..., None].expand_as(x)))
        full = fill.scatter(1, layout.ids[..., None].expand_as(x), x)  # (B, N, d), visible tokens in place
        out = self.decoder(self.decoder_pos_embed(full, grid), grid)  # (B, N, D_target)
        masked_ids, pred_valid = _masked_layout(mask)
        pred = out.gather(1, masked_ids[..., None].expand(-1, -1, out.shape[-1]))  # (B, M, D)
        target = self.target(video, **aux).gather(1, masked_ids[..., None].expand(-1, -1, out.shape[-1]))
        loss = self._loss(pred.float(), target.float(), masked_ids, pred_valid, grid)
        return MAEOutput(loss=loss, pred=pred, pred_valid=pred_valid, metrics={"loss": loss.detach()})

    def _loss(self, pred, target, masked_ids, pred_valid, grid) -> torch.Tensor:
        error = (pred - target) ** 2  # (B, M, D)
        weights = self.target.entry_weights(grid)
        if weights is None:
            per_token = error.mean(-1)
        else:
            w = weights.to(error.device)[masked_ids]  # (B, M, D)
            per_token = (error * w).sum(-1) / w.sum(-1).clamp(min=1)
            if pred_valid is None:
                pred_valid = w.sum(-1) > 0
            else:
                pred_valid = pred_valid & (w.sum(-1) > 0)
        if pred_valid is None:
            return per_token.mean()
        return (per_token * pred_valid).sum() / pred_valid.sum().clamp(min=1)


def _masked_layout(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each sample's masked positions in order, padded to the largest count, and their validity."""
    counts = mask.sum(1)
    most = int(counts.max())
    ids = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :most]  # masked positions first
    if bool((counts == most).all()):
        return ids, None
    return ids, torch.arange(most, device=mask.device)[None, :] < counts[:, None]
