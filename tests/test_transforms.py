"""Clip transforms: shapes, normalization, determinism, and motion fields moved with every spatial op."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.ops import roi_align
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from maskvid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    crop_field,
    flip_field,
    normalize_video,
)
from maskvid.errors import ConfigError
from maskvid.rng import draw_seed, global_seed


def clip(t=4, h=96, w=128):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g)


def constant_field(t=4, h=96, w=128, dx=2.0, dy=-1.0):
    field = torch.zeros(t, h // 4, w // 4, 2)
    field[..., 0], field[..., 1] = dx, dy
    return field


@pytest.mark.parametrize("crop", ["multiscale", "random_resized", "centre", "none"])
def test_output_layout_and_field_grid(crop):
    video, motion = ClipTransform(size=64, crop=crop)(clip(), torch.Generator().manual_seed(1), constant_field())
    assert video.shape == (3, 4, 64, 64) and video.dtype == torch.float32
    assert motion.shape == (4, 16, 16, 2)


def test_normalization_matches_imagenet_statistics():
    frames = torch.full((2, 32, 32, 3), 255, dtype=torch.uint8)
    video, _ = ClipTransform(size=32, crop="none", flip=False)(frames, torch.Generator())
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for c in range(3):
        assert torch.allclose(video[c], torch.tensor(expected[c]), atol=1e-5)



@pytest.mark.parametrize("crop", ["multiscale", "random_resized"])
def test_clips_left_uint8_normalize_later_to_the_same_values(crop):
    """``normalize=False`` (the training loop normalizes on its device): the same draws, the same crop, and
    normalizing the uint8 clip afterwards gives the worker's float clip to the bit."""
    floats = ClipTransform(size=48, crop=crop, randaugment=(2, 9))
    uint8 = ClipTransform(size=48, crop=crop, randaugment=(2, 9), normalize=False)
    a, _ = floats(clip(), torch.Generator().manual_seed(3))
    b, _ = uint8(clip(), torch.Generator().manual_seed(3))
    assert b.dtype == torch.uint8 and b.shape == a.shape == (3, 4, 48, 48)
    assert torch.equal(normalize_video(b[None], IMAGENET_MEAN, IMAGENET_STD)[0], a)


