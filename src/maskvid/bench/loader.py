"""``maskvid bench data --workers 1,2,4``: how the pretraining loader scales with data-loader processes, on videos
shaped like Kinetics (340×256, 10 s, x264 with B-frames), and what codec motion vectors cost.

Two pipelines, each 16 frames at stride 4 → multi-scale crop to 224², as ``maskvid pretrain`` builds them:

* ``tube`` — VideoMAE: tube mask at 90%, no motion; clips stay uint8 for the training loop to normalize on its
  device (as ``maskvid pretrain`` ships them);
* ``tube_float`` — the same, the workers normalizing to float32 (as before; a quarter of the bytes and the float
  arithmetic are what ``tube`` saves);
* ``tube_vectors`` — the same, the samples also carrying the codec motion field (decoded with the frames, rasterized,
  cropped as they are): what the vectors alone cost;
* ``mgm`` — MGM: the motion-guided mask built from the codec vectors;
* ``tube_repeat2`` — ``tube`` with repeated augmentation (``data.num_repeats: 2``, VideoMAE's ``num_sample``): each
  decoded clip gives two samples, each its own crop and mask, so the decode — most of a sample's cost — is paid once
  for two. Counted in clips, as the training step sees them.

And evaluation's multi-view loader (2 clips × 3 centre-left-right crops of 224² a video, as ``maskvid evaluate``),
in views/s (``eval_views_per_s``): ``eval`` with uint8 views, normalized on the device as ``evaluate`` does now, and
``eval_float`` with the workers normalizing (as it did before).

For each worker count: clips/s and clips/s per worker (a worker is one core: decoding and scaling are
single-threaded in it). ``codec_vector_overhead``: what carrying the vectors costs over the tube path (whole
sample), and in decoding alone (``decode_clip`` with and without ``motion_vectors`` on the same clips, one core, at
the native size the loader decodes at and at a 224 short side).
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from maskvid import masking
from maskvid.bench.decoders import time_per_clip
from maskvid.bench.videos import KINETICS_FRAMES, KINETICS_SIZE, kinetics_like_videos
from maskvid.data import ClipTransform, VideoDataset, VideoRecord, collate
from maskvid.data.decode import decode_clip
from maskvid.data.sampling import dense_indices
from maskvid.rng import sample_generator

CLIP_LEN, STRIDE, SIZE, PATCH = 16, 4, 224, (2, 16, 16)
EVAL_VIEWS = (2, 3)  # VideoMAE's SSv2 protocol: temporal clips × spatial crops
PIPELINES = {  # name: (mask strategy and options, samples carry the codec motion field, workers normalize, repeats)
    "tube": (("tube", {"ratio": 0.9}), False, False, 1),
    "tube_float": (("tube", {"ratio": 0.9}), False, True, 1),
    "tube_vectors": (("tube", {"ratio": 0.9}), True, False, 1),
    "mgm": (("mgm", {}), False, False, 1),  # the mask reads the vectors itself
    "tube_repeat2": (("tube", {"ratio": 0.9}), False, False, 2),
}


def pretraining_dataset(paths: list[str], pipeline: str, normalize: bool | None = None) -> VideoDataset:
    """``pipeline``'s dataset; ``normalize`` overrides whether its workers normalize the clips."""
    (strategy, options), vectors, normalized, repeats = PIPELINES[pipeline]
    normalize = normalized if normalize is None else normalize
    transform = ClipTransform(size=SIZE, crop="multiscale", flip=False, normalize=normalize)
    return VideoDataset([VideoRecord(p) for p in paths], transform,
                        num_frames=CLIP_LEN, stride=STRIDE, patch=PATCH, mask=masking.build(strategy, **options),
                        motion_source="codec", motion_vectors=vectors, decode_threads=1, num_repeats=repeats)


def evaluation_dataset(paths: list[str], normalize: bool) -> VideoDataset:
    transform = ClipTransform(size=SIZE, crop="centre", flip=False, normalize=normalize)
    return VideoDataset([VideoRecord(p, 0) for p in paths], transform, num_frames=CLIP_LEN, stride=STRIDE,
                        sampling="multiview", views=EVAL_VIEWS, decode_threads=1)


def loader_clips_per_second(dataset, workers: int, clips: int, batch_size: int = 4) -> float:
    """Clips/s through a DataLoader with ``workers`` processes (a multi-view sample counts its views, a repeated one
    its clips); start-up and each worker's first batch untimed."""
    warm = batch_size * workers
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=warm + clips,
                                             generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                         collate_fn=collate, prefetch_factor=4)
    iterator, seen = iter(loader), 0
    while seen < warm:
        seen += next(iterator)["video"].shape[0]
    start, seen = time.perf_counter(), 0
    for batch in iterator:
        seen += batch["video"].shape[0] * (batch["video"].shape[1] if batch["video"].dim() == 6 else 1)
    return seen / (time.perf_counter() - start)


