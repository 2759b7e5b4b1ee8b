"""Class-id targets: each token's id in a vocabulary (a VQ codebook: MAM²'s appearance target, VIMPAC's tokens).

The ids come with the batch (``tokens``, one id per token on the model's grid, from the data pipeline or a cache),
or — with ``tokenizer: PATH`` — from a frozen tokenizer (``maskvid train-tokenizer``'s ``tokenizer.safetensors`` or
a VQGAN / DALL-E dVAE converted by ``maskvid convert-tokenizer``) run on the clip's frames on the training device:
one id per frame patch, so the patch must be one frame deep. Cached ids may hold
:data:`~maskvid.constants.PAD_TOKEN` where a clip ran past its video's end; those positions are invalid, never in
the loss. A tokenizer of factor ``f`` sees each frame resized by
``f / p`` for ``p × p`` patches, so that it gives one id per patch — as BEiT feeds DALL-E's f8 tokenizer 112² views
of 224² images for 16² patches; with ``f = p`` (MAM²'s f16 VQGAN and 16² patches) the frames go in as they are. A
head predicts the ids with a masked cross-entropy over ``vocab_size`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from maskvid.constants import PAD_TOKEN
from maskvid.errors import ConfigError, InputError
from maskvid.models.frozen import Frozen
from maskvid.models.tokenizers import load_tokenizer
from maskvid.models.tokens import reads_freely
from maskvid.targets.base import Target
from maskvid.targets.patchify import unnormalize


@dataclass(eq=False)
class TokenIds(Target):
    """``tokens`` ``(B, T', H', W')`` or ``(B, N)`` integer ids in ``[0, vocab_size)`` → ``(B, N)`` class ids; or,
    with ``tokenizer``, the ids of the clip's frame patches."""

    name = "tokens"
    inputs = ("tokens",)
    kind = "classes"
    vocab_size: int = 8192
    tokenizer: str | None = None
    patch: tuple[int, int, int] = (1, 16, 16)

    def __post_init__(self):
        super().__init__()
        self.patch = tuple(self.patch)
        self.frozen = None
        if self.tokenizer is not None:
            self._load_tokenizer()
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ConfigError("target.vocab_size", f"need an integer >= 2, got {self.vocab_size!r}")

    def _load_tokenizer(self) -> None:
        from maskvid.errors import CheckpointError

        try:
            tokenizer = load_tokenizer(self.tokenizer)
        except CheckpointError as e:
            raise ConfigError("target.tokenizer", str(e)) from None
        if self.patch[0] != 1 or self.patch[1] != self.patch[2]:
            raise ConfigError("target.tokenizer", f"an image tokenizer gives one id per square frame patch (1, p, "
                              f"p); the model's patch is {self.patch}")
        self.vocab_size = tokenizer.vocab_size
        self.frozen = Frozen(tokenizer, self.tokenizer)
        self.inputs = ("video",)

    @property
    def dim(self) -> int:
        return self.vocab_size

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor | None = None, video: torch.Tensor | None = None, **aux) -> torch.Tensor:
        if self.frozen is not None:
            tokenizer = self.frozen.module
            frames = rearrange(unnormalize(video).float(), "b c t h w -> (b t) c h w")
            p, f = self.patch[1], tokenizer.factor
            if p != f:  # one id per patch: the tokenizer sees the frame at f/p of its size
                size = (frames.shape[-2] // p * f, frames.shape[-1] // p * f)
                frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
            ids = tokenizer.encode(frames)  # (B·T, H', W')
            return rearrange(ids, "(b t) h w -> b (t h w)", b=video.shape[0])
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.dim() < 2:
            raise InputError("tokens", f"expected integer ids (B, N) or (B, T', H', W'), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        ids = tokens.flatten(1).long()
        if reads_freely(ids):  # a batch's ids on a GPU were checked on the host (check_batch)
            self.check_ids(ids)
        return ids

    def check_ids(self, tokens: torch.Tensor, key: str = "tokens") -> None:
        """InputError naming ``key`` unless every id is in ``[0, vocab_size)`` or [PAD]."""
        if tokens.numel() and (int(tokens.min()) < PAD_TOKEN or int(tokens.max()) >= self.vocab_size):
            raise InputError(key, f"ids must be in [0, {self.vocab_size}) or {PAD_TOKEN} ([PAD]), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")

    def check_batch(self, batch: dict) -> None:
        if self.frozen is None and isinstance(batch.get("tokens"), torch.Tensor):
            self.check_ids(batch["tokens"])

    def validity(self, tokens: torch.Tensor | None = None, video: torch.Tensor | None = None,
                 **aux) -> torch.Tensor | None:
        """False at [PAD]; None when there is none (or the ids come from the clip's own frames)."""
        if tokens is None or self.frozen is not None:
            return None
        real = tokens.flatten(1) != PAD_TOKEN
        if not reads_freely(real):  # learning that nothing is [PAD] would wait for the device: keep the mask
            return real
        return None if bool(real.all()) else real
