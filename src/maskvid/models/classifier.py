"""A video classifier: the encoder over all tokens, mean pooling + ``fc_norm`` (VideoMAE), the final norm's mean,
or the [CLS] token's output (VIMPAC), then dropout and a linear head."""

from __future__ import annotations

import torch
from torch import nn

from maskvid.models.heads import masked_mean
from maskvid.models.tokens import MaskOrder
from maskvid.models.vit import VideoViT, ViTConfig


class VideoClassifier(nn.Module):
    def __init__(self, config: ViTConfig, num_classes: int, fc_norm: bool = True, head_drop: float = 0.0,
                 head_eps: float = 1e-6, init_scale: float = 1.0, pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "first", "cls") or (pool == "cls" and not config.cls_token):
            raise ValueError(f"pool {pool!r} not in mean, first, cls (cls needs a [CLS] token)")
        self.pool = pool  # "first": VideoMAE's / HF's choice when there is no fc_norm (token 0, no CLS token)
        self.encoder = VideoViT(config)
        self.fc_norm = nn.LayerNorm(config.width, eps=head_eps) if fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(head_drop)
        self.head = nn.Linear(config.width, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        with torch.no_grad():  # VideoMAE scales the fresh head down (init_scale 0.001) for fine-tuning
            self.head.weight.mul_(init_scale)
        nn.init.zeros_(self.head.bias)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping for layer-wise lr decay: embeddings, then each block, then norms and head."""
        return {"stem": r"^encoder\.(?:patch_embed|pos_embed)", "blocks": [(r"^encoder\.blocks\.(\d+)", None),
                                                                       (r"^encoder\.norm", (99999,))]}

    def features(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                 order: MaskOrder | None = None, padded: bool | None = None) -> torch.Tensor:
        # (B, N, D), or the visible tokens
        tokens, layout, cls = self.encoder(video, mask, return_prefix=True, order=order, padded=padded)
        if self.pool == "cls":
            return self.fc_norm(cls[:, 0])
        if self.pool == "first":
            return self.fc_norm(tokens[:, 0])
        return self.fc_norm(masked_mean(tokens, layout.valid))

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                order: MaskOrder | None = None, padded: bool | None = None) -> torch.Tensor:
        """``(B, C, T, H, W)`` → logits ``(B, num_classes)``; with a mask, from the visible tokens only (``order``:
        the mask's, made on the host; ``padded``: whether a token clip holds [PAD], when known)."""
        return self.head(self.head_drop(self.features(video, mask, order, padded)))
