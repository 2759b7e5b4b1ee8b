"""A trainable VQ-VAE image tokenizer (van den Oord et al. 2017) for users without a pretrained one: MAM²'s and
VIMPAC's appearance tokens are its codebook ids of each frame patch.

    vq = VQVAE(VQVAEConfig(factor=8, codebook_size=1024))
    ids = vq.encode(frames)          # frames (B, 3, H, W) in [0, 1] → (B, H/8, W/8) long ids
    images = vq.decode(ids)          # → (B, 3, H, W) in [0, 1]
    out = vq(frames)                 # recon, ids, latents before/after quantization, codebook usage

The codebook is learned by exponential moving averages of the encoder outputs assigned to each code (Razavi et al.
2019, App. A.1) — no codebook loss — and a code that goes unused (its assignment count's EMA below
``dead_threshold``) is restarted on a random encoder output of the batch (as Jukebox does), so codebook usage does
not collapse. The training loss (reconstruction + β · commitment) is a method's business
(:mod:`maskvid.methods.vqvae`); models hold no losses (DESIGN.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskvid.errors import ConfigError, InputError


@dataclass
class VQVAEConfig:
    """factor: downsampling (8 or 16: a token per 8×8 or 16×16 pixels); codebook_size: 1024 … 16384 codes of
    ``code_dim``; width: channels of the first stage (doubled at each downsampling, at most 4×); decay: the EMA's;
    dead_threshold: a code whose assignment count EMA falls below it is restarted."""

    factor: int = 8
    codebook_size: int = 1024
    code_dim: int = 64
    width: int = 64
    decay: float = 0.99
    dead_threshold: float = 1.0
    eps: float = 1e-5

    def __post_init__(self):
        if self.factor not in (4, 8, 16):
            raise ConfigError("tokenizer.factor", f"must be 4, 8 or 16, got {self.factor}")
        if not 2 <= self.codebook_size <= 65536:
            raise ConfigError("tokenizer.codebook_size", f"must be in [2, 65536], got {self.codebook_size}")
        if self.code_dim < 1:
            raise ConfigError("tokenizer.code_dim", f"must be positive, got {self.code_dim}")
        if self.width < 8 or self.width % 8:
            raise ConfigError("tokenizer.width", f"must be a positive multiple of 8 (8-group GroupNorm), got "
                              f"{self.width}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError("tokenizer.decay", f"must be in (0, 1), got {self.decay}")

    @property
    def stages(self) -> int:
        return int(math.log2(self.factor))


def check_frames(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """``frames`` if they are ``(B, 3, H, W)`` with sides divisible by ``factor`` (every tokenizer's input), else an
    InputError saying what they are."""
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[-1] % factor or frames.shape[-2] % factor:
        raise InputError("frames", f"expected (B, 3, H, W) with H and W divisible by {factor}, got "
                         f"{tuple(frames.shape)}")
    return frames


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _widths(config: VQVAEConfig) -> list[int]:
    return [config.width * min(2**i, 4) for i in range(config.stages + 1)]


class Encoder(nn.Module):
    """``(B, 3, H, W)`` in [-1, 1] → ``(B, code_dim, H/f, W/f)``: a residual block and a strided conv per stage."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        widths = _widths(config)
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        for i in range(config.stages):
            layers += [ResBlock(widths[i]), nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1)]
        layers += [ResBlock(widths[-1]), nn.GroupNorm(8, widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1],
                                                                                           config.code_dim, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """The encoder mirrored: ``(B, code_dim, h, w)`` → ``(B, 3, h·f, w·f)`` in [-1, 1] (unbounded)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        widths = _widths(config)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(config.code_dim, widths[0], 3, padding=1), ResBlock(widths[0])]
        for i in range(config.stages):
            layers += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1), ResBlock(widths[i + 1])]
        layers += [nn.GroupNorm(8, widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], 3, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class EMAQuantizer(nn.Module):
    """Nearest-code quantization with an EMA-learned codebook. Buffers: ``codebook`` ``(K, D)``, ``counts`` ``(K,)``
    (EMA of assignments), ``sums`` ``(K, D)`` (EMA of assigned vectors); updated in training mode only."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        codebook = torch.randn(config.codebook_size, config.code_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("counts", torch.ones(config.codebook_size))
        self.register_buffer("sums", codebook.clone())

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` vectors → ``(N,)`` ids of their nearest codes (squared Euclidean distance)."""
        distances = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t()
                     + self.codebook.pow(2).sum(1)[None])
        return distances.argmin(1)

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w)`` latents → ``(B, h, w)`` ids of their nearest codes."""
        b, d, h, w = z.shape
        return self.nearest(z.permute(0, 2, 3, 1).reshape(-1, d).float()).reshape(b, h, w)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, D, h, w)`` → (quantized ``(B, D, h, w)``, ids ``(B, h, w)``); in training, the codebook moves."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        ids = self.nearest(flat.detach().float())
        quantized = self.codebook[ids].to(z.dtype).reshape(b, h, w, d).permute(0, 3, 1, 2)
        if self.training:  # after the lookup: this batch is quantized with the codebook it was assigned by
            self._update(flat.detach().float(), ids)
        return quantized, ids.reshape(b, h, w)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        c = self.config
        onehot = F.one_hot(ids, c.codebook_size).to(flat.dtype)  # (N, K)
        self.counts.mul_(c.decay).add_(onehot.sum(0), alpha=1 - c.decay)
        self.sums.mul_(c.decay).add_(onehot.t() @ flat, alpha=1 - c.decay)
        total = self.counts.sum()
        smoothed = (self.counts + c.eps) / (total + c.codebook_size * c.eps) * total  # Laplace smoothing
        self.codebook.copy_(self.sums / smoothed[:, None])
        dead = self.counts < c.dead_threshold
        if bool(dead.any()):  # restart unused codes on random encoder outputs of this batch
            picks = torch.randint(len(flat), (int(dead.sum()),), device=flat.device)
            self.codebook[dead] = flat[picks]
            self.sums[dead] = flat[picks]
            self.counts[dead] = 1.0

    def usage(self, ids: torch.Tensor) -> dict:
        """Codebook use in ``ids``: the fraction of codes used and the perplexity of their distribution."""
        histogram = torch.bincount(ids.flatten(), minlength=self.config.codebook_size).float()
        p = histogram / histogram.sum().clamp(min=1)
        perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
        return {"codes_used": float((histogram > 0).float().mean()), "perplexity": float(perplexity)}


@dataclass
class TokenizerOutput:
    """recon: ``(B, 3, H, W)`` in [0, 1] units (unclamped); ids: ``(B, h, w)``; latents: the encoder's ``(B, D, h, w)``;
    quantized: their codes (for the commitment term)."""

    recon: torch.Tensor
    ids: torch.Tensor
    latents: torch.Tensor
    quantized: torch.Tensor


class VQVAE(nn.Module):
    """Encoder → EMA quantizer → decoder. Frames in [0, 1]; sides divisible by ``factor``."""

    can_decode = True
    memory_format = torch.channels_last
    """The frames' layout in the encoder's convolutions. Channels-last (NHWC) runs oneDNN's and cuDNN's NHWC kernels
    and makes the quantizer's per-position view free: 1.25× the encoder's speed on 2 CPU cores (``maskvid bench
    tokens`` measures ``vqvae_f16_nchw``, this set to ``torch.contiguous_format``, beside it). Same ids."""

    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        self.config = config or VQVAEConfig()
        self.encoder = Encoder(self.config)
        self.quantizer = EMAQuantizer(self.config)
        self.decoder = Decoder(self.config)

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    @property
    def factor(self) -> int:
        return self.config.factor

    def _checked(self, frames: torch.Tensor) -> torch.Tensor:
        return check_frames(frames, self.config.factor).contiguous(memory_format=self.memory_format) * 2.0 - 1.0

    def forward(self, frames: torch.Tensor) -> TokenizerOutput:
        latents = self.encoder(self._checked(frames))
        quantized, ids = self.quantizer(latents)
        straight = latents + (quantized - latents).detach()  # straight-through gradient to the encoder
        recon = (self.decoder(straight) + 1.0) / 2.0
        return TokenizerOutput(recon, ids, latents, quantized)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] → ``(B, H/f, W/f)`` codebook ids."""
        return self.quantizer.ids(self.encoder(self._checked(frames)))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, h, w)`` ids → ``(B, 3, h·f, w·f)`` frames in [0, 1] (clamped)."""
        if ids.dtype.is_floating_point or ids.dim() != 3:
            raise InputError("ids", f"expected (B, h, w) integer ids, got {ids.dtype} {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            raise InputError("ids", f"ids must be in [0, {self.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        codes = self.quantizer.codebook[ids].permute(0, 3, 1, 2)
        return ((self.decoder(codes) + 1.0) / 2.0).clamp(0, 1)
