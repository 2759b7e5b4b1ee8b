"""MAR (Qing et al. 2023): fine-tune and infer on the visible half of the tokens.

    video, running-cell mask ──encoder (visible tokens only)──► tokens (B, K, D)
        ├─► bridging classifier (blocks over the visible tokens, no position, no mask tokens) ─► logits
        └─► [training] the MAE decoder ─► normalized pixels of the masked tokens, weight λ = 0.1

The mask comes from the data pipeline (``running_cell``, 50% by default; a fixed start state at inference), as
every mask does. ``head="linear"`` is MAR's baseline: mean-pool the visible tokens, fc_norm, linear.
"""

from __future__ import annotations

import torch
from torch import nn

from maskvid.errors import ConfigError, InputError
from maskvid.methods.mae import MAE
from maskvid.models import BridgingClassifier, MaskOrder, VideoViT, masked_mean


class MARNet(nn.Module):
    def __init__(self, mae: MAE, num_classes: int, head: str = "bridging", recon_weight: float = 0.1,
                 bridge: dict | None = None, dropout: float = 0.0, init_scale: float = 0.001):
        super().__init__()
        if head not in ("bridging", "linear"):
            raise ConfigError("head.kind", f"MAR takes a bridging or linear head, not {head!r}")
        self.mae = mae
        self.recon_weight = recon_weight
        width = mae.encoder.config.width
        self.kind = head
        if head == "bridging":
            self.head = BridgingClassifier(width, num_classes, dropout=dropout, init_scale=init_scale,
                                           **(bridge or {}))
        else:
            self.fc_norm = nn.LayerNorm(width, eps=1e-6)
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
            nn.init.trunc_normal_(self.head[1].weight, std=0.02)
            with torch.no_grad():
                self.head[1].weight.mul_(init_scale)
            nn.init.zeros_(self.head[1].bias)

    @property
    def encoder(self) -> VideoViT:
        return self.mae.encoder

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^mae\.encoder\.(?:patch_embed|pos_embed)",
                "blocks": [(r"^mae\.encoder\.blocks\.(\d+)", None), (r"^mae\.encoder\.norm", (99999,))]}

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None, order: MaskOrder | None = None,
                padded: bool | None = None):
        """``order``: the mask's :class:`~maskvid.models.MaskOrder`, made on the host (``Classification.prepare``)."""
        if mask is None:
            raise InputError("mask", "MAR needs its running-cell mask (set the config's mask section)")
        # only the visible tokens: the saving MAR is about
        tokens, layout = self.mae.encoder(video, mask, order=order, padded=padded)
        if self.kind == "bridging":
            logits = self.head(tokens, layout)
        else:
            logits = self.head(self.fc_norm(masked_mean(tokens, layout.valid)))
        if not self.training or self.recon_weight == 0:
            return logits
        recon = self.mae.predict_masked(tokens, layout, mask, {"video": video}, order)
        return logits, {"recon": (self.recon_weight, recon.loss)}
