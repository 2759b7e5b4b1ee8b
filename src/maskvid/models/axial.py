"""VIMPAC's spatio-temporal layer (App. A.1, eq. 9–15): post-LN attention along grid axes, the T,H|W layout.

    block = AxialBlock(dim=96, heads=4, layout="t,h|w")
    x = block(x, TokenLayout(grid=(T, H, W), prefix=1))   # x (B, 1 + T·H·W, D): [CLS] then every token

A layout is a comma-separated list of attention blocks, each a ``|``-separated list of axes:
- ``t,h|w`` (T,H|W, VIMPAC's): attention over time at each position (eq. 12), then one block that attends along
  the column and along the row of each token and concatenates the two outputs (eq. 11, 13; the Sparse Transformer
  factorization);
- ``t|h|w``: one block over all three axes at once.

Each axis of a block gets ``1/k`` of the width and heads (k axes), so a block costs one attention's projections; the
outputs are concatenated, projected, added and LayerNorm-ed (post-LN, eq. 10–11), then the MLP the same way (eq.
14). A [CLS] token (``layout.prefix``) is put at the front of every sequence along the axis — so the tokens attend
to it too — and its outputs over the sequences are averaged (eq. 15), as the official code does. Every token is
present (VIMPAC replaces masked tokens by [MASK]; nothing is dropped). [PAD] tokens (``layout.valid`` False) are no
key of any sequence, as in the official code; the [CLS] averages over the sequences that hold a real token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskvid.errors import ConfigError, InputError
from maskvid.models.blocks import DropPath, Mlp, TokenLayout

AXES = {"t": 0, "h": 1, "w": 2}


def parse_layout(layout: str) -> list[list[str]]:
    """``"t,h|w"`` → ``[["t"], ["h", "w"]]``; every axis once."""
    groups = [group.split("|") for group in layout.split(",")]
    axes = [a for g in groups for a in g]
    if sorted(axes) != sorted(AXES):
        raise ConfigError("model.attention", f"layout {layout!r} must name each of t, h, w once")
    return groups


class AxisAttention(nn.Module):
    """Multi-head attention along one grid axis: ``(B, N, D)`` tokens (+ ``(B, P, D)`` prefix) → ``(B, N, A)``
    and the prefix's ``(B, P, A)``, averaged over the sequences (eq. 9, 15)."""

    def __init__(self, dim: int, attn_dim: int, heads: int, axis: str):
        super().__init__()
        if attn_dim % heads:
            raise ConfigError("model.heads", f"{heads} heads do not divide the {axis}-axis width {attn_dim}")
        self.heads, self.axis = heads, AXES[axis]
        self.qkv = nn.Linear(dim, 3 * attn_dim)

    def forward(self, x: torch.Tensor, prefix: torch.Tensor, grid: tuple[int, int, int],
                real: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, d = x.shape
        p = prefix.shape[1]
        rows, outer = self._lines(x, grid)  # (B·S, L, D)
        keys = occupied = None
        if real is not None:  # [PAD] is no key; a line of nothing but [PAD] attends everywhere, output unused
            keys = self._lines(real[..., None], grid)[0][..., 0]  # (B·S, L)
            occupied = keys.any(1)
            keys = F.pad(keys, (p, 0), value=True) if p else keys | ~occupied[:, None]
        if p:
            rows = torch.cat([prefix.repeat_interleave(rows.shape[0] // b, 0), rows], 1)  # (B·S, P + L, D)
        s, length = rows.shape[:2]
        q, k, v = self.qkv(rows).view(s, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if keys is None else keys[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(s, length, -1)
        if p:  # eq. 15: the [CLS]'s output is the mean over the sequences it joined
            lines = out[:, :p].reshape(b, -1, p, out.shape[-1])
            weights = torch.ones_like(lines[..., :1]) if occupied is None else \
                occupied.view(b, -1, 1, 1).to(lines.dtype)
            prefix_out = (lines * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            prefix_out = out.new_zeros(b, 0, out.shape[-1])
        tokens = out[:, p:].reshape(b, *outer, length - p, -1).movedim(3, 1 + self.axis)
        return tokens.reshape(b, -1, out.shape[-1]), prefix_out

    def _lines(self, x: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, N, C)`` → ``(B·S, L, C)``: one row per line of the grid along this axis; and the two other sizes."""
        b, _, c = x.shape
        grid_x = x.reshape(b, *grid, c).movedim(1 + self.axis, 3)  # (B, a, b', L, C): the axis last but one
        return grid_x.reshape(-1, grid_x.shape[3], c), grid_x.shape[1:3]


class AxialBlock(nn.Module):
    """One spatio-temporal layer of ``layout`` (default T,H|W), post-LN; the encoder's block interface."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, layer_scale: float | None = None, eps: float = 1e-6,
                 layout: str = "t,h|w", attn_ratio: float = 1.0):
        super().__init__()
        if layer_scale:
            raise ConfigError("model.layer_scale", "LayerScale scales pre-LN residuals; the axial layouts are post-LN")
        if attn_drop:
            raise ConfigError("model.attn_drop", "not supported by the axial layouts")
        self.groups = parse_layout(layout)
        inner = round(dim * attn_ratio)  # VIMPAC's large-half: attention at half the width, same heads
        for group in self.groups:
            if inner % len(group) or heads % len(group):
                raise ConfigError("model.heads", f"a block over {'|'.join(group)} splits attention width {inner} and "
                                  f"{heads} heads {len(group)} ways")
        self.attn = nn.ModuleList(nn.ModuleList(AxisAttention(dim, inner // len(g), heads // len(g), axis)
                                                for axis in g) for g in self.groups)
        self.proj = nn.ModuleList(nn.Linear(inner, dim) for _ in self.groups)
        self.norms = nn.ModuleList(nn.LayerNorm(dim, eps=eps) for _ in self.groups)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.norm_mlp = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        if layout.ids is not None:
            raise InputError("layout", "axial attention needs every token of the grid (hide: replace, not drop)")
        grid, p = layout.grid, layout.prefix
        for attns, proj, norm in zip(self.attn, self.proj, self.norms, strict=True):
            prefix, tokens = x[:, :p], x[:, p:]
            outs = [attn(tokens, prefix, grid, layout.valid) for attn in attns]
            mixed = torch.cat([torch.cat([o[1] for o in outs], -1), torch.cat([o[0] for o in outs], -1)], 1)
            x = norm(x + self.drop_path(self.drop(proj(mixed))))  # eq. 10–11: post-LN
        return self.norm_mlp(x + self.drop_path(self.mlp(x)))  # eq. 14
