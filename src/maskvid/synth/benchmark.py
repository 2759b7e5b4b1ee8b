"""``maskvid synth``: a small, deterministic action-recognition benchmark of real H.264 MP4 files.

Two presets (DESIGN.md, "The synthetic benchmark"):

* ``motion`` — like Something-Something: the same shapes, colours and backgrounds in every class; only the main
  object's motion decides the label (move right/left/up/down, rotate cw/ccw, approach/recede, speed up, slow
  down), and any clip of two or more frame intervals shows it. A camera pan and a smaller distractor moving at
  random keep it from being trivial, and the scene lives on a torus so no single frame reveals the class (see
  :mod:`maskvid.synth.scenes`, also for the grain textures that make masked prediction a motion task).
* ``appearance`` — like Kinetics/UCF: the main object's colour and shape decide the label; its motion is random.

Videos are encoded with libx264's defaults (B-frames included), so they carry real codec motion vectors.
The output directory holds ``videos/``, ``train.csv`` and ``val.csv`` (``path label``, paths relative to the
directory), ``pool.csv`` (``path`` only: an unlabeled pool for self-supervised pretraining, its classes balanced
but unlisted; written when ``pool > 0``), ``classes.txt`` and ``synth.json`` (the parameters; a matching one makes
a rerun a no-op). The three sets are disjoint: each video's randomness is seeded by (seed, set, index).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from maskvid.errors import ConfigError
from maskvid.synth.encode import write_video
from maskvid.synth.scenes import COLOURS, MOTIONS, SHAPES, Renderer, background_colours, distractor_sprite, main_sprite

PRESETS = ("motion", "appearance")
# 2: grain textures, speed_up/slow_down, the pool; 3: textures smooth at a patch's scale; 4: motion at MOTION_PACE
FORMAT_VERSION = 4
# The motion preset's objects move twice as fast as format 3's (1.2–2.4 px/frame at size 128, 4–8°/frame, ×1.8–2.4
# over the video). At format 3's pace a probe of an MME encoder read the 4 directions only after ~3,000 steps of 8,
# at this one after ~800–1,200 (docs/demo.md). In the appearance preset motion is a nuisance: it keeps format 3's pace.
MOTION_PACE = 2.0
_SPLITS = {"train": 0, "val": 1, "pool": 2}


@dataclass(frozen=True)
class SynthConfig:
    preset: str = "motion"
    classes: int = 10
    train_per_class: int = 16
    val_per_class: int = 30  # 300 validation videos for 10 classes: 80 could not tell methods apart (issue 15)
    pool: int = 0
    size: int = 128
    frames: int = 40
    fps: int = 25
    seed: int = 0

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError("preset", f"{self.preset!r} is not one of {PRESETS}")
        most = len(class_names(self.preset, None))
        if not 2 <= self.classes <= most:
            raise ConfigError("classes", f"{self.classes} outside [2, {most}] for preset {self.preset!r}")
        for key in ("train_per_class", "val_per_class", "pool"):
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must be >= 0, got {getattr(self, key)}")
        if self.size < 32 or self.size % 16:
            raise ConfigError("size", f"must be a multiple of 16 and >= 32, got {self.size}")
        if self.frames < 8:
            raise ConfigError("frames", f"must be >= 8, got {self.frames}")


def class_names(preset: str, count: int | None) -> list[str]:
    if preset == "motion":
        names = list(MOTIONS)
    else:  # colour-major so that the first N classes vary both colour and shape
        names = [f"{colour}_{shape}" for shape in SHAPES for colour in COLOURS]
    return names if count is None else names[:count]


def render_video(config: SynthConfig, label: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The frames (uint8 ``(size, size, 3)``) of one video of class ``label``."""
    size, frames = config.size, config.frames
    if config.preset == "motion":
        motion = MOTIONS[label]
        shape = str(rng.choice(SHAPES))
        colour = np.asarray(list(COLOURS.values())[rng.integers(len(COLOURS))]) + rng.uniform(-20, 20, 3)
    else:
        colour_name, shape = class_names("appearance", None)[label].split("_")
        colour = np.asarray(COLOURS[colour_name]) + rng.uniform(-20, 20, 3)
        motion = str(rng.choice(MOTIONS))
    pan = rng.uniform(-0.5, 0.5, 2) * size / 128
    renderer = Renderer(size, rng, pan, background_colours(rng))
    pace = MOTION_PACE if config.preset == "motion" else 1.0
    sprites = [distractor_sprite(rng, size),
               main_sprite(motion, rng, size, frames, shape, np.clip(colour, 0, 255), pace)]
    return [renderer.frame(t, sprites) for t in range(frames)]


def _make_one(job: tuple[SynthConfig, str, int, int, str]) -> None:
    config, split, index, label, path = job
    rng = np.random.default_rng([config.seed, _SPLITS[split], index])
    write_video(path, render_video(config, label, rng), fps=config.fps)


def synthesize(
    out_dir: str | os.PathLike,
    config: SynthConfig = SynthConfig(),
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the dataset into ``out_dir``; returns a summary. Reuses a complete earlier run with the same config."""
    out_dir = os.fspath(out_dir)
    os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
    meta = {"format": FORMAT_VERSION, **asdict(config)}
    jobs, lists = [], {}
    counts = {"train": config.train_per_class * config.classes, "val": config.val_per_class * config.classes,
              "pool": config.pool}
    for split, count in counts.items():
        lists[split] = []
        for index in range(count):
            label = index % config.classes
            rel = f"videos/{split}_{index:05d}.mp4"
            lists[split].append(rel if split == "pool" else f"{rel} {label}")
            jobs.append((config, split, index, label, os.path.join(out_dir, rel)))
    meta_path = os.path.join(out_dir, "synth.json")
    reused = _is_complete(meta_path, meta, jobs)
    if not reused:
        _run_jobs(jobs, workers, progress)
        for split, lines in lists.items():
            if lines or split != "pool":
                _write_text(os.path.join(out_dir, f"{split}.csv"), lines)
        _write_text(os.path.join(out_dir, "classes.txt"), class_names(config.preset, config.classes))
        _write_text(meta_path, [json.dumps(meta, indent=2)])
    return {"out_dir": out_dir, "reused": reused, "train": len(lists["train"]), "val": len(lists["val"]),
            "pool_videos": len(lists["pool"]), **meta}


def _is_complete(meta_path: str, meta: dict, jobs) -> bool:
    try:
        with open(meta_path) as f:
            if json.load(f) != meta:
                return False
    except (OSError, ValueError):
        return False
    return all(os.path.exists(job[-1]) for job in jobs)


def _run_jobs(jobs, workers: int | None, progress) -> None:
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    done = 0
    if workers <= 1:
        for job in jobs:
            _make_one(job)
            done += 1
            if progress:
                progress(done, len(jobs))
        return
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(_make_one, jobs, chunksize=4):
            done += 1
            if progress:
                progress(done, len(jobs))


def _write_text(path: str, lines: list[str]) -> None:
    tmp = f"{path}.part{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
