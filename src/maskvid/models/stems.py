"""Input stems: what turns a clip (or its token ids) into one embedding per position of the token grid.

- ``tubelet``: a ``t×p×p`` Conv3d over pixels (VideoMAE, MGM, MME);
- ``frame``: a ``p×p`` Conv2d applied to every frame, i.e. ``1×p×p`` patches (MAM², TimeSformer);
- ``token``: an embedding table over a vocabulary plus [MASK] and [PAD] (VIMPAC's VQ tokens).

Every stem embeds the whole grid (``stem(x) -> (B, N, D)``) or only chosen positions (``stem.embed_at(x, ids)``,
MAE's visible tokens: the masked 90% cost a copy, not a convolution), and reads the grid off its input. The module
sits at ``encoder.patch_embed`` so the tubelet's weights keep VideoMAE's names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from maskvid.constants import PAD_TOKEN
from maskvid.errors import InputError
from maskvid.models.tokens import gather_tokens, reads_freely
from maskvid.registry import Registry

Grid = tuple[int, int, int]


class TubeletStem(nn.Conv3d):
    """``(B, C, T, H, W)`` pixels → one embedding per ``t×p×p`` tubelet."""

    input_key = "video"

    def __init__(self, channels: int, width: int, patch: tuple[int, int, int], vocab_size: int | None = None):
        super().__init__(channels, width, kernel_size=patch, stride=patch)
        self.patch = tuple(patch)

    def grid_of(self, video: torch.Tensor) -> Grid:
        if video.dim() != 5 or video.shape[1] != self.in_channels:
            raise InputError("video", f"expected (B, {self.in_channels}, T, H, W), got {tuple(video.shape)}")
        t, p, q = self.patch
        _, _, frames, height, width = video.shape
        if frames % t or height % p or width % q:
            raise InputError("video", f"{frames}x{height}x{width} is not divisible by the patch {self.patch}")
        return frames // t, height // p, width // q

    @staticmethod
    def real_of(video: torch.Tensor, padded: bool | None = None) -> None:
        """Pixels have no [PAD]: every position is real."""
        return None

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        # (B, N, D), tokens in (t h w) order. Contiguous: the transposed view would carry its layout through every
        # residual add of every block (x + f(x) keeps x's strides), each LayerNorm and linear copying it again and
        # each add running strided — on an H100 the full-token ViT-B step spent 30 ms of its 142 on copies
        # against transformers' 17 (whose residual adds put the contiguous branch first)
        return super().forward(video).flatten(2).transpose(1, 2).contiguous()

    def embed_at(self, video: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of positions ``ids`` ``(B, K)`` only: the conv as a linear map on the gathered patches."""
        t, p, q = self.patch
        patches = rearrange(video, "b c (n t) (h p) (w q) -> b (n h w) (c t p q)", t=t, p=p, q=q)
        return F.linear(gather_tokens(patches, ids), self.weight.flatten(1), self.bias)  # (B, K, D)


class FrameStem(nn.Conv2d):
    """``(B, C, T, H, W)`` pixels → one embedding per ``p×p`` patch of every frame (patch ``(1, p, p)``)."""

    input_key = "video"

    def __init__(self, channels: int, width: int, patch: tuple[int, int, int], vocab_size: int | None = None):
        super().__init__(channels, width, kernel_size=patch[1:], stride=patch[1:])
        self.patch = tuple(patch)

    grid_of = TubeletStem.grid_of
    real_of = staticmethod(TubeletStem.real_of)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        frames = rearrange(video, "b c t h w -> (b t) c h w")
        x = super().forward(frames).flatten(2).transpose(1, 2)  # (B·T, H'W', D)
        return rearrange(x, "(b t) s d -> b (t s) d", b=b)

    def embed_at(self, video: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        _, p, q = self.patch
        patches = rearrange(video, "b c t (h p) (w q) -> b (t h w) (c p q)", p=p, q=q)
        return F.linear(gather_tokens(patches, ids), self.weight.flatten(1), self.bias)


class TokenStem(nn.Embedding):
    """``(B, T', H', W')`` integer ids → embeddings. Ids ``[0, vocab_size)`` are codes, ``vocab_size`` is [MASK], and
    ``-1`` (:data:`~maskvid.constants.PAD_TOKEN`, where a clip ran past its video's end) is [PAD], embedded by row
    ``vocab_size + 1`` (:attr:`pad_id`)."""

    input_key = "tokens"

    def __init__(self, channels: int, width: int, patch: tuple[int, int, int], vocab_size: int | None = None):
        if not vocab_size:
            raise ValueError("the token stem needs vocab_size")
        super().__init__(vocab_size + 2, width)
        self.vocab_size = vocab_size
        nn.init.trunc_normal_(self.weight, std=0.02)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def pad_id(self) -> int:
        return self.vocab_size + 1

    def grid_of(self, tokens: torch.Tensor) -> Grid:
        if tokens.dim() != 4 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise InputError("tokens", f"expected integer ids (B, T', H', W'), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        return tuple(tokens.shape[1:])

    @staticmethod
    def real_of(tokens: torch.Tensor, padded: bool | None = None) -> torch.Tensor | None:
        """``(B, N)`` bool, False at [PAD]; None when the batch has none (the usual case: no key mask needed).
        ``padded``: whether any id is [PAD], when the caller knows (from the host batch); None: found out here, a
        read that on a GPU waits for the device."""
        if padded is False:
            return None
        real = tokens.flatten(1) != PAD_TOKEN
        return real if padded else None if bool(real.all()) else real

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._embed(tokens.flatten(1))  # (B, N, D)

    def embed_at(self, tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self._embed(gather_tokens(tokens.flatten(1), ids))  # (B, K, D)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        # ids on a GPU were checked on the host (the method's prepare) or made in range (tokenizer, BERT noise)
        if reads_freely(ids) and ids.numel() and (int(ids.min()) < PAD_TOKEN or int(ids.max()) > self.vocab_size):
            raise InputError("tokens", f"ids must be in [{PAD_TOKEN}, {self.vocab_size}] ({self.vocab_size} = "
                             f"[MASK], {PAD_TOKEN} = [PAD]), got [{int(ids.min())}, {int(ids.max())}]")
        return super().forward(ids.long().masked_fill(ids == PAD_TOKEN, self.pad_id))


STEMS = Registry("stem", "model.stem", {"tubelet": TubeletStem, "frame": FrameStem, "token": TokenStem})