def decode_ms(paths: list[str], clips: int, rounds: int = 3) -> dict[str, float]:
    """Milliseconds per clip of ``decode_clip`` alone (one core) at the loader's indices, without and with codec
    motion vectors, in turns, best of ``rounds``: at the native size, as the loader decodes (``frames``,
    ``frames_and_vectors``), and resized to a 224 short side by the decoder (``data.decode_size``; ``…_224``)."""
    plan = [(paths[i % len(paths)], dense_indices(KINETICS_FRAMES, CLIP_LEN, STRIDE, sample_generator(0, 0, i)))
            for i in range(clips)]
    variants = {}
    for size, suffix in ((None, ""), (SIZE, f"_{SIZE}")):
        for name, vectors in (("frames", False), ("frames_and_vectors", True)):
            variants[name + suffix] = (lambda path, indices, k, size=size, vectors=vectors:
                                       decode_clip(path, indices, size=size, motion_vectors=vectors))
    return time_per_clip(variants, plan, rounds)


def bench_loader(workers: tuple[int, ...] = (1, 2), clips: int = 40, videos: int = 8, workdir: str | None = None,
                 keyint: int = 50) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        paths = kinetics_like_videos(workdir or tmp, videos, keyint=keyint)
        rates: dict[str, dict[str, float]] = {}
        for pipeline in PIPELINES:
            dataset = pretraining_dataset(paths, pipeline)
            rates[pipeline] = {str(w): loader_clips_per_second(dataset, w, clips) for w in workers}
        evaluation = {name: {str(w): loader_clips_per_second(evaluation_dataset(paths, normalize), w,
                                                             max(1, clips // 6)) for w in workers}
                      for name, normalize in (("eval", False), ("eval_float", True))}
        decode = decode_ms(paths, clips)
    per_core = {p: {w: r / int(w) for w, r in by_workers.items()} for p, by_workers in rates.items()}
    overhead = {w: rates["tube"][w] / rates["tube_vectors"][w] - 1 for w in rates["tube"]}
    return {
        "clips_per_s": rates,
        "clips_per_s_per_core": per_core,
        "eval_views_per_s": evaluation,
        "codec_vector_overhead": {
            "sample": overhead, "decode": decode["frames_and_vectors"] / decode["frames"] - 1,
            f"decode_{SIZE}": decode[f"frames_and_vectors_{SIZE}"] / decode[f"frames_{SIZE}"] - 1},
        "decode_ms_per_clip": decode,
        "setup": {"source": f"{videos} H.264 videos {KINETICS_SIZE[1]}x{KINETICS_SIZE[0]}x{KINETICS_FRAMES}, "
                            f"keyframe every {keyint}", "clip": f"{CLIP_LEN}x{STRIDE}", "output": f"{SIZE}x{SIZE}",
                  "workers": list(workers), "cores": _cores()},
    }


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def format_loader(result: dict) -> str:
    lines = [f"loader scaling: {result['setup']}"]
    for pipeline, by_workers in result["clips_per_s"].items():
        for w, rate in by_workers.items():
            per_core = result["clips_per_s_per_core"][pipeline][w]
            lines.append(f"  {pipeline:>12} {w:>3} worker(s): {rate:7.2f} clips/s  ({per_core:6.2f} per core)")
    for name, by_workers in result.get("eval_views_per_s", {}).items():
        for w, rate in by_workers.items():
            lines.append(f"  {name:>12} {w:>3} worker(s): {rate:7.2f} views/s")
    overhead = result["codec_vector_overhead"]
    sample = ", ".join(f"{w} worker(s) {100 * v:+.0f}%" for w, v in overhead["sample"].items())
    ms = result["decode_ms_per_clip"]
    lines.append(f"  codec vectors cost: whole sample {sample}; decode alone {100 * overhead['decode']:+.0f}% "
                 f"({ms['frames']:.1f} -> {ms['frames_and_vectors']:.1f} ms/clip), resized to a {SIZE} short side "
                 f"{100 * overhead[f'decode_{SIZE}']:+.0f}% ({ms[f'frames_{SIZE}']:.1f} -> "
                 f"{ms[f'frames_and_vectors_{SIZE}']:.1f})")
    return "\n".join(lines)

