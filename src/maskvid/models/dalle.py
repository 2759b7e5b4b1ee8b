"""The encoder of OpenAI's DALL-E dVAE (Ramesh et al. 2021) under its published parameter names (``blocks.input.w``,
``blocks.group_1.block_1.res_path.conv_1.w``, …), so a converted ``encoder.pkl`` loads one to one: BEiT's, BEVT's
and VIMPAC's visual tokens, and MAM²'s "dVAE" row of Tab. 1e.

    tokenizer = DALLETokenizer(DALLEConfig())   # f8, 8192 codes
    ids = tokenizer.encode(frames)              # (B, 3, H, W) in [0, 1] → (B, H/8, W/8)

Four groups of residual blocks at widths n_hid·(1, 2, 4, 8), max-pooled between them; each block adds its residual
path scaled by 1/(4·blocks per group)² (the published ``post_gain``). Pixels enter through DALL-E's ``map_pixels``
(x → 0.8·x + 0.1); the token is the argmax of the 8192 output logits. The published decoder is not carried.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskvid.errors import ConfigError
from maskvid.models.tokenizer import check_frames

LOGIT_LAPLACE_EPS = 0.1  # DALL-E's map_pixels: the encoder was trained on pixels squeezed into [0.1, 0.9]
GROUPS = 4


@dataclass
class DALLEConfig:
    """``n_hid``: the first group's width; ``blocks_per_group``; ``vocab_size``: the output logits (codes)."""

    n_hid: int = 256
    blocks_per_group: int = 2
    vocab_size: int = 8192

    def __post_init__(self):
        if self.n_hid < 4 or self.n_hid % 4:
            raise ConfigError("dalle.n_hid", f"must be a positive multiple of 4, got {self.n_hid}")
        if self.blocks_per_group < 1 or self.vocab_size < 2:
            raise ConfigError("dalle", f"need blocks_per_group >= 1 and vocab_size >= 2, got "
                              f"{self.blocks_per_group}, {self.vocab_size}")


class Conv2d(nn.Module):
    """A same-padded convolution whose parameters are named ``w`` and ``b``, as DALL-E's."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(channels_out, channels_in, kernel, kernel) / math.sqrt(channels_in *
                                                                                                 kernel**2))
        self.b = nn.Parameter(torch.zeros(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, self.b, padding=(self.w.shape[-1] - 1) // 2)


class EncoderBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, post_gain: float):
        super().__init__()
        hidden = channels_out // 4
        self.post_gain = post_gain
        self.id_path = Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()
        self.res_path = nn.Sequential(OrderedDict([
            ("relu_1", nn.ReLU()), ("conv_1", Conv2d(channels_in, hidden, 3)),
            ("relu_2", nn.ReLU()), ("conv_2", Conv2d(hidden, hidden, 3)),
            ("relu_3", nn.ReLU()), ("conv_3", Conv2d(hidden, hidden, 3)),
            ("relu_4", nn.ReLU()), ("conv_4", Conv2d(hidden, channels_out, 1))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


class DALLETokenizer(nn.Module):
    can_decode = False

    def __init__(self, config: DALLEConfig | None = None):
        super().__init__()
        self.config = c = config or DALLEConfig()
        post_gain = 1 / (GROUPS * c.blocks_per_group) ** 2
        widths = [c.n_hid * 2**i for i in range(GROUPS)]  # 1, 2, 4, 8 × n_hid
        stages: list[tuple[str, nn.Module]] = [("input", Conv2d(3, c.n_hid, 7))]
        for g, width in enumerate(widths):
            first = widths[g - 1] if g else c.n_hid
            group: list[tuple[str, nn.Module]] = [
                (f"block_{i + 1}", EncoderBlock(first if i == 0 else width, width, post_gain))
                for i in range(c.blocks_per_group)]
            if g < GROUPS - 1:
                group.append(("pool", nn.MaxPool2d(2)))
            stages.append((f"group_{g + 1}", nn.Sequential(OrderedDict(group))))
        stages.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()),
                                                            ("conv", Conv2d(widths[-1], c.vocab_size, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(stages))

    factor = 2 ** (GROUPS - 1)
    memory_format = torch.channels_last
    """The frames' layout in the convolutions: channels-last (NHWC) runs oneDNN's and cuDNN's NHWC kernels, 1.16×
    the NCHW speed on 2 CPU cores at the published width, 1.3–1.6× at n_hid 64 (``maskvid bench tokens`` times
    ``dalle_f8_112_nchw``, this set to ``torch.contiguous_format``, beside it). Same ids."""

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1], sides divisible by 8 → ``(B, H/8, W/8)`` ids."""
        frames = check_frames(frames, self.factor).to(torch.float32, memory_format=self.memory_format)  # one copy
        mapped = (1 - 2 * LOGIT_LAPLACE_EPS) * frames + LOGIT_LAPLACE_EPS
        return self.blocks(mapped).argmax(1)


def infer_dalle_config(state: dict) -> DALLEConfig:
    """The config of a DALL-E encoder's state, read off its key names and shapes; a missing anchor key is a
    KeyError naming it."""
    return DALLEConfig(n_hid=state["blocks.input.w"].shape[0],
                       blocks_per_group=len({k.split(".")[2] for k in state if k.startswith("blocks.group_1.block_")}),
                       vocab_size=state["blocks.output.conv.w"].shape[0])
