"""Clip augmentations on ``(T, C, H, W)`` uint8 frames with torchvision.transforms.v2, moving motion fields along.

Every spatial transform applies one set of parameters to all frames and to the per-pixel auxiliary field (codec
motion now, optical flow later). The field lives on a coarser grid (one cell per ``MOTION_CELL`` pixels), so crops
are mapped onto it as ``roi_align`` maps them (exact fractional boxes, bilinear samples; computed one axis at a time,
:mod:`maskvid.motion.field_maps`), its vectors are rescaled by the crop's resize
factors, and a horizontal flip mirrors it and negates x. Randomness comes from the ``torch.Generator`` passed in;
torchvision's RandAugment and RandomErasing draw from the global RNG, so they run inside ``fork_rng`` seeded from
that generator — the same sample always gets the same augmentation, whichever worker makes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from maskvid.constants import IMAGENET_MEAN, IMAGENET_STD
from maskvid.errors import ConfigError
from maskvid.motion.field_maps import apply_maps, roi_align_map
from maskvid.motion.vectors import MOTION_CELL
from maskvid.rng import draw_seed, global_seed

MULTISCALE = (1.0, 0.875, 0.75, 0.66)  # VideoMAE GroupMultiScaleCrop scales
Box = tuple[float, float, float, float]  # top, left, height, width in frame pixels


def _uniform(low: float, high: float, g: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _choice(n: int, g: torch.Generator) -> int:
    return int(torch.randint(n, (), generator=g))


def multiscale_crop_box(height: int, width: int, g: torch.Generator, scales=MULTISCALE, max_distort: int = 1) -> Box:
    """VideoMAE/TSN multi-scale crop: side lengths from ``scales`` × short side (aspects within ``max_distort``
    steps), placed at one of 13 fixed positions (corners, centre, quarter points)."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[_choice(len(pairs), g)]
    sh, sw = (height - crop_h) / 4, (width - crop_w) / 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4), (1, 1), (1, 3), (3, 1), (3, 3)]
    i, j = grid[_choice(len(grid), g)]
    return float(int(i * sh)), float(int(j * sw)), float(crop_h), float(crop_w)


