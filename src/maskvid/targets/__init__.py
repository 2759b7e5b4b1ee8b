"""Per-token prediction targets: parameter-free, ``target(video (B, C, T, H, W), **aux) -> (B, N, D)``, ``.dim``.

    tgt = targets.build("norm_pixels", patch=(2, 16, 16))

Targets may use ``models`` and ``motion``, never ``methods`` (DESIGN.md floors).
"""

from __future__ import annotations

from dataclasses import fields

from maskvid.errors import ConfigError
from maskvid.targets.hog import HOG
from maskvid.targets.motion import RGBDiff
from maskvid.targets.patchify import IMAGENET_MEAN, IMAGENET_STD, patchify, unnormalize
from maskvid.targets.pixels import NormPixels, Pixels

TARGETS = {"pixels": Pixels, "norm_pixels": NormPixels, "hog": HOG, "rgb_diff": RGBDiff}


def available() -> list[str]:
    return list(TARGETS)


def build(name: str, **options) -> Pixels:
    """The target ``name`` with ``options``; unknown names or options raise ConfigError naming the key."""
    if name not in TARGETS:
        raise ConfigError("target.name", f"unknown target {name!r}; available: {', '.join(TARGETS)}")
    cls = TARGETS[name]
    allowed = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(options) - allowed)
    if unknown:
        listed = ", ".join(sorted(allowed))
        raise ConfigError(f"target.{unknown[0]}", f"not an option of {name!r}; its options: {listed}")
    return cls(**options)


__all__ = ["HOG", "IMAGENET_MEAN", "IMAGENET_STD", "NormPixels", "Pixels", "RGBDiff", "available", "build", "patchify",
           "unnormalize"]
