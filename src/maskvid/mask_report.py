"""One video, one strategy: the mask ``maskvid mask`` shows and how well it hides the motion (MGM's saliency idea).

The clip goes through the dataset's own path (:meth:`maskvid.data.VideoDataset.clip`: decode → motion → centre crop
→ mask), so the mask is made on the same token grid, from the same cropped motion field, as in a data-loader worker.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from maskvid import masking
from maskvid.data import ClipTransform, VideoDataset, VideoRecord, frame_count
from maskvid.data.datasets import MOTION_SOURCES
from maskvid.data.sampling import dense_indices
from maskvid.errors import ConfigError
from maskvid.motion import slice_magnitude
from maskvid.targets import unnormalize


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
        return masking.motion_inside_outside(self.mask, self.motion)

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
        source: where motion comes from — ``codec`` vectors (default) or ``flow`` (OpenCV DIS); guided strategies
            follow it and every strategy's score is judged on it.
        seed: the seed of the clip's generator (the mask's draws).
    """
    if source is not None and source not in MOTION_SOURCES:
        raise ConfigError("data.motion_source", f"{source!r} not in {', '.join(MOTION_SOURCES)}")
    gen = masking.build(strategy, **options)
    source = source or "codec"
    dataset = VideoDataset([VideoRecord(os.fspath(video))], ClipTransform(size=size, crop="centre", flip=False),
                           num_frames=frames, stride=stride, motion_vectors=True, motion_source=source, mask=gen,
                           patch=patch)
    indices = dense_indices(frame_count(video), frames, stride, start=start)
    sample = dataset.clip(dataset.records[0], indices, torch.Generator().manual_seed(seed))
    pixels = unnormalize(sample["video"][None], dataset.transform.mean, dataset.transform.std)[0]  # (C, T, S, S)
    return MaskReport(
        video=os.fspath(video),
        strategy=strategy,
        options=gen.options(),
        indices=list(indices),
        frames=(pixels.permute(1, 2, 3, 0) * 255).round().clamp(0, 255).to(torch.uint8).contiguous(),
        mask=sample["mask"],
        motion=slice_magnitude(sample["motion"], sample["motion_valid"], patch[0]),
        source=source,
        fallbacks=getattr(gen, "fallbacks", 0),
    )
