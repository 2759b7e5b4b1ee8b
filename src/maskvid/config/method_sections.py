"""The sections of one method each: ``tokenizer`` (``method: vqvae``), ``mam2``, ``vimpac``.

Each field's docstring is its documentation (``configs/README.md``, :mod:`maskvid.config.docs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from maskvid.errors import ConfigError
from maskvid.models.tokenizer import VQVAEConfig
from maskvid.validation import at_least, check_fields, positive


@dataclass
class TokenizerConfig:
    """The trainable VQ-VAE of `method: vqvae` (`maskvid train-tokenizer`): MAM²'s and VIMPAC's appearance tokens."""

    factor: int = 8
    """pixels per token side: 4, 8 or 16"""
    codebook_size: int = 1024
    """codes (MAM²'s tokenizers: 1024–16384)"""
    code_dim: int = 64
    """the codes' dimension"""
    width: int = 64
    """channels of the first conv stage (doubled per downsampling, at most 4×)"""
    decay: float = 0.99
    """the EMA codebook's decay"""
    dead_threshold: float = 1.0
    """a code whose assignment-count EMA falls below this is restarted on an encoder output"""
    commitment: float = 0.25
    """β of the commitment term"""

    def __post_init__(self):
        check_fields(self, "tokenizer")
        at_least("tokenizer", 0, commitment=self.commitment, dead_threshold=self.dead_threshold)
        self.vqvae()  # factor, codebook size, widths and decay checked now

    def vqvae(self) -> VQVAEConfig:
        return VQVAEConfig(self.factor, self.codebook_size, self.code_dim, self.width, self.decay,
                           self.dead_threshold)


@dataclass
class Mam2Config:
    """MAM²'s regressor and Table 2's switches (`method: mam2`); the decoders are `heads` (appearance, motion)."""

    regressor_depth: int = 4
    """cross-attention blocks of the latent regressor (Tab. 9: 4)"""
    width: int | None = None
    """regressor and decoder width (null: the encoder's; else a projection, Tab. 1c)"""
    heads: int | None = None
    """their attention heads (null: the encoder's)"""
    alpha: float = 2.0
    """the alignment term's weight (eq. 4)"""
    regressor: bool = True
    """Tab. 2 "w/o regressor": false (the decoders then read all tokens, MAE-style; there is nothing to align)"""
    alignment: bool = True
    """Tab. 2 "w/o alignment": false (only means something with a regressor)"""
    coupled: bool = False
    """Tab. 2 MAM²-c: one decoder with a linear head per target"""

    def __post_init__(self):
        check_fields(self, "mam2")
        at_least("mam2", 1, regressor_depth=self.regressor_depth, width=self.width, heads=self.heads)
        at_least("mam2", 0, alpha=self.alpha)


@dataclass
class VimpacConfig:
    """VIMPAC's losses and heads (`method: vimpac`); the mask is `mask` (block3d), the pair `data.sampling: pair`."""

    alpha: float = 1.0
    """the contrastive term's weight α in L_mask + α·γ·L_cl (eq. 6; Tab. 16: 1.0); 0: mask-then-predict alone"""
    temperature: float = 0.2
    """γ of eq. 19–20 (the official code's 0.2, MoCo v3's)"""
    noise: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """what a masked token becomes: [MASK], a random code, itself (BERT; App. G.3: [1, 0, 0] is steadier at scale)"""
    tokenizer: str | None = None
    """a tokenizer file: ids computed from the clip on the device (null: read from `data.tokens_cache`)"""
    proj_hidden: int = 4096
    """the [CLS] projector's hidden width (MoCo v3: 4096)"""
    proj_dim: int = 256
    """its output width (256)"""
    proj_layers: int = 3
    """its linear layers (3)"""

    def __post_init__(self):
        check_fields(self, "vimpac")
        at_least("vimpac", 0, alpha=self.alpha)
        positive("vimpac", temperature=self.temperature)
        at_least("vimpac", 1, proj_hidden=self.proj_hidden, proj_dim=self.proj_dim, proj_layers=self.proj_layers)
        self.noise = tuple(float(p) for p in self.noise)
        if len(self.noise) != 3 or min(self.noise) < 0 or abs(sum(self.noise) - 1) > 1e-6:
            raise ConfigError("vimpac.noise", f"three non-negative probabilities summing to 1, got {self.noise}")
