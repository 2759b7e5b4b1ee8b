"""Per-token prediction targets, one protocol (:class:`~maskvid.targets.base.Target`): ``inputs``, ``kind``,
``dim``; ``target(**inputs) -> (B, N, D)`` values (or ``(B, N)`` class ids) and ``target.validity(**inputs)``.

    tgt = targets.build("norm_pixels", patch=(2, 16, 16))
    values = tgt(video)            # (B, N, 1536)

Targets may use ``models`` and ``motion``, never ``methods`` (DESIGN.md floors).
"""

from __future__ import annotations

from maskvid.constants import IMAGENET_MEAN, IMAGENET_STD
from maskvid.registry import Registry
from maskvid.targets.base import KINDS, Target, TargetValues
from maskvid.targets.clip_order import ClipOrder
from maskvid.targets.flow import HOF, MBH, Flow
from maskvid.targets.hog import HOG, DenseHOG
from maskvid.targets.motion import RGBDiff
from maskvid.targets.patchify import patchify, unnormalize
from maskvid.targets.pixels import NormPixels, Pixels
from maskvid.targets.tokens import TokenIds
from maskvid.targets.trajectory import Trajectory

TARGETS = Registry("target", "target.name", {"pixels": Pixels, "norm_pixels": NormPixels, "hog": HOG,
                                             "rgb_diff": RGBDiff, "tokens": TokenIds,
                                             "trajectory": Trajectory, "flow": Flow, "hof": HOF, "mbh": MBH,
                                             "dense_hog": DenseHOG, "clip_order": ClipOrder})


def available() -> list[str]:
    return TARGETS.available()


def build(name: str, **options) -> Target:
    """The target ``name`` with ``options``; unknown names or options raise ConfigError naming the key."""
    return TARGETS.build(name, **options)


__all__ = ["HOF", "HOG", "ClipOrder", "IMAGENET_MEAN", "IMAGENET_STD", "KINDS", "MBH", "TARGETS", "DenseHOG", "Flow",
           "NormPixels", "Pixels", "RGBDiff", "Target", "TargetValues", "TokenIds", "Trajectory", "available",
           "build", "patchify", "unnormalize"]
