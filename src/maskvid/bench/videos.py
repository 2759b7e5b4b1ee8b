"""The benchmarks' source videos: the synthetic benchmark's ``motion`` preset, one video per class."""

from __future__ import annotations

import os

from maskvid.synth import SynthConfig, synthesize


def synthetic_videos(root: str, count: int, size: int, frames: int) -> list[str]:
    """Write ``count`` H.264 videos of ``size``² × ``frames`` under ``root``; their paths, sorted."""
    synthesize(root, SynthConfig(preset="motion", classes=count, train_per_class=1, val_per_class=0, size=size,
                                 frames=frames, seed=0))
    folder = os.path.join(root, "videos")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))
