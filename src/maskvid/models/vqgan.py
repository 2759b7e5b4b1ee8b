"""The encoder and quantizer of taming-transformers' VQGAN (Esser et al. 2021), under its published parameter names,
so a converted checkpoint loads one to one: MAM²'s appearance tokens come from its OpenImages Gumbel VQGAN (Tab. 1e).

    tokenizer = VQGANTokenizer(VQGANConfig(ch=128, ch_mult=(1, 1, 2, 2, 4), quantizer="gumbel", n_embed=8192))
    ids = tokenizer.encode(frames)   # (B, 3, H, W) in [0, 1] → (B, H/f, W/f), f = 2 ** (len(ch_mult) - 1)

Only the tokenizing half is here — ``encoder.*``, ``quant_conv.*``, ``quantize.*`` — as MAM² (App. D) and BEVT use
it; the decoder and the GAN loss of the checkpoint are dropped at conversion. Plain VQ takes the nearest codebook
row; Gumbel VQ the argmax of ``quantize.proj``'s logits, the mode of the distribution the published model samples
from (taming's ``GumbelQuantize`` adds Gumbel noise even in eval mode; a target must be deterministic). A
``quantize.used`` buffer (taming's ``remap``) restricts the vocabulary to the codes it lists, numbered in its order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskvid.errors import ConfigError
from maskvid.models.tokenizer import check_frames

QUANTIZERS = ("vq", "gumbel")


@dataclass
class VQGANConfig:
    """taming's ``ddconfig`` (``ch``, ``ch_mult``, ``num_res_blocks``, ``z_channels``) with the levels that carry
    attention (``attn_levels``: indices into ``ch_mult``, as ``attn_resolutions`` selects them at the training
    resolution), and the quantizer: ``vq`` or ``gumbel``, ``n_embed`` codes of ``embed_dim``; ``remapped``: the
    checkpoint carries a ``quantize.used`` list of ``n_used`` codes."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (4,)
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 16384
    quantizer: str = "vq"
    n_used: int | None = None

    def __post_init__(self):
        self.ch_mult, self.attn_levels = tuple(self.ch_mult), tuple(self.attn_levels)
        if self.quantizer not in QUANTIZERS:
            raise ConfigError("vqgan.quantizer", f"must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.ch % 32 or any(self.ch * m % 32 for m in self.ch_mult):
            raise ConfigError("vqgan.ch", f"every level's width must divide into 32 GroupNorm groups, got ch "
                              f"{self.ch} × {self.ch_mult}")
        if self.quantizer == "gumbel" and self.embed_dim != self.z_channels:  # proj reads quant_conv's output
            raise ConfigError("vqgan.embed_dim", f"a Gumbel quantizer needs embed_dim == z_channels, got "
                              f"{self.embed_dim} and {self.z_channels}")
        if any(not 0 <= i < len(self.ch_mult) for i in self.attn_levels):
            raise ConfigError("vqgan.attn_levels", f"{self.attn_levels} outside the {len(self.ch_mult)} levels")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GroupNorm → swish → conv, twice, with a 1×1 ``nin_shortcut`` when the width changes."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.norm1 = group_norm(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm2 = group_norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``h·w`` positions, 1×1 convs as projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (p(y).flatten(2).transpose(1, 2) for p in (self.q, self.k, self.v))  # (B, h·w, C)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming pads right/bottom only: the published weights expect it


class Level(nn.Module):
    """One resolution: ``block`` (ResnetBlocks), ``attn`` (one per block, or none), ``downsample`` (all but last)."""

    def __init__(self, channels_in: int, channels_out: int, blocks: int, attention: bool, downsample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(channels_in if i == 0 else channels_out, channels_out)
                                   for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(channels_out) for _ in range(blocks if attention else 0))
        self.downsample = Downsample(channels_out) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x if self.downsample is None else self.downsample(x)


class Middle(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """taming's ``Encoder`` (``double_z`` false): ``(B, 3, H, W)`` in [-1, 1] → ``(B, z_channels, H/f, W/f)``."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        widths = [config.ch * m for m in (1, *config.ch_mult)]
        last = len(config.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, config.ch, 3, padding=1)
        self.down = nn.ModuleList(Level(widths[i], widths[i + 1], config.num_res_blocks, i in config.attn_levels,
                                        downsample=i != last) for i in range(len(config.ch_mult)))
        self.mid = Middle(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class Quantize(nn.Module):
    """Plain VQ: ``embedding`` ``(n_embed, embed_dim)``; Gumbel: ``proj`` (1×1 conv to ``n_embed`` logits) and
    ``embed``; either with an optional ``used`` remap list."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.gumbel = config.quantizer == "gumbel"
        if self.gumbel:
            self.proj = nn.Conv2d(config.z_channels, config.n_embed, 1)  # taming sizes it by z_channels
            self.embed = nn.Embedding(config.n_embed, config.embed_dim)
        else:
            self.embedding = nn.Embedding(config.n_embed, config.embed_dim)
        if config.n_used is not None:
            self.register_buffer("used", torch.zeros(config.n_used, dtype=torch.long))

    @property
    def codebook(self) -> torch.Tensor:
        return (self.embed if self.gumbel else self.embedding).weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, embed_dim, h, w)`` → ``(B, h, w)`` ids (positions in ``used`` when remapped)."""
        used = getattr(self, "used", None)
        if self.gumbel:
            logits = self.proj(z)
            return (logits if used is None else logits[:, used]).argmax(1)
        codebook = self.codebook if used is None else self.codebook[used]
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None]
        return distances.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])


class VQGANTokenizer(nn.Module):
    """``encoder`` → ``quant_conv`` → ``quantize``: frames in [0, 1] → ids. No decoder (``can_decode`` false)."""

    can_decode = False

    def __init__(self, config: VQGANConfig | None = None):
        super().__init__()
        self.config = config or VQGANConfig()
        self.encoder = Encoder(self.config)
        self.quant_conv = nn.Conv2d(self.config.z_channels, self.config.embed_dim, 1)
        self.quantize = Quantize(self.config)

    @property
    def factor(self) -> int:
        return self.config.factor

    @property
    def vocab_size(self) -> int:
        return self.config.n_used or self.config.n_embed

    memory_format = torch.contiguous_format
    """NCHW: unlike the VQ-VAE and the dVAE, channels-last gains nothing here (0.96–1.00× on 2 CPU cores; its
    GroupNorms, and on CUDA they copy an NHWC input back to NCHW)."""

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1], sides divisible by ``factor`` → ``(B, H/f, W/f)`` ids."""
        frames = check_frames(frames, self.factor).contiguous(memory_format=self.memory_format)
        return self.quantize(self.quant_conv(self.encoder(frames * 2.0 - 1.0)))


def infer_vqgan_config(state: dict) -> VQGANConfig:
    """The config of a taming checkpoint's ``encoder.*``/``quant_conv.*``/``quantize.*`` keys, read off their
    names and shapes (the published ``model.yaml`` is not needed). A missing anchor key is a KeyError naming it."""
    ch = state["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    blocks = len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")})
    ch_mult = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels)
    attn_levels = tuple(i for i in levels if any(k.startswith(f"encoder.down.{i}.attn.") for k in state))
    embed_dim, z_channels = state["quant_conv.weight"].shape[:2]
    gumbel = "quantize.proj.weight" in state
    n_embed = state["quantize.embed.weight" if gumbel else "quantize.embedding.weight"].shape[0]
    used = state.get("quantize.used")
    return VQGANConfig(ch=ch, ch_mult=ch_mult, num_res_blocks=blocks, attn_levels=attn_levels,
                       z_channels=z_channels, embed_dim=embed_dim, n_embed=n_embed,
                       quantizer="gumbel" if gumbel else "vq", n_used=None if used is None else len(used))
