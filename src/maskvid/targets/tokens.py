"""Class-id targets: each token's id in a vocabulary (a VQ codebook: MAM²'s appearance target, VIMPAC's tokens).

The ids come with the batch (``tokens``, one id per token on the model's grid), made in the data pipeline or by a
frozen tokenizer; a head predicts them with a masked cross-entropy over ``vocab_size`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskvid.errors import ConfigError, InputError
from maskvid.targets.base import Target


@dataclass(eq=False)
class TokenIds(Target):
    """``tokens`` ``(B, T', H', W')`` or ``(B, N)`` integer ids in ``[0, vocab_size)`` → ``(B, N)`` class ids."""

    name = "tokens"
    inputs = ("tokens",)
    kind = "classes"
    vocab_size: int = 8192

    def __post_init__(self):
        super().__init__()
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ConfigError("target.vocab_size", f"need an integer >= 2, got {self.vocab_size!r}")

    @property
    def dim(self) -> int:
        return self.vocab_size

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, **aux) -> torch.Tensor:
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.dim() < 2:
            raise InputError("tokens", f"expected integer ids (B, N) or (B, T', H', W'), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        ids = tokens.flatten(1).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise InputError("tokens", f"ids must be in [0, {self.vocab_size}), got [{int(ids.min())}, "
                             f"{int(ids.max())}]")
        return ids