def test_an_erased_box_in_a_uint8_clip_holds_the_mean_colour():
    floats = ClipTransform(size=48, crop="none", flip=False, erase=1.0)
    uint8 = ClipTransform(size=48, crop="none", flip=False, erase=1.0, normalize=False)
    a, _ = floats(clip(), torch.Generator().manual_seed(4))
    b, _ = uint8(clip(), torch.Generator().manual_seed(4))
    box = a == 0  # the float path erases to 0, the mean after normalizing
    assert box.float().mean() > 0.02
    later = normalize_video(b, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(later[~box], a[~box])
    assert later[box].abs().max() < 1 / (255 * min(IMAGENET_STD))  # the mean rounded to a byte

def test_same_generator_same_augmentation():
    transform = ClipTransform(size=48, crop="random_resized", randaugment=(2, 9), erase=0.5)
    a, _ = transform(clip(), torch.Generator().manual_seed(7))
    b, _ = transform(clip(), torch.Generator().manual_seed(7))
    c, _ = transform(clip(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_vectors_rescale_with_the_crop():
    # A crop of half the width resized to the full size doubles x-velocities; heights likewise.
    out = crop_field(constant_field(), (0.0, 0.0, 48.0, 64.0), (96, 128), (96, 128))
    assert torch.allclose(out[..., 0], torch.tensor(4.0)) and torch.allclose(out[..., 1], torch.tensor(-2.0))


def test_crop_moves_field_content_with_the_pixels():
    field = torch.zeros(1, 24, 32, 2)
    field[0, 12:, 16:, 0] = 1.0  # motion only in the bottom-right quadrant
    out = crop_field(field, (48.0, 64.0, 48.0, 64.0), (96, 128), (48, 64))  # crop exactly that quadrant
    # bilinear sampling blurs by a quarter cell at the crop's top/left border; the rest is the quadrant exactly
    assert torch.allclose(out[0, 1:, 1:, 0], torch.tensor(1.0)) and out[..., 0].min() > 0.7



@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), frame=st.sampled_from([(96, 128), (50, 70), (224, 298)]),
       out=st.sampled_from([(32, 32), (48, 64), (224, 224), (20, 90)]))
def test_crop_field_is_roi_align(seed, frame, out):
    """Against torchvision's ``roi_align`` itself, on boxes inside, across and past the frame's edges."""
    g = torch.Generator().manual_seed(seed)
    field = torch.randn(3, -(-frame[0] // 4), -(-frame[1] // 4), 2, generator=g)
    height, width = (float(x) for x in torch.rand(2, generator=g) * torch.tensor(frame) * 1.2 + 2)
    top, left = (float(x) for x in torch.rand(2, generator=g) * torch.tensor(frame) * 1.1 - 4)
    gy, gx = field.shape[1] / frame[0], field.shape[2] / frame[1]
    rois = torch.tensor([[i, left * gx, top * gy, (left + width) * gx, (top + height) * gy] for i in range(3)])
    grid = (-(-out[0] // 4), -(-out[1] // 4))
    expected = roi_align(field.permute(0, 3, 1, 2).contiguous(), rois, grid, 1.0, 2, True).permute(0, 2, 3, 1)
    expected = expected * torch.tensor([out[1] / width, out[0] / height])
    got = crop_field(field, (top, left, height, width), frame, out)
    assert got.shape == expected.shape and got.dtype == torch.float32
    # float32 sums in another order, then scaled by up to out/width (~100x for a small box): the tolerance scales too
    scale = max(out[1] / width, out[0] / height, 1.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)


def test_flip_mirrors_and_negates_x():
    field = torch.zeros(1, 2, 3, 2)
    field[0, 0, 0] = torch.tensor([1.5, 0.5])
    out = flip_field(field)
    assert out[0, 0, 2].tolist() == [-1.5, 0.5] and out[0, 0, 0].tolist() == [0.0, 0.0]


def test_flipped_clip_has_flipped_field():
    frames = clip()
    transform = ClipTransform(size=64, crop="none", flip=True)
    flips = 0
    for seed in range(8):
        video, motion = transform(frames, torch.Generator().manual_seed(seed), constant_field())
        plain, _ = ClipTransform(size=64, crop="none", flip=False)(frames, torch.Generator().manual_seed(seed))
        flipped = not torch.equal(video, plain)
        flips += flipped
        assert motion[..., 0].mean().item() == pytest.approx(-1.0 if flipped else 1.0, abs=1e-5)
    assert 0 < flips < 8


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="data.crop"):
        ClipTransform(crop="zoom")
    with pytest.raises(ConfigError, match="data.randaugment"):
        ClipTransform(randaugment=(2, 9))(clip(), torch.Generator(), constant_field())


def torchvision_reference(frames, transform: ClipTransform, g: torch.Generator) -> torch.Tensor:
    """The transform composed of torchvision's own calls on the ``(T, C, H, W)`` view, as it was written first."""
    video = tv_tensors.Video(frames.permute(0, 3, 1, 2))
    geometry = transform.geometry(*frames.shape[1:3], g)
    video = F.resized_crop(video, *geometry.pixel_box, [transform.size] * 2, antialias=True)
    if geometry.flip:
        video = F.horizontal_flip(video)
    seed = draw_seed(g)
    if transform.randaugment is not None:
        with global_seed(seed):
            video = v2.RandAugment(*transform.randaugment)(video)
    planes = video.as_subclass(torch.Tensor).transpose(0, 1).float()
    if not transform.normalize:
        return planes.to(torch.uint8)
    mean, std = (torch.tensor(v).view(3, 1, 1, 1) * 255.0 for v in (transform.mean, transform.std))
    return (planes - mean) * (1.0 / std)


@pytest.mark.parametrize("options", [
    {"crop": "multiscale"}, {"crop": "random_resized", "randaugment": (2, 9)}, {"crop": "centre", "flip": False},
    {"crop": "none", "normalize": False}, {"crop": "multiscale", "normalize": False}, {"size": 48, "crop": "centre"},
])
def test_transform_equals_torchvision_composed(options):
    """Cropping in the decoder's layout and splitting (and flipping) into planes with OpenCV change no value."""
    frames = clip(t=6, h=90, w=130)
    transform = ClipTransform(**{"size": 64, **options})
    for seed in range(8):  # flips and crops both ways
        got, _ = transform(frames, torch.Generator().manual_seed(seed))
        expected = torchvision_reference(frames, transform, torch.Generator().manual_seed(seed))
        assert got.is_contiguous() and got.dtype == expected.dtype
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_a_box_reaching_outside_the_frame_is_padded_as_torchvision_pads_it():
    frames = clip(t=2, h=40, w=40)
    transform = ClipTransform(size=32, crop="none", flip=False, normalize=False)
    box = (-4.0, 30.0, 40.0, 20.0)  # above the top and past the right edge
    got, _ = transform(frames, torch.Generator().manual_seed(0), box=box)
    expected = F.resized_crop(tv_tensors.Video(frames.permute(0, 3, 1, 2)), -4, 30, 40, 20, [32, 32], antialias=True)
    assert torch.equal(got, expected.as_subclass(torch.Tensor).transpose(0, 1))
