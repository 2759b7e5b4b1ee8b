"""Transformer blocks: Attention (fused qkv, VideoMAE's q/v bias, SDPA), Mlp, the joint Block and the divided
(time, then space) Block. Parameter names follow the original VideoMAE / timm layout (``attn.qkv``, ``attn.q_bias``,
``norm1``, ``mlp.fc1`` ...), which maps one to one onto Hugging Face's VideoMAE (see :mod:`maskvid.hf`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from maskvid.models.rope import rotate, rotations
from maskvid.models.tokens import fill_masked, gather_tokens


@dataclass
class TokenLayout:
    """Where a block's tokens sit on the grid.

    grid: ``(T', H', W')``. ids: ``(B, K)`` position in ``(t h w)`` order of each kept token, None when all N are
    kept in order. valid: ``(B, K)`` bool, False on padding (samples keep different counts; or, with all N kept,
    [PAD] tokens past a short clip's end), None when none is. Padding is never a key of attention.
    prefix: how many tokens without a grid position ([CLS]) come first in the sequence.
    """

    grid: tuple[int, int, int]
    ids: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    prefix: int = 0
    # RoPE's rotations per (head_dim, device, prefix); not an init field, so a copy with other ids starts empty
    _rotations: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def rotations(self, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE's ``(cos, sin)`` for these tokens (:func:`maskvid.models.rope.rotations`), made once for all the
        blocks that share this layout."""
        key = (head_dim, device, self.prefix)
        if key not in self._rotations:
            self._rotations[key] = rotations(self.grid, head_dim, self.ids, self.prefix, device)
        return self._rotations[key]

    @property
    def key_mask(self) -> torch.Tensor | None:
        """SDPA boolean mask ``(B, 1, 1, P + K)``, True = may attend; None when there is no padding."""
        if self.valid is None:
            return None
        valid = F.pad(self.valid, (self.prefix, 0), value=True)  # prefix tokens are always there
        return valid[:, None, None, :]


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection; q and v get biases, k none (VideoMAE)."""

    def __init__(self, dim: int, heads: int, qv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qv_bias else None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                rotation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``rotation``: RoPE's ``(cos, sin)`` for these tokens (:func:`maskvid.models.rope.rotations`), or None."""
        b, n, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, d_head)
        if rotation is not None:
            q, k = rotate(q, *rotation), rotate(k, *rotation)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN block over all tokens at once (joint space-time attention), optional LayerScale (``gamma_1/2``)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        eps: float = 1e-6,
        rope: bool = False,
    ):
        super().__init__()
        self.rope = rope  # position as a rotation of queries and keys (models/rope.py) instead of a table
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.gamma_1 = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale else None
        self.gamma_2 = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale else None

    def _scaled(self, x: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
        return self.drop_path(x if gamma is None else gamma * x)

    def forward(self, x: torch.Tensor, layout: TokenLayout, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``attn_bias``: added to the attention logits, ``(heads, N, N)`` (a decoder's locality prior) or None."""
        rotation = None
        if self.rope:
            rotation = layout.rotations(x.shape[-1] // self.attn.heads, x.device)
        mask = layout.key_mask
        if attn_bias is not None:
            mask = attn_bias if mask is None else attn_bias.masked_fill(~mask, float("-inf"))
        x = x + self._scaled(self.attn(self.norm1(x), mask, rotation), self.gamma_1)
        return x + self._scaled(self.mlp(self.norm2(x)), self.gamma_2)


class DividedBlock(Block):
    """TimeSformer's divided attention: attention over time at each spatial position (``attn_time``), then over
    space within each temporal slice (``attn``), then the MLP.

    With a subset of tokens (MAE encoding), the kept tokens are scattered onto the full grid and attention runs per
    row with a key mask, so any mask works; rows with no kept token are computed on zeros and thrown away.
    """

    def __init__(self, dim: int, heads: int, qv_bias: bool = True, attn_drop: float = 0.0, drop: float = 0.0,
                 eps: float = 1e-6, **kw):
        super().__init__(dim, heads, qv_bias=qv_bias, attn_drop=attn_drop, drop=drop, eps=eps, **kw)
        self.norm_time = nn.LayerNorm(dim, eps=eps)
        self.attn_time = Attention(dim, heads, qv_bias, attn_drop, drop)

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        x = x + self.drop_path(_along(self.attn_time, self.norm_time(x), layout, time=True))
        x = x + self._scaled(_along(self.attn, self.norm1(x), layout, time=False), self.gamma_1)
        return x + self._scaled(self.mlp(self.norm2(x)), self.gamma_2)


def _along(attn: Attention, x: torch.Tensor, layout: TokenLayout, time: bool) -> torch.Tensor:
    """Run ``attn`` along time (rows = spatial positions) or space (rows = temporal slices) of the grid.

    Prefix tokens ([CLS]) sit out the time attention and join every space row (TimeSformer): their output is the
    mean over rows.
    """
    b, _, d = x.shape
    t, h, w = layout.grid
    n, s = t * h * w, h * w
    prefix, x = x[:, : layout.prefix], x[:, layout.prefix :]
    if layout.ids is None:
        full, present = x, layout.valid  # all N in place; valid (if any) marks [PAD]
    else:
        full = fill_masked(x, layout.ids, layout.valid, x.new_zeros(1, 1, d), n)  # (B, N, D), zeros elsewhere
        kept = torch.ones_like(layout.ids, dtype=torch.bool) if layout.valid is None else layout.valid
        present = torch.zeros(b, n, dtype=torch.bool, device=x.device).scatter(1, layout.ids, kept)
    grid = full.view(b, t, s, d)
    rows = grid.transpose(1, 2).reshape(b * s, t, d) if time else grid.reshape(b * t, s, d)
    keys = occupied = None
    if present is not None:
        keys = present.view(b, t, s)
        keys = keys.transpose(1, 2).reshape(b * s, t) if time else keys.reshape(b * t, s)
        occupied = keys.any(1)  # rows with at least one kept token
    joins = layout.prefix and not time
    if joins:
        rows = torch.cat([prefix.repeat_interleave(t, 0), rows], 1)  # (B·T, P + S, D)
        keys = None if keys is None else F.pad(keys, (layout.prefix, 0), value=True)
    elif keys is not None:
        keys = keys | ~occupied[:, None]  # an empty row attends everywhere; its output is discarded
    out = attn(rows, None if keys is None else keys[:, None, None, :])
    if joins:
        prefix_out, out = out[:, : layout.prefix].view(b, t, layout.prefix, d), out[:, layout.prefix :]
        weights = torch.ones(b, t, 1, 1, dtype=x.dtype, device=x.device)
        if occupied is not None:  # the prefix takes the mean over slices that hold a kept token
            weights = occupied.view(b, t, 1, 1).to(x.dtype)
        prefix_out = (prefix_out * weights).sum(1) / weights.sum(1).clamp(min=1)
    else:
        prefix_out = torch.zeros_like(prefix)  # no update through time attention
    out = out.view(b, s, t, d).transpose(1, 2).reshape(b, n, d) if time else out.reshape(b, n, d)
    if layout.ids is not None:
        out = gather_tokens(out, layout.ids)
    return torch.cat([prefix_out, out], 1) if layout.prefix else out


def init_weights(module: nn.Module) -> None:
    """VideoMAE's init: xavier-uniform linears with zero bias, unit LayerNorms; patch convs like a linear."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d | nn.Conv2d):
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
        if module.bias is not None:
            nn.init.zeros_(module.bias)

