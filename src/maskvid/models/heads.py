"""Heads over encoder tokens: MAR's bridging classifier, MAE's linear-probe head, VIMPAC's token head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class TokenHead(nn.Module):
    """VIMPAC's (BERT's) token head, eq. 16–17: ``u = LN(GELU(W h + b))``, then logits ``E u + b_word`` over the
    ``vocab_size`` real codes, ``E`` being the input embedding's weight — tied, the same storage — and ``b_word`` the
    head's own. The embedding's extra rows ([MASK], [PAD]) are never predicted.

    The embedding is held outside the module tree (it belongs to the encoder's stem), so the tied weight is trained
    once, moved once and written once in a checkpoint.
    """

    def __init__(self, embedding: nn.Embedding, vocab_size: int, eps: float = 1e-12):
        super().__init__()
        width = embedding.weight.shape[1]
        if not 2 <= vocab_size <= embedding.weight.shape[0]:
            raise ValueError(f"vocab_size {vocab_size} outside the embedding's {embedding.weight.shape[0]} rows")
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.vocab_size = vocab_size
        self._tied = (embedding,)  # a tuple: not registered as a submodule

    @property
    def weight(self) -> torch.Tensor:
        """The tied word embedding's real-code rows ``(vocab_size, width)``: a view of the stem's weight."""
        return self._tied[0].weight[: self.vocab_size]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` → ``(..., vocab_size)`` logits."""
        u = self.norm(F.gelu(self.dense(hidden)))  # eq. 16
        return F.linear(u, self.weight, self.bias)  # eq. 17


class ContrastiveHead(nn.Module):
    """VIMPAC's [CLS] projection for contrastive learning (eq. 18), MoCo v3's projector: ``layers`` linear layers,
    BatchNorm and ReLU between them, and a last BatchNorm without affine parameters (3 layers, 4096 hidden, 256
    out by default)."""

    def __init__(self, in_dim: int, hidden: int = 4096, out_dim: int = 256, layers: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"the projector needs at least one layer, got {layers}")
        parts: list[nn.Module] = []
        for i in range(layers):
            last = i == layers - 1
            parts.append(nn.Linear(in_dim if i == 0 else hidden, out_dim if last else hidden, bias=False))
            parts.append(nn.BatchNorm1d(out_dim, affine=False) if last else nn.BatchNorm1d(hidden))
            if not last:
                parts.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*parts)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` → ``(B, out_dim)``."""
        return self.mlp(cls)
