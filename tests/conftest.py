"""Shared fixtures: small videos made on the spot (no downloads), with known content."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

from maskvid.synth import SynthConfig, synthesize, write_video

# No per-example deadline anywhere: it is a timed assertion, and `make test` runs two pytest processes on two cores,
# where an example's time says more about the other process than about the code under test.
settings.register_profile("maskvid", deadline=None)
settings.load_profile("maskvid")


@pytest.fixture(scope="session", autouse=True)
def index_cache(tmp_path_factory):
    """Decoded frame indices go to a temporary directory, never the user's ~/.cache (subprocesses inherit it)."""
    root = str(tmp_path_factory.mktemp("frame-index"))
    before = os.environ.get("MASKVID_INDEX_CACHE")
    os.environ["MASKVID_INDEX_CACHE"] = root
    yield root
    if before is None:
        os.environ.pop("MASKVID_INDEX_CACHE", None)
    else:
        os.environ["MASKVID_INDEX_CACHE"] = before


def moving_square_frames(n: int = 48, size: int = 128, speed: int = 2) -> list[np.ndarray]:
    """A textured 32x32 square moving right ``speed`` px/frame over a static, smooth, textured background."""
    ys, xs = np.mgrid[0:size, 0:size]
    background = (127 + 60 * np.sin(2 * np.pi * xs / 32) * np.cos(2 * np.pi * ys / 32)).astype(np.uint8)
    frames = []
    for t in range(n):
        image = np.repeat(background[..., None], 3, axis=2)
        x0 = 16 + speed * t
        inside = (xs >= x0) & (xs < x0 + 32) & (ys >= 48) & (ys < 80)
        checker = ((xs - x0) // 4 + ys // 4) % 2 == 0
        image[inside & checker] = (230, 40, 40)
        image[inside & ~checker] = (40, 40, 230)
        frames.append(image)
    return frames


def square_box(t: int, speed: int = 2) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the square in frame t, pixels."""
    return 48, 16 + speed * t, 80, 48 + speed * t


@pytest.fixture(scope="session")
def moving_square(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("videos") / "square.mp4"
    write_video(path, moving_square_frames())
    return str(path)


@pytest.fixture(scope="session")
def lossless_video(tmp_path_factory) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 64, 96, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("videos") / "lossless.mkv"
    write_video(path, frames, lossless=True, options={"g": "8"})
    return str(path), frames


@pytest.fixture(scope="session")
def synth_motion(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("synth") / "motion"
    synthesize(out, SynthConfig(classes=3, train_per_class=2, val_per_class=1, size=64, frames=24), workers=1)
    return str(out)


def orbit_frames(n: int = 48, size: int = 224, side: int = 48) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    """A checkered square circling the centre (radius 60 px, one turn in ``n`` frames) over a static textured
    background; returns frames and the square's (top, left, bottom, right) per frame."""
    ys, xs = np.mgrid[0:size, 0:size]
    background = (127 + 50 * np.sin(2 * np.pi * xs / 24) * np.cos(2 * np.pi * ys / 20)).astype(np.uint8)
    frames, boxes = [], []
    for t in range(n):
        angle = 2 * np.pi * t / n
        top = int(round(size / 2 + 60 * np.sin(angle) - side / 2))
        left = int(round(size / 2 + 60 * np.cos(angle) - side / 2))
        image = np.repeat(background[..., None], 3, axis=2)
        inside = (ys >= top) & (ys < top + side) & (xs >= left) & (xs < left + side)
        checker = ((xs - left) // 6 + (ys - top) // 6) % 2 == 0
        image[inside & checker] = (230, 40, 40)
        image[inside & ~checker] = (40, 200, 60)
        frames.append(image)
        boxes.append((top, left, top + side, left + side))
    return frames, boxes


@pytest.fixture(scope="session")
def orbit_video(tmp_path_factory) -> tuple[str, list[tuple[int, ...]]]:
    frames, boxes = orbit_frames()
    path = tmp_path_factory.mktemp("videos") / "orbit.mp4"
    write_video(path, frames)
    return str(path), boxes
