"""The video ViT encoder: stem → position embedding → [CLS] → pre-LN blocks → norm.

A mask hides tokens one of two ways (``hide``): ``drop`` encodes only the visible tokens (MAE; samples may keep
different numbers, handled by padding to the largest count plus a key-padding mask — one batched call, no loop over
samples — with a fast path when every sample keeps the same count), ``replace`` puts a [MASK] embedding in their
place and encodes all N (BERT, VIMPAC). Stems (``tubelet``, ``frame``, ``token``) and block layouts (``joint``,
``divided``) come from registries (:mod:`maskvid.models.stems`, :data:`maskvid.models.layouts.LAYOUTS`).

    enc = VideoViT(ViTConfig.preset("base"))
    tokens, layout = enc(video, mask)   # video (B, 3, 16, 224, 224), mask (B, 1568) bool True = hidden
    # tokens (B, K, 768): the visible tokens in (t h w) order, K = the largest visible count in the batch
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from maskvid.constants import PAD_TOKEN
from maskvid.errors import ConfigError, InputError
from maskvid.models.blocks import TokenLayout, init_weights
from maskvid.models.layouts import AXIAL, LAYOUTS
from maskvid.models.stems import STEMS
from maskvid.models.tokens import MaskOrder, order_ids, token_grid

PRESETS = {  # width, depth, heads: the field's ViT sizes (DeiT/ViT-Ti …) and a 2-block CPU size of ours
    "micro": (96, 2, 3),  # maskvid's CPU test and recipe-twin size; not a published model
    "tiny": (192, 12, 3),  # ViT-Ti
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
POS_EMBED = ("sincos", "learned", "separable", "factorized", "rope")
HIDE = ("drop", "replace")


@dataclass
class ViTConfig:
    """Encoder shape. ``pos_embed``: ``sincos`` (VideoMAE's fixed 1D table over the N flattened tokens),
    ``learned`` (one table over the grid), ``separable`` (learned space table + time table, MAM²) or ``factorized``
    (time + height + width tables, VIMPAC eq. 8) or ``rope`` (no table: 3D rotary embedding of queries and keys in
    every block, :mod:`maskvid.models.rope`; joint attention only). ``embed_norm``: a LayerNorm after embedding +
    position (VIMPAC eq. 7, BERT). ``attn_ratio``: the axial layouts' attention width over the model width
    (VIMPAC's "halved attention": 0.5).
    ``stem``: ``tubelet`` (``patch`` = t×p×p), ``frame`` (patch (1, p, p)) or ``token`` (``vocab_size`` ids on a
    grid of ``num_frames/patch[0]`` × ``size/patch[1]`` × ``size/patch[2]``, the tokenizer's downsampling).
    ``cls_token``: a learned [CLS] prefix token. ``hide``: ``drop`` or ``replace`` masked tokens."""

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
    stem: str = "tubelet"
    vocab_size: int | None = None
    cls_token: bool = False
    hide: str = "drop"
    embed_norm: bool = False
    attn_ratio: float = 1.0

    def __post_init__(self):
        self.patch = tuple(self.patch)
        token_grid(self.patch, self.num_frames, self.size)  # the tubelet divides the clip
        if self.attention not in LAYOUTS:
            raise ConfigError("model.attention", f"{self.attention!r} not in {tuple(LAYOUTS)}")
        if self.attention in AXIAL and self.hide != "replace":
            raise ConfigError("model.hide", f"{self.attention} attends along grid lines, so every token must be there: "
                              "hide masked tokens with replace (a [MASK] embedding), not drop")
        if self.attn_ratio != 1.0 and self.attention not in AXIAL:
            raise ConfigError("model.attn_ratio", f"only the axial layouts {AXIAL} take an attention width of their "
                              f"own; {self.attention} attends at the model's width")
        if self.attn_ratio != 1.0 and (not 0 < self.attn_ratio < 1 or (self.width * self.attn_ratio) % self.heads):
            raise ConfigError("model.attn_ratio", f"width {self.width} × {self.attn_ratio} must be a positive "
                              f"multiple of the {self.heads} heads, at most the width")
        STEMS.get_entry(self.stem)
        if self.stem == "frame" and self.patch[0] != 1:
            raise ConfigError("model.patch", f"the frame stem embeds 1×p×p patches; got {self.patch}")
        if (self.stem == "token") != (self.vocab_size is not None):
            raise ConfigError("model.vocab_size", "the token stem needs vocab_size, and only it takes one")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ConfigError("model.vocab_size", f"need at least 2 token ids, got {self.vocab_size}")
        if self.hide not in HIDE:
            raise ConfigError("model.hide", f"{self.hide!r} not in {HIDE}")
        if self.pos_embed not in POS_EMBED:
            raise ConfigError("model.pos_embed", f"{self.pos_embed!r} not in {POS_EMBED}")
        if self.pos_embed == "rope":
            check_rope(self.attention, self.width, self.heads)
        if self.width % self.heads:
            raise ConfigError("model.heads", f"width {self.width} is not divisible by {self.heads} heads")
        if not 0 <= self.drop_path < 1:
            raise ConfigError("model.drop_path", f"must be in [0, 1), got {self.drop_path}")

    @property
    def grid(self) -> tuple[int, int, int]:
        return token_grid(self.patch, self.num_frames, self.size)

    @classmethod
    def preset(cls, name: str, **overrides) -> ViTConfig:
        if name not in PRESETS:
            raise ConfigError("model.preset", f"{name!r} not in {tuple(PRESETS)}")
        width, depth, heads = PRESETS[name]
        return cls(**{"width": width, "depth": depth, "heads": heads, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def check_rope(attention: str, width: int, heads: int, heads_key: str = "model.heads") -> None:
    """RoPE turns each head's channels in pairs, a share per grid axis: joint attention and ≥ 6 even channels."""
    if attention != "joint":
        raise ConfigError("model.pos_embed", f"rope needs joint attention (it rotates by grid position in one "
                          f"sequence); got {attention!r}")
    head_dim = width // heads
    if head_dim % 2 or head_dim < 6:
        raise ConfigError(heads_key, f"rope turns channel pairs, at least one per axis: a head needs an even width "
                          f"of 6 or more; {width} / {heads} heads = {head_dim}")


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
        elif kind == "factorized":
            self.pos_embed_time = nn.Parameter(torch.zeros(t, dim))
            self.pos_embed_height = nn.Parameter(torch.zeros(h, dim))
            self.pos_embed_width = nn.Parameter(torch.zeros(w, dim))
        for p in self.parameters():
            nn.init.trunc_normal_(p, std=0.02)

    def table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(N, D)`` embedding of ``grid`` (the training grid or another one)."""
        t, h, w = grid
        if not self.adds:
            raise ConfigError("model.pos_embed", "rope has no position table to read (it rotates queries and keys)")
        if self.kind == "sincos":
            return sincos_table(t * h * w, self.dim)
        if self.kind == "learned":
            return resize_grid_table(self.pos_embed, self.grid, grid)
        time = resize_grid_table(self.pos_embed_time, self.grid[:1], (t,))  # (T', D)
        if self.kind == "factorized":  # pos^T(t) + pos^H(i) + pos^W(j)
            height = resize_grid_table(self.pos_embed_height, self.grid[1:2], (h,))
            width = resize_grid_table(self.pos_embed_width, self.grid[2:], (w,))
            return (time[:, None, None] + height[None, :, None] + width[None, None, :]).reshape(t * h * w, self.dim)
        space = resize_grid_table(self.pos_embed_space, self.grid[1:], (h, w))  # (H'W', D)
        return (time[:, None, :] + space[None, :, :]).reshape(t * h * w, self.dim)

    def table_for(self, grid: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
        """:meth:`table` on ``like``'s device and dtype; the fixed sincos table is cached per grid and device."""
        if self.kind == "sincos":  # not a parameter, not in the state dict
            key = (grid, like.device)
            if getattr(self, "_cache_key", None) != key:
                self._cache, self._cache_key = self.table(grid).to(like.device), key
            return self._cache.to(like.dtype)
        return self.table(grid).to(like.dtype)

    @property
    def adds(self) -> bool:
        """False for ``rope``: position then enters in attention, and there is no table to add."""
        return self.kind != "rope"

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return x + self.table_for(grid, x) if self.adds else x


def visible_layout(mask: torch.Tensor, grid: tuple[int, int, int], order: MaskOrder | None = None) -> TokenLayout:
    """Indices of the visible tokens of each sample (in order), padded to the batch's largest visible count; from
    ``order`` (the mask's, made on the host) when given, so nothing is read back from the device."""
    if order is not None:
        if not order.visible_everywhere:
            raise InputError("mask", "a sample has every token masked; the encoder needs at least one visible")
        return TokenLayout(grid, order.visible_ids, order.visible_valid)
    if bool(mask.all(1).any()):
        raise InputError("mask", "a sample has every token masked; the encoder needs at least one visible")
    ids, valid = order_ids(~mask)  # (B, K)
    return TokenLayout(grid, ids, valid)


class VideoViT(nn.Module):
    """Video ViT encoder (VideoMAE). ``forward(x, mask=None) -> (tokens, layout)``; ``x`` is the stem's input
    (``video`` or ``tokens``, :attr:`input_key`)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = STEMS[c.stem](c.channels, c.width, c.patch, c.vocab_size)
        self.pos_embed = PositionEmbedding(c.pos_embed, c.grid, c.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width)) if c.cls_token else None
        pixels = c.stem != "token"  # the token stem has its own [MASK] id
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.width)) if c.hide == "replace" and pixels else None
        self.embed_norm = nn.LayerNorm(c.width, eps=c.eps) if c.embed_norm else None
        rates = torch.linspace(0, c.drop_path, c.depth).tolist()  # stochastic depth grows with depth
        axial = {"attn_ratio": c.attn_ratio} if c.attention in AXIAL else {}
        if c.pos_embed == "rope":
            axial["rope"] = True
        self.blocks = nn.ModuleList(
            LAYOUTS[c.attention](c.width, c.heads, mlp_ratio=c.mlp_ratio, qv_bias=c.qv_bias, drop=c.drop,
                                 attn_drop=c.attn_drop, drop_path=rate, layer_scale=c.layer_scale, eps=c.eps, **axial)
            for rate in rates
        )
        self.norm = nn.LayerNorm(c.width, eps=c.eps) if c.final_norm else nn.Identity()
        self.apply(init_weights)
        for token in (self.cls_token, self.mask_token):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)

    @property
    def input_key(self) -> str:
        return self.patch_embed.input_key

    def grid_of(self, x: torch.Tensor) -> tuple[int, int, int]:
        return self.patch_embed.grid_of(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_prefix: bool = False,
                order: MaskOrder | None = None, padded: bool | None = None):
        """Tokens ``(B, K, D)`` (the visible ones when a mask drops, else all N) and their layout; with
        ``return_prefix`` also the [CLS] outputs ``(B, 1, D)`` (None without a [CLS] token). ``order``: the
        mask's :class:`~maskvid.models.tokens.MaskOrder`, and ``padded``: whether any token id is [PAD], both
        known on the host; each spares a GPU forward a read of the device."""
        grid = self.grid_of(x)
        if mask is not None:
            n = grid[0] * grid[1] * grid[2]
            if mask.shape != (x.shape[0], n) or mask.dtype != torch.bool:
                got = f"{mask.dtype} {tuple(mask.shape)}"
                raise InputError("mask", f"expected bool (B={x.shape[0]}, N={n}), got {got}")
        real = self.patch_embed.real_of(x, padded)  # (B, N) False at [PAD], or None
        if mask is not None and self.config.hide == "drop":
            # [PAD] is never encoded; it is known on the device only, so a token clip orders its mask there
            layout = visible_layout(mask, grid, order) if real is None else visible_layout(mask | ~real, grid)
            x = self.patch_embed.embed_at(x, layout.ids)  # (B, K, D)
            if self.pos_embed.adds:
                x = x + self.pos_embed.table_for(grid, x)[layout.ids]
        else:
            layout = TokenLayout(grid, valid=real)  # [PAD] is no key of any attention
            x = self.pos_embed(self._embed_all(x, mask), grid)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.to(x.dtype).expand(x.shape[0], -1, -1), x], 1)
            layout.prefix = 1
        if self.embed_norm is not None:  # eq. 7: h⁰ = LN(embed(x) + pos)
            x = self.embed_norm(x)
        for blk in self.blocks:
            if self.config.grad_checkpointing and self.training:
                x = checkpoint(blk, x, layout, use_reentrant=False)
            else:
                x = blk(x, layout)
        x = self.norm(x)
        tokens = x[:, layout.prefix :]
        if return_prefix:
            return tokens, layout, (x[:, : layout.prefix] if layout.prefix else None)
        return tokens, layout

    def _embed_all(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """All N embeddings; masked positions (``hide: replace``) become [MASK] before the blocks see them."""
        if mask is None:
            return self.patch_embed(x)
        if self.mask_token is None:  # the token stem: [MASK] is an id of its vocabulary
            ids = x.flatten(1)
            return self.patch_embed(ids.masked_fill(mask & (ids != PAD_TOKEN), self.patch_embed.mask_id))
        e = self.patch_embed(x)
        return torch.where(mask[..., None], self.mask_token.to(e.dtype), e)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that AdamW should not decay (position tables, [CLS], [MASK]; norms and biases are
        found by shape)."""
        return {name for name, _ in self.named_parameters()
                if name.startswith("pos_embed.") or name in ("cls_token", "mask_token")}


def config_from_dict(values: dict) -> ViTConfig:
    """A :class:`ViTConfig` from a plain dict (e.g. a checkpoint's), refusing unknown keys."""
    known = set(ViTConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", f"not a model option; known: {', '.join(sorted(known))}")
    return replace(ViTConfig(), **values)
