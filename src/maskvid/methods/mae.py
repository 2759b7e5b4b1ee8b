"""Masked autoencoding (VideoMAE; MGM changes only the mask): masked prediction with one head.

    video (B, C, T, H, W), mask (B, N) ──encoder──► visible tokens (B, K, D)
        ──encoder_to_decoder──► (B, K, d) ──among mask tokens + position──► (B, N, d)
        ──decoder──► (B, N, D_target) ──keep the masked tokens──► pred (B, M, D_target)
    loss = mean over masked tokens (and the target's valid entries) of the squared error

Samples may mask different numbers of tokens: the encoder pads, the decoder always sees all N tokens, and the loss
averages over every masked token of the batch (so each token weighs the same, as in VideoMAE's element mean).
"""

from __future__ import annotations

from maskvid.methods.base import MaskedOutput, MaskedPrediction, PredictionHead
from maskvid.models import DecoderConfig, ViTConfig
from maskvid.targets import Target

MAEOutput = MaskedOutput  # the name earlier releases returned


class MAE(MaskedPrediction):
    """VideoMAE: one decoder predicting one target of the masked tokens (normalized pixels by default)."""

    def __init__(self, encoder: ViTConfig, decoder: DecoderConfig, target: Target, name: str | None = None):
        name = name or target.name
        super().__init__(encoder, [PredictionHead(name, encoder, decoder, target)])

    @property
    def head(self) -> PredictionHead:
        return self.heads[0]
