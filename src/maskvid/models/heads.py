"""Classification heads over encoder tokens: MAR's bridging classifier and MAE's linear-probe head."""

from __future__ import annotations

import torch
from torch import nn

from maskvid.models.blocks import Block, TokenLayout, init_weights


def masked_mean(tokens: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over the token axis of ``(B, K, D)``, counting only valid (non-padding) tokens."""
    if valid is None:
        return tokens.mean(1)
    weights = valid[..., None].to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)


class BridgingClassifier(nn.Module):
    """MAR §III-C: a few transformer blocks over the visible tokens only — no position embedding, no mask tokens —
    bridging the gap between reconstruction features and classification; then mean pooling and a linear layer."""

    def __init__(self, in_dim: int, num_classes: int, width: int = 512, depth: int = 2, heads: int = 8,
                 dropout: float = 0.0, init_scale: float = 1.0):
        super().__init__()
        self.proj = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        with torch.no_grad():
            self.head.weight.mul_(init_scale)

    def forward(self, tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        x = self.proj(tokens)  # (B, K, width)
        for blk in self.blocks:
            x = blk(x, layout)
        return self.head(self.dropout(masked_mean(self.norm(x), layout.valid)))


class ProbeHead(nn.Module):
    """MAE's linear probe: BatchNorm without affine parameters (a per-feature whitening) + a linear layer."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6)
        self.head = nn.Linear(in_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(features))
