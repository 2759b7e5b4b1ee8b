"""MAM²'s latent contextual regressor (after CAE, Chen et al. 2022; MAM² §2.1, Tab. 9): a stack of cross-attention
blocks in which the masked tokens' queries — a learnable mask query plus each masked position's embedding — attend
to the visible tokens' latents (keys and values) and regress the latents of the masked tokens.

    regressor = LatentRegressor(width=768, depth=4, heads=12)
    latents = regressor(queries, visible, visible_valid)   # (B, M, D) from (B, M, D) queries, (B, K, D) visible

Queries never attend to each other, so each masked token's regressed latent depends only on its own query and the
visible tokens ("space-time agnostic": no self-attention among the masked positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskvid.models.blocks import Mlp, init_weights


class CrossAttention(nn.Module):
    """Multi-head attention of ``queries`` ``(B, M, D)`` over ``context`` ``(B, K, D)``; ``valid`` ``(B, K)`` marks
    real context tokens (padding is never attended to)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        b, m, d = queries.shape
        q = self.q(queries).reshape(b, m, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = valid[:, None, None, :] if valid is not None else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, m, d))


class RegressorBlock(nn.Module):
    """Pre-LN: ``q = q + CrossAttn(LN(q), LN(context))``, then ``q = q + Mlp(LN(q))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.norm_context = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, queries: torch.Tensor, context: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        queries = queries + self.cross_attn(self.norm_q(queries), self.norm_context(context), valid)
        return queries + self.mlp(self.norm2(queries))


class LatentRegressor(nn.Module):
    """``depth`` :class:`RegressorBlock` and a final LayerNorm (MAM²: 4 blocks at the encoder's width)."""

    def __init__(self, width: int, depth: int = 4, heads: int = 12, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.blocks = nn.ModuleList(RegressorBlock(width, heads, mlp_ratio, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=eps)
        self.apply(init_weights)

    def forward(self, queries: torch.Tensor, visible: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            queries = block(queries, visible, valid)
        return self.norm(queries)
