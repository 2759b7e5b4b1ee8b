"""One video, one strategy: the mask ``maskvid mask`` shows and how well it hides the motion (MGM's saliency idea).

The clip goes through the evaluation pipeline (short side → ``size``, centre crop, no flip) so that the mask is made
on the same token grid, from the same cropped motion field, as in a data-loader worker.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

import torch
import torchvision.transforms.v2.functional as F

from maskvid import masking
from maskvid.data.decode import decode_clip, frame_count
from maskvid.data.sampling import dense_indices
from maskvid.data.transforms import ClipTransform, crop_field
from maskvid.errors import ConfigError
from maskvid.motion import dis_flow, slice_magnitude


@dataclass
class MaskReport:
    """A mask on a decoded clip, with the motion it was judged against.

    frames: uint8 ``(T, size, size, 3)`` cropped clip; mask: bool ``(T', H', W')``; motion: ``(T', h, w)`` mean motion
    magnitude per temporal slice (NaN on slices without motion information); source: ``codec`` or ``flow``.
    """

    video: str
    strategy: str
    options: dict
    indices: list[int]
    frames: torch.Tensor
    mask: torch.Tensor
    motion: torch.Tensor
    source: str
    fallbacks: int  # guided masks that had no motion at all and fell back to smm

    @property
    def ratio(self) -> float:
        return self.masked / self.tokens

    @property
    def masked(self) -> int:
        return int(self.mask.sum())

    @property
    def tokens(self) -> int:
        return self.mask.numel()

    def motion_inside_outside(self) -> tuple[float, float]:
        """Mean motion magnitude of the masked tokens and of the visible ones (slices without motion left out)."""
        per_token = masking.token_motion(self.motion, tuple(self.mask.shape))
        usable = torch.isfinite(per_token).flatten(1).all(1)
        values, hidden = per_token[usable], self.mask[usable]
        inside = float(values[hidden].mean()) if bool(hidden.any()) else math.nan
        outside = float(values[~hidden].mean()) if bool((~hidden).any()) else math.nan
        return inside, outside

    def summary(self) -> dict:
        """JSON-ready figures; non-finite numbers become None (JSON has no NaN or inf): a None score with a positive
        ``motion_inside`` means nothing visible moves (infinite score), with None inside too there was no motion."""
        inside, outside = self.motion_inside_outside()
        return {
            "video": self.video,
            "strategy": self.strategy,
            "options": self.options,
            "ratio": self.ratio,
            "masked": self.masked,
            "tokens": self.tokens,
            "grid": list(self.mask.shape),
            "masked_per_slice": self.mask.flatten(1).sum(1).tolist(),
            "motion_score": _finite(masking.motion_score(self.mask, self.motion)),
            "motion_inside": _finite(inside),
            "motion_outside": _finite(outside),
            "motion_source": self.source,
            "frames": self.indices,
            "fallbacks": self.fallbacks,
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def mask_video(
    video: str | os.PathLike,
    strategy: str,
    *,
    frames: int = 16,
    stride: int = 4,
    size: int = 224,
    patch: tuple[int, int, int] = (2, 16, 16),
    start: int | None = None,
    source: str | None = None,
    seed: int = 0,
    **options,
) -> MaskReport:
    """Decode one clip of ``video``, mask it with ``masking.build(strategy, **options)`` and measure the mask.

    Args:
        frames, stride: the clip (``frames`` frames ``stride`` apart); ``start`` its first frame (default: centred).
        size, patch: crop side and tubelet ``(t, p, p)``; the token grid is ``(frames/t, size/p, size/p)``.
        source: where motion comes from — ``codec`` vectors or ``flow`` (OpenCV DIS); default: the strategy's own
            ``source`` for guided masks, else ``codec``. The score of every strategy is judged on this motion.
        seed: the mask generator's seed.
    """
    if source is not None and source not in ("codec", "flow"):
        raise ConfigError("mask.source", f"{source!r} not in codec, flow")
    guided = strategy in masking.STRATEGIES and "source" in {f.name for f in fields(masking.STRATEGIES[strategy])}
    if source is not None and guided:
        options = {**options, "source": source}  # guidance follows the motion asked for
    gen = masking.build(strategy, **options)
    source = source or getattr(gen, "source", "codec")
    t, p, q = patch
    if frames % t or size % p or size % q:
        raise ConfigError("model.patch", f"tubelet {patch} does not divide a {frames}x{size}x{size} clip")
    indices = dense_indices(frame_count(video), frames, stride, start=start)
    clip = decode_clip(video, indices, motion_vectors=source == "codec")
    if source == "flow":
        field, valid = dis_flow(clip.frames, frame_distance=float(stride))
    else:
        field, valid = clip.motion, clip.motion_valid
    height, width = clip.frames.shape[1:3]
    box = ClipTransform(size=size, crop="centre", flip=False).box(height, width, torch.Generator())
    top, left, h, w = box
    cropped = F.resized_crop(clip.frames.permute(0, 3, 1, 2), round(top), round(left), round(h), round(w),
                             [size, size], antialias=True).permute(0, 2, 3, 1)
    field = crop_field(field, box, (height, width), (size, size))
    motion = slice_magnitude(field, valid, t)
    grid = (frames // t, size // p, size // q)
    mask = gen(grid, torch.Generator().manual_seed(seed), motion if gen.needs_motion else None)
    return MaskReport(
        video=os.fspath(video),
        strategy=strategy,
        options=gen.options(),
        indices=list(indices),
        frames=cropped.contiguous(),
        mask=mask,
        motion=motion,
        source=source,
        fallbacks=getattr(gen, "fallbacks", 0),
    )
