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
present (VIMPAC replaces masked tokens by [MASK]; nothing is dropped).
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

    def forward(self, x: torch.Tensor, prefix: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
        b, _, d = x.shape
        p = prefix.shape[1]
        grid_x = x.view(b, *grid, d).movedim(1 + self.axis, 3)  # (B, a, b', L, D): the axis last but one
        outer = grid_x.shape[1:3]
        rows = grid_x.reshape(-1, grid_x.shape[3], d)  # (B·S, L, D)
        if p:
            rows = torch.cat([prefix.repeat_interleave(rows.shape[0] // b, 0), rows], 1)  # (B·S, P + L, D)
        s, length = rows.shape[:2]
        q, k, v = self.qkv(rows).view(s, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(s, length, -1)  # (B·S, P + L, A)
        prefix_out = out[:, :p].reshape(b, -1, p, out.shape[-1]).mean(1) if p else out.new_zeros(b, 0, out.shape[-1])
        # eq. 15: the [CLS]'s output is the mean over the sequences it joined
        tokens = out[:, p:].reshape(b, *outer, length - p, -1).movedim(3, 1 + self.axis)
        return tokens.reshape(b, -1, out.shape[-1]), prefix_out


class AxialBlock(nn.Module):
    """One spatio-temporal layer of ``layout`` (default T,H|W), post-LN; the encoder's block interface."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, layer_scale: float | None = None, eps: float = 1e-6,
                 layout: str = "t,h|w"):
        super().__init__()
        if layer_scale:
            raise ConfigError("model.layer_scale", "LayerScale scales pre-LN residuals; the axial layouts are post-LN")
        if attn_drop:
            raise ConfigError("model.attn_drop", "not supported by the axial layouts")
        self.groups = parse_layout(layout)
        for group in self.groups:
            if dim % len(group) or heads % len(group):
                raise ConfigError("model.heads", f"a block over {'|'.join(group)} splits width {dim} and {heads} "
                                  f"heads {len(group)} ways")
        self.attn = nn.ModuleList(nn.ModuleList(AxisAttention(dim, dim // len(g), heads // len(g), axis)
                                                for axis in g) for g in self.groups)
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in self.groups)
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
            outs = [attn(tokens, prefix, grid) for attn in attns]
            mixed = torch.cat([torch.cat([o[1] for o in outs], -1), torch.cat([o[0] for o in outs], -1)], 1)
            x = norm(x + self.drop_path(self.drop(proj(mixed))))  # eq. 10–11: post-LN
        return self.norm_mlp(x + self.drop_path(self.mlp(x)))  # eq. 14