def random_resized_crop_box(
    height: int, width: int, g: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
) -> Box:
    """Inception-style crop (as torchvision's RandomResizedCrop), drawn from ``g``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], g)
        aspect = math.exp(_uniform(*log_ratio, g))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return float(_choice(height - h + 1, g)), float(_choice(width - w + 1, g)), float(h), float(w)
    side = min(height, width)  # fall back to a centre crop, as torchvision does
    return float((height - side) // 2), float((width - side) // 2), float(side), float(side)


def centre_crop_box(height: int, width: int, crop: int) -> Box:
    return float((height - crop) // 2), float((width - crop) // 2), float(crop), float(crop)


def _resized_crop(frames: torch.Tensor, box: tuple[int, int, int, int], out_hw: tuple[int, int]) -> tv_tensors.Video:
    """uint8 ``(T, H, W, 3)`` → ``(T, 3, out_h, out_w)`` (channels-last), torchvision's ``resized_crop``.

    A box inside the frame is cut in the decoder's layout first — whole rows copied — so the antialiased resize
    reads a contiguous channels-last clip; cropping the ``(T, C, H, W)`` view instead made torch copy it pixel by
    pixel (0.9 ms a clip). A box reaching outside (torchvision pads it) goes through torchvision as it is.
    """
    top, left, h, w = box
    if top >= 0 and top + h <= frames.shape[1] and left >= 0 and left + w <= frames.shape[2]:
        cropped = frames[:, top:top + h, left:left + w].contiguous()
        return F.resize(tv_tensors.Video(cropped.permute(0, 3, 1, 2)), list(out_hw), antialias=True)
    return F.resized_crop(tv_tensors.Video(frames.permute(0, 3, 1, 2)), top, left, h, w, list(out_hw), antialias=True)


def crop_field(field: torch.Tensor, box: Box, frame_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """Crop+resize a ``(T, h, w, 2)`` field (on the CPU) exactly as ``box`` crops its ``frame_hw`` frames to
    ``out_hw``: torchvision's ``roi_align`` (aligned, 2×2 samples a cell) up to float rounding."""
    _, fh, fw, _ = field.shape
    gy, gx = fh / frame_hw[0], fw / frame_hw[1]  # field cells per frame pixel
    top, left, h, w = box
    grid = (-(-out_hw[0] // MOTION_CELL), -(-out_hw[1] // MOTION_CELL))
    rows = roi_align_map(top * gy, (top + h) * gy, fh, grid[0])
    columns = roi_align_map(left * gx, (left + w) * gx, fw, grid[1])
    out = torch.from_numpy(apply_maps(field.numpy(), rows, columns))
    return out.mul_(torch.tensor([out_hw[1] / w, out_hw[0] / h]))  # vectors are in pixels


def flip_field(field: torch.Tensor) -> torch.Tensor:
    """Mirror a ``(T, h, w, 2)`` field left-right: positions flip and dx changes sign."""
    out = field.flip(2).clone()
    out[..., 0] = -out[..., 0]
    return out


def planar_clip(video: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """uint8 ``(T, C, H, W)`` → contiguous ``(C, T, H, W)``, mirrored left-right when ``flip``.

    OpenCV splits each frame's interleaved pixels into the output's planes (flipping the frame first): 0.1–0.2 ms a
    16×224² clip on one core, where torch's transposing copy of the channels-last tensor that resizing leaves —
    its innermost run 3 bytes long — took 0.6–1.5 ms, and 0.9–3 ms with a flip.
    """
    if video.dtype != torch.uint8 or not 1 <= video.shape[1] <= 4:
        return (video.flip(-1) if flip else video).transpose(0, 1).contiguous()
    frames = video.permute(0, 2, 3, 1).contiguous().numpy()  # (T, H, W, C): a view when channels-last already
    t, h, w, c = frames.shape
    out = np.empty((c, t, h, w), np.uint8)
    for i in range(t):
        cv2.split(cv2.flip(frames[i], 1) if flip else frames[i], [out[k, i] for k in range(c)])
    return torch.from_numpy(out)


def normalize_planar(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``(C, T, H, W)`` → float, ``(x/255 - mean) / std``, one contiguous channel at a time (~4x faster than
    ``to_dtype`` + ``normalize`` on channels-last tensors)."""
    out = torch.empty(frames.shape, dtype=torch.float32)
    for c in range(frames.shape[0]):
        torch.sub(frames[c], mean[c] * 255.0, out=out[c]).mul_(1.0 / (std[c] * 255.0))
    return out


def normalize_video(video: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 clips ``(..., C, T, H, W)`` (on any device) → float, ``(x/255 - mean) / std``: the same arithmetic as
    :func:`normalize_planar` in the workers, so either place gives the same values to the bit."""
    out = video.float()
    for c, (m, s) in enumerate(zip(mean, std, strict=True)):  # Python scalars: no host-to-device copy per step
        out[..., c, :, :, :].sub_(m * 255.0).mul_(1.0 / (s * 255.0))
    return out


@dataclass(frozen=True)
class Geometry:
    """A clip's spatial transform: crop ``box`` (fractional), horizontal ``flip``, output ``size``."""

    box: Box
    flip: bool
    size: int

    @property
    def pixel_box(self) -> tuple[int, int, int, int]:
        """The crop as the frames get it: top, left, height, width rounded to whole pixels."""
        return tuple(round(v) for v in self.box)


@dataclass
class ClipTransform:
    """Training or evaluation augmentation of one clip, VideoMAE-style by default.

    crop: ``multiscale`` (VideoMAE pretraining), ``random_resized`` (fine-tuning), ``centre`` (evaluation: resize the
    short side to ``size / crop_fraction``, then centre crop) or ``none`` (resize to size × size).
    flip: horizontal flip with p = 0.5 — turn off for direction-sensitive data (SSv2, the ``motion`` synth preset).
    randaugment: ``(num_ops, magnitude)`` or None; photometric and geometric ops, the same on every frame.
    erase: random-erasing probability (one box through all frames), applied after normalization.
    normalize: False leaves the clip uint8 ``(C, T, H, W)`` for the training loop to normalize on its device
    (:func:`normalize_video`): a quarter of the bytes through shared and pinned memory, and no float arithmetic in
    the workers (38% of a 224² sample's time on one core). An erased box then holds the mean colour, rounded to
    a byte (normalized: within 1/255 of the float path's 0).
    """

    size: int = 224
    crop: str = "multiscale"
    flip: bool = True
    randaugment: tuple[int, int] | None = None
    erase: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_fraction: float = 1.0
    normalize: bool = True

    def __post_init__(self):
        if self.crop not in ("multiscale", "random_resized", "centre", "none"):
            raise ConfigError("data.crop", f"{self.crop!r} not in multiscale, random_resized, centre, none")
        if self.size < 1:
            raise ConfigError("data.size", f"must be positive, got {self.size}")
        if not 0.0 <= self.erase <= 1.0:
            raise ConfigError("data.erase", f"probability must be in [0, 1], got {self.erase}")

    def box(self, height: int, width: int, g: torch.Generator) -> Box:
        if self.crop == "multiscale":
            return multiscale_crop_box(height, width, g)
        if self.crop == "random_resized":
            return random_resized_crop_box(height, width, g)
        if self.crop == "centre":
            side = min(height, width) * self.crop_fraction
            return (height - side) / 2, (width - side) / 2, side, side
        return 0.0, 0.0, float(height), float(width)

    def geometry(self, height: int, width: int, g: torch.Generator, box: Box | None = None) -> Geometry:
        """Draw the clip's crop and flip (in that order, from ``g``); ``box`` overrides the crop."""
        box = box if box is not None else self.box(height, width, g)
        flip = self.flip and float(torch.rand((), generator=g)) < 0.5
        return Geometry(box, flip, self.size)

    def __call__(
        self,
        frames: torch.Tensor,
        g: torch.Generator,
        motion: torch.Tensor | None = None,
        box: Box | None = None,
        geometry: Geometry | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """frames uint8 ``(T, H, W, 3)`` → float ``(3, T, size, size)`` normalized; motion ``(T, h, w, 2)`` follows.

        ``box`` overrides the crop (multi-view evaluation places its crops itself); ``geometry`` (from
        :meth:`geometry`) gives crop and flip drawn beforehand, for fields made outside the transform
        (trajectories).
        """
        if motion is not None and self.randaugment is not None:
            raise ConfigError("data.randaugment", "RandAugment's geometric ops cannot move motion fields; turn one off")
        height, width = frames.shape[1:3]
        geometry = geometry if geometry is not None else self.geometry(height, width, g, box)
        top, left, h, w = geometry.box
        out_hw = (self.size, self.size)
        video = _resized_crop(frames, geometry.pixel_box, out_hw)
        if motion is not None:
            motion = crop_field(motion, (top, left, h, w), (height, width), out_hw)
        # without RandAugment the flip is done while splitting the frames into planes, for free; with it, before it
        flip_planes = geometry.flip and self.randaugment is None
        if geometry.flip:
            video = video if flip_planes else F.horizontal_flip(video)
            motion = flip_field(motion) if motion is not None else None
        seed = draw_seed(g)
        if self.randaugment is not None:
            with global_seed(seed):
                video = v2.RandAugment(num_ops=self.randaugment[0], magnitude=self.randaugment[1])(video)
        planes = planar_clip(video.as_subclass(torch.Tensor), flip=flip_planes)  # (C, T, H, W) uint8
        if self.normalize:
            out, erased = normalize_planar(planes, self.mean, self.std), 0
        else:  # uint8; an erased box holds the mean colour, as 0 is after normalizing
            out, erased = planes, [round(255 * m) for m in self.mean]
        if self.erase > 0:
            with global_seed(seed + 1):
                # one box through every frame: erase on a (T, C, H, W) view of the output
                out = v2.RandomErasing(p=self.erase, value=erased)(tv_tensors.Video(out.transpose(0, 1)))
                out = out.as_subclass(torch.Tensor).transpose(0, 1).contiguous()
        return out, motion
