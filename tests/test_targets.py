"""Per-token targets: VideoMAE's exact normalized-pixel order and statistics, HOG, RGB difference, bad options."""

from __future__ import annotations

import math

import pytest
import torch

from maskvid import targets
from maskvid.errors import ConfigError
from maskvid.targets import IMAGENET_MEAN, IMAGENET_STD


def normalized(video01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (video01 - mean) / std


def test_norm_pixels_equals_videomae_reference():
    torch.manual_seed(0)
    video01 = torch.rand(2, 3, 4, 32, 32)
    video01[0, :, :2, :16, :16] = 0.5  # a flat patch: 0 / eps
    video01[1, :, :2, :16, :16] = 0.5 + (torch.rand(3, 2, 16, 16) > 0.9) / 255  # low contrast: eps matters
    got = targets.build("norm_pixels", patch=(2, 16, 16))(normalized(video01))
    # Hugging Face / VideoMAE steps, on (B, T, C, H, W)
    frames = video01.transpose(1, 2)
    b, t, c, h, w = frames.shape
    x = frames.view(b, t // 2, 2, c, h // 16, 16, w // 16, 16).permute(0, 1, 4, 6, 2, 5, 7, 3).contiguous()
    x = x.view(b, -1, 2 * 16 * 16, c)
    x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    torch.testing.assert_close(got, x.view(b, -1, 2 * 16 * 16 * c), atol=1e-4, rtol=1e-4)


def test_pixels_invert_the_normalization_and_keep_token_order():
    video01 = torch.rand(1, 3, 2, 16, 32)
    got = targets.build("pixels", patch=(2, 16, 16))(normalized(video01))
    assert got.shape == (1, 2, 2 * 16 * 16 * 3)
    right_token = video01[0, :, :, :, 16:].permute(1, 2, 3, 0).reshape(-1)  # (t p p C)
    torch.testing.assert_close(got[0, 1], right_token, atol=1e-5, rtol=1e-5)


def test_hog_sees_edge_orientation_and_ignores_flat_patches():
    hog = targets.build("hog", patch=(1, 8, 8))
    video01 = torch.full((1, 3, 1, 16, 16), 0.5)
    video01[..., :, 2:5] = 1.0  # vertical stripe inside the left tokens: horizontal gradients, orientation 0
    out = hog(normalized(video01)).view(1, 4, 3, 9)
    assert hog.dim == 27 and out.shape == (1, 4, 3, 9)
    left = out[0, 0, 0]
    assert int(left.argmax()) == 0 and float(left.norm()) == pytest.approx(1.0, abs=1e-4)
    assert float(out[0, 1].abs().max()) < 1e-6  # flat patch: no gradient, all-zero histogram
    # horizontal stripe: vertical gradients, orientation π/2 → bin 4 or 5 of 9
    video01 = torch.full((1, 3, 1, 16, 16), 0.5)
    video01[..., 2:5, :] = 1.0
    assert int(hog(normalized(video01)).view(1, 4, 3, 9)[0, 0, 0].argmax()) in (4, 5)


def test_rgb_diff_is_the_next_frame_minus_this_one_and_weights_out_the_last_frame():
    video01 = torch.rand(1, 3, 4, 16, 16)
    tgt = targets.build("rgb_diff", patch=(2, 16, 16))
    out = tgt(normalized(video01)).view(1, 2, 2, 16, 16, 3)  # (B, N, t, p, p, C)
    expected = (video01[0, :, 1] - video01[0, :, 0]).permute(1, 2, 0)
    torch.testing.assert_close(out[0, 0, 0], expected, atol=1e-5, rtol=1e-5)
    assert float(out[0, 1, 1].abs().max()) == 0.0
    weights = tgt.validity(normalized(video01)).view(2, 2, -1)  # (N, t, p·p·C) of the one sample
    assert weights[1, 1].sum() == 0 and weights[1, 0].all() and weights[0].all()


def test_build_errors_name_the_key():
    with pytest.raises(ConfigError, match="target.name"):
        targets.build("flow_magic")
    with pytest.raises(ConfigError, match="target.cell"):
        targets.build("hog", cell=8)
    with pytest.raises(ConfigError, match="target.bins"):
        targets.build("hog", bins=1)
    assert set(targets.available()) == {"pixels", "norm_pixels", "hog", "rgb_diff", "tokens", "trajectory", "flow",
                                        "dense_hog", "hof", "mbh", "clip_order"}
    assert targets.build("pixels").dim == 2 * 16 * 16 * 3 and math.isfinite(targets.build("hog").dim)
