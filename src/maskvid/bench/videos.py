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


KINETICS_SIZE, KINETICS_FRAMES = (256, 340), 250  # Kinetics as VideoMAE's users store it: short side 256, 10 s at 25


def kinetics_like_videos(root: str, count: int, keyint: int = 50, frames: int = KINETICS_FRAMES,
                         size: tuple[int, int] = KINETICS_SIZE) -> list[str]:
    """``count`` H.264 videos shaped like Kinetics clips (340×256, 10 s, x264 defaults: B-frames, a keyframe every
    ``keyint`` frames): a textured world under a panning camera with three textured objects crossing it, so every
    frame changes and the codec finds real motion. Written once; their paths."""
    import cv2
    import numpy as np

    from maskvid.synth.encode import write_video

    height, width = size
    os.makedirs(root, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(root, f"kinetics_like_{height}x{width}x{frames}_k{keyint}_{index:03d}.mp4")
        paths.append(path)
        if os.path.exists(path):
            continue
        rng = np.random.default_rng(index)
        world = cv2.resize(rng.uniform(0, 255, (64, 96, 3)).astype(np.float32), (2 * width, 2 * height),
                           interpolation=cv2.INTER_CUBIC)
        world = np.clip(world + rng.normal(0, 12, world.shape), 0, 255).astype(np.uint8)  # detail for the codec
        pan = rng.uniform(-1.5, 1.5, 2)
        objects = [(rng.uniform(0, width, 2), rng.uniform(-4, 4, 2), rng.integers(24, 64),
                    rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)) for _ in range(3)]

        def frame(t: int, world=world, pan=pan, objects=objects) -> np.ndarray:
            x0, y0 = (np.array([width, height]) / 2 + pan * t).astype(int) % [width, height]
            image = world[y0:y0 + height, x0:x0 + width].copy()
            for start, velocity, side, texture in objects:
                x, y = (start + velocity * t).astype(int) % [width - side, height - side]
                image[y:y + side, x:x + side] = cv2.resize(texture, (side, side), interpolation=cv2.INTER_NEAREST)
            return image

        write_video(path, (frame(t) for t in range(frames)), options={"x264-params": f"mbtree=0:keyint={keyint}"})
    return paths
