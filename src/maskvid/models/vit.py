"""The video ViT encoder: tubelet embedding → position embedding → pre-LN blocks → norm.

Given a mask it encodes only the visible tokens (MAE); samples may keep different numbers of tokens, handled by
padding to the largest count plus a key-padding mask (one batched call, no loop over samples), with a fast path
when every sample keeps the same count.

    enc = VideoViT(ViTConfig.preset("base"))
    tokens, layout = enc(video, mask)   # video (B, 3, 16, 224, 224), mask (B, 1568) bool True = hidden
    # tokens (B, K, 768): the visible tokens in (t h w) order, K = the largest visible count in the batch
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from maskvid.errors import ConfigError
from maskvid.models.blocks import Block, DividedBlock, TokenLayout

PRESETS = {  # width, depth, heads (ViT sizes; VideoMAE's tiny is a 2-block CPU test size of ours)
    "tiny": (96, 2, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
ATTENTION = ("joint", "divided")  # "t_hw" (VIMPAC) is reserved for its own issue
POS_EMBED = ("sincos", "learned", "separable")


@dataclass
class ViTConfig:
    """Encoder shape. ``pos_embed``: ``sincos`` (VideoMAE's fixed 1D table over the N flattened tokens),
    ``learned`` (one table over the grid) or ``separable`` (learned space table + time table, MAM²/VIMPAC)."""

    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    patch: tuple[int, int, int] = (2, 16, 16)
    num_frames: int = 16
    size: int = 224
    channels: int = 3
    qv_bias: bool = True
    attention: str = "joint"
    pos_embed: str = "sincos"
    drop_path: float = 0.0
    drop: float = 0.0
    attn_drop: float = 0.0
    layer_scale: float | None = None
    final_norm: bool = True  # MAE pretraining ends with a norm; a mean-pooling classifier uses fc_norm instead
    eps: float = 1e-6
    grad_checkpointing: bool = False

    def __post_init__(self):
        self.patch = tuple(self.patch)
        t, p, q = self.patch
        if self.num_frames % t or self.size % p or self.size % q:
            raise ConfigError("model.patch", f"tubelet {self.patch} does not divide {self.num_frames}x{self.size}²")
        if self.attention not in ATTENTION:
            hint = " (t_hw is not implemented yet)" if self.attention == "t_hw" else ""
            raise ConfigError("model.attention", f"{self.attention!r} not in {ATTENTION}{hint}")
        if self.pos_embed not in POS_EMBED:
            raise ConfigError("model.pos_embed", f"{self.pos_embed!r} not in {POS_EMBED}")
        if self.width % self.heads:
            raise ConfigError("model.heads", f"width {self.width} is not divisible by {self.heads} heads")
        if not 0 <= self.drop_path < 1:
            raise ConfigError("model.drop_path", f"must be in [0, 1), got {self.drop_path}")

    @property
    def grid(self) -> tuple[int, int, int]:
        t, p, q = self.patch
        return self.num_frames // t, self.size // p, self.size // q

    @classmethod
    def preset(cls, name: str, **overrides) -> ViTConfig:
        if name not in PRESETS:
            raise ConfigError("model.preset", f"{name!r} not in {tuple(PRESETS)}")
        width, depth, heads = PRESETS[name]
        return cls(**{"width": width, "depth": depth, "heads": heads, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def sincos_table(positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed table ``(positions, dim)``: sin on even, cos on odd channels, 10000^(2⌊j/2⌋/d)."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    rate = torch.pow(10000.0, 2 * (torch.arange(dim) // 2).double() / dim)
    angle = pos / rate
    table = torch.empty_like(angle)
    table[:, 0::2], table[:, 1::2] = angle[:, 0::2].sin(), angle[:, 1::2].cos()
    return table.float()


def resize_grid_table(table: torch.Tensor, old: tuple[int, ...], new: tuple[int, ...]) -> torch.Tensor:
    """``(prod(old), D)`` learned table on a 1-, 2- or 3-D grid → ``(prod(new), D)`` by (tri)linear interpolation."""
    if tuple(old) == tuple(new):
        return table
    d = table.shape[-1]
    grid = table.reshape(1, *old, d).movedim(-1, 1)  # (1, D, *old)
    mode = {1: "linear", 2: "bicubic", 3: "trilinear"}[len(old)]
    out = F.interpolate(grid.float(), size=tuple(new), mode=mode, align_corners=False)
    return out.movedim(1, -1).reshape(-1, d).to(table.dtype)


class PositionEmbedding(nn.Module):
    """Adds position to ``(B, N, D)`` tokens of any grid; learned tables are interpolated to a new grid."""

    def __init__(self, kind: str, grid: tuple[int, int, int], dim: int):
        super().__init__()
        self.kind, self.grid, self.dim = kind, tuple(grid), dim
        t, h, w = grid
        if kind == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(t * h * w, dim))
        elif kind == "separable":
            self.pos_embed_space = nn.Parameter(torch.zeros(h * w, dim))
            self.pos_embed_time = nn.Parameter(torch.zeros(t, dim))
        for p in self.parameters():
            nn.init.trunc_normal_(p, std=0.02)

    def table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(N, D)`` embedding of ``grid`` (the training grid or another one)."""
        t, h, w = grid
        if self.kind == "sincos":
            return sincos_table(t * h * w, self.dim)
        if self.kind == "learned":
            return resize_grid_table(self.pos_embed, self.grid, grid)
        space = resize_grid_table(self.pos_embed_space, self.grid[1:], (h, w))  # (H'W', D)
        time = resize_grid_table(self.pos_embed_time, self.grid[:1], (t,))  # (T', D)
        return (time[:, None, :] + space[None, :, :]).reshape(t * h * w, self.dim)

    def table_for(self, grid: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
        """:meth:`table` on ``like``'s device and dtype; the fixed sincos table is cached per grid and device."""
        if self.kind == "sincos":  # not a parameter, not in the state dict
            key = (grid, like.device)
            if getattr(self, "_cache_key", None) != key:
                self._cache, self._cache_key = self.table(grid).to(like.device), key
            return self._cache.to(like.dtype)
        return self.table(grid).to(like.dtype)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return x + self.table_for(grid, x)


def visible_layout(mask: torch.Tensor, grid: tuple[int, int, int]) -> TokenLayout:
    """Indices of the visible tokens of each sample (in order), padded to the batch's largest visible count."""
    visible = ~mask  # (B, N)
    counts = visible.sum(1)
    most = int(counts.max())
    if most == 0:
        raise ConfigError("mask", "a sample has every token masked; the encoder needs at least one visible")
    # a stable sort puts each sample's visible positions first, in (t h w) order
    ids = torch.argsort((~visible).to(torch.uint8), dim=1, stable=True)[:, :most]  # (B, K)
    if bool((counts == most).all()):
        return TokenLayout(grid, ids, None)
    valid = torch.arange(most, device=mask.device)[None, :] < counts[:, None]
    return TokenLayout(grid, ids, valid)


class VideoViT(nn.Module):
    """Video ViT encoder (VideoMAE). ``forward(video, mask=None) -> (tokens, layout)``."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = nn.Conv3d(c.channels, c.width, kernel_size=c.patch, stride=c.patch)
        self.pos_embed = PositionEmbedding(c.pos_embed, c.grid, c.width)
        rates = torch.linspace(0, c.drop_path, c.depth).tolist()  # stochastic depth grows with depth
        block = DividedBlock if c.attention == "divided" else Block
        self.blocks = nn.ModuleList(
            block(c.width, c.heads, mlp_ratio=c.mlp_ratio, qv_bias=c.qv_bias, drop=c.drop, attn_drop=c.attn_drop,
                  drop_path=rate, layer_scale=c.layer_scale, eps=c.eps)
            for rate in rates
        )
        self.norm = nn.LayerNorm(c.width, eps=c.eps) if c.final_norm else nn.Identity()
        self.apply(init_weights)

    def grid_of(self, video: torch.Tensor) -> tuple[int, int, int]:
        if video.dim() != 5 or video.shape[1] != self.config.channels:
            raise ConfigError("video", f"expected (B, {self.config.channels}, T, H, W), got {tuple(video.shape)}")
        t, p, q = self.config.patch
        _, _, frames, height, width = video.shape
        if frames % t or height % p or width % q:
            raise ConfigError("video", f"{frames}x{height}x{width} is not divisible by the tubelet {self.config.patch}")
        return frames // t, height // p, width // q

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, TokenLayout]:
        grid = self.grid_of(video)
        if mask is None:
            layout = TokenLayout(grid)
            x = self.patch_embed(video).flatten(2).transpose(1, 2)  # (B, N, D), tokens in (t h w) order
            x = self.pos_embed(x, grid)
        else:
            n = grid[0] * grid[1] * grid[2]
            if mask.shape != (video.shape[0], n) or mask.dtype != torch.bool:
                got = f"{mask.dtype} {tuple(mask.shape)}"
                raise ConfigError("mask", f"expected bool (B={video.shape[0]}, N={n}), got {got}")
            layout = visible_layout(mask, grid)
            x = self._embed_visible(video, layout)  # (B, K, D)
        for blk in self.blocks:
            if self.config.grad_checkpointing and self.training:
                x = checkpoint(blk, x, layout, use_reentrant=False)
            else:
                x = blk(x, layout)
        return self.norm(x), layout

    def _embed_visible(self, video: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Embed only the kept tubelets: the Conv3d's weights as a linear map on gathered patches, so the masked
        90% cost a copy, not a convolution (same numbers as embedding all and gathering)."""
        t, p, q = self.config.patch
        patches = rearrange(video, "b c (n t) (h p) (w q) -> b (n h w) (c t p q)", t=t, p=p, q=q)
        patches = patches.gather(1, layout.ids[..., None].expand(-1, -1, patches.shape[-1]))  # (B, K, C·t·p·q)
        x = F.linear(patches, self.patch_embed.weight.flatten(1), self.patch_embed.bias)
        table = self.pos_embed.table_for(layout.grid, x)  # (N, D)
        return x + table[layout.ids]

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay (position tables; norms and biases are found by shape)."""
        return {name for name, _ in self.named_parameters() if name.startswith("pos_embed.")}


def init_weights(module: nn.Module) -> None:
    """VideoMAE's init: xavier-uniform linears with zero bias, unit LayerNorms; the patch conv like a linear."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d):
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def config_from_dict(values: dict) -> ViTConfig:
    """A :class:`ViTConfig` from a plain dict (e.g. a checkpoint's), refusing unknown keys."""
    known = set(ViTConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", f"not a model option; known: {', '.join(sorted(known))}")
    return replace(ViTConfig(), **values)
