"""Decoders: MAE's (a few joint blocks over all N tokens — visible ones and mask tokens —, a norm, a linear head)
and MAM²'s (blocks over the masked tokens only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from maskvid.models.blocks import Block, TokenLayout, init_weights
from maskvid.models.layouts import LAYOUTS
from maskvid.models.locality import LocalityBias


@dataclass
class DecoderConfig:
    """VideoMAE's decoder: 4 blocks of width 384 (ViT-B; half the encoder width for ViT-S). ``head_eps``: the final
    norm's epsilon (1e-6 in VideoMAE's code, 1e-5 in Hugging Face's port)."""

    width: int = 384
    depth: int = 4
    heads: int = 6
    mlp_ratio: float = 4.0
    qv_bias: bool = True
    eps: float = 1e-6
    head_eps: float = 1e-6
    locality: float | None = None  # the first head's starting slope of a learned locality bias (models/locality.py)
    grad_checkpointing: bool = False  # recompute the blocks in backward: a ViT-B decoder holds most activations

    def to_dict(self) -> dict:
        return asdict(self)


def run_block(block: nn.Module, recompute: bool, *args) -> torch.Tensor:
    """``block(*args)``; with ``recompute``, its activations are dropped and recomputed in backward."""
    return checkpoint(block, *args, use_reentrant=False) if recompute else block(*args)


class MAEDecoder(nn.Module):
    """``rope``: the blocks rotate queries and keys by grid position (an encoder with ``pos_embed: rope``); otherwise
    position comes from the table the head adds to its input. ``config.locality``: attention starts local
    (:class:`maskvid.models.locality.LocalityBias`)."""

    def __init__(self, config: DecoderConfig, out_dim: int, rope: bool = False):
        super().__init__()
        c = config
        self.blocks = nn.ModuleList(
            Block(c.width, c.heads, mlp_ratio=c.mlp_ratio, qv_bias=c.qv_bias, eps=c.eps, rope=rope)
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.width, eps=c.head_eps)
        self.head = nn.Linear(c.width, out_dim)
        self.apply(init_weights)
        self.locality = LocalityBias(c.depth, c.heads, c.locality) if c.locality else None
        self.grad_checkpointing = c.grad_checkpointing

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(B, N, width)`` full sequence → ``(B, N, out_dim)`` (every sample has all N tokens: no padding)."""
        layout = TokenLayout(grid)
        for i, blk in enumerate(self.blocks):
            bias = self.locality(i, grid, x) if self.locality is not None else None
            x = run_block(blk, self.grad_checkpointing and self.training, x, layout, bias)
        return self.head(self.norm(x))


class MaskedDecoder(nn.Module):
    """MAM²'s decoders: blocks of the encoder's layout (``joint`` or ``divided``) over the masked tokens only —
    ``(B, M, width)`` at ``layout.ids`` — then a norm and one linear head per output (two for MAM²-c's coupled
    decoder)."""

    def __init__(self, config: DecoderConfig, out_dims: tuple[int, ...], attention: str = "joint"):
        super().__init__()
        c = config
        self.blocks = nn.ModuleList(
            LAYOUTS[attention](c.width, c.heads, mlp_ratio=c.mlp_ratio, qv_bias=c.qv_bias, eps=c.eps)
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.width, eps=c.head_eps)
        self.heads = nn.ModuleList(nn.Linear(c.width, d) for d in out_dims)
        self.apply(init_weights)
        self.grad_checkpointing = c.grad_checkpointing

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> list[torch.Tensor]:
        for blk in self.blocks:
            x = run_block(blk, self.grad_checkpointing and self.training, x, layout)
        x = self.norm(x)
        return [head(x) for head in self.heads]


class ClipOrderDecoder(nn.Module):
    """MAM²'s clip-order decoder (§2.2): each masked tube's latents ``(K, T', width)`` are split in time into two
    clips, swapped where its ``order`` is 1, and read with a [CLS] by joint blocks; the [CLS] output is projected
    onto the 2 orders. The blocks know each slot of the shuffled sequence by a learned slot embedding (without one,
    attention is blind to order and no order can be told); the latents also still carry the position the regressor
    gave them — the leak the paper blames for the task's collapse (Tab. 1f)."""

    def __init__(self, config: DecoderConfig, length: int, orders: int = 2):
        super().__init__()
        c = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width))
        self.slot_embed = nn.Parameter(torch.zeros(1, 1 + length, c.width))  # [CLS] + T' slots
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.slot_embed, std=0.02)
        self.blocks = nn.ModuleList(
            Block(c.width, c.heads, mlp_ratio=c.mlp_ratio, qv_bias=c.qv_bias, eps=c.eps) for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.width, eps=c.head_eps)
        self.head = nn.Linear(c.width, orders)
        self.apply(init_weights)

    @staticmethod
    def shuffled(tubes: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``(K, T', d)`` tubes with their two temporal halves swapped where ``order`` ``(K,)`` is 1."""
        half = tubes.shape[1] // 2
        swapped = torch.cat([tubes[:, half:], tubes[:, :half]], 1)
        return torch.where(order.bool()[:, None, None], swapped, tubes)

    def forward(self, tubes: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``(K, T', width)`` tubes, ``(K,)`` orders → ``(K, 2)`` logits over the orders."""
        x = torch.cat([self.cls_token.expand(len(tubes), -1, -1), self.shuffled(tubes, order)], 1) + self.slot_embed
        layout = TokenLayout((x.shape[1], 1, 1))
        for blk in self.blocks:
            x = blk(x, layout)
        return self.head(self.norm(x[:, 0]))
