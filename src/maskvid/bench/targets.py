"""``maskvid bench targets``: what each prediction target costs per clip, on one core, in the same run.

MME's trajectories are made in the data-loader workers from the raw frames between the sampled ones, so their
cost is per clip on a CPU core: decode the extra frames, optical flow between every pair (DIS), camera-motion
removal (keypoints + RANSAC homography + warp), tracking and HOG along the tracks. The per-token targets that
need only the clip (HOG, RGB difference, normalized pixels) run on the training device; here they run on the same
one core for scale. Clips: 16 frames at stride 2 (SSv2's setting), flow stride 1, multi-scale crop to 224².
Trajectories are timed online (flow computed in the worker) and from a flow cache (``maskvid extract``); HOF/MBH
as the worker's per-pixel flows plus the target.

The goal the issue sets: trajectories online ≤ 100 ms per clip per core, so that a 16-core host makes ≥ 150
clips/s of them.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch

from maskvid import targets
from maskvid.bench.threads import one_core
from maskvid.bench.videos import synthetic_videos
from maskvid.data import ClipTransform, VideoDataset
from maskvid.data.annotations import VideoRecord
from maskvid.data.decode import decode_clip, frame_count
from maskvid.data.flow_cache import FlowCache, extract
from maskvid.motion.flow_fields import FlowFieldSpec, clip_flow_fields
from maskvid.motion.trajectory_features import TrajectorySpec, clip_trajectories

CLIP_LEN, STRIDE, SIZE, PATCH = 16, 2, 224, (2, 16, 16)
SOURCE = 256  # decoded side of the benchmark videos (Kinetics' short side)
VARIANTS = {  # name → the worker's trajectory spec
    "dis_medium": TrajectorySpec(camera=None),
    "dis_medium_camera_klt": TrajectorySpec(camera="klt"),
    "dis_fast_camera_klt": TrajectorySpec(camera="klt", preset="fast"),
    "dis_ultrafast_camera_klt": TrajectorySpec(camera="klt", preset="ultrafast"),
}


def _ms(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1e3, out


def bench_targets(clips: int = 20, videos: int = 4, workdir: str | None = None) -> dict:
    with one_core(), tempfile.TemporaryDirectory() as tmp:
        root = workdir or tmp
        paths = synthetic_videos(root, videos, SOURCE, 64)
        cache = FlowCache(os.path.join(root, "flow-cache"), VARIANTS["dis_medium_camera_klt"])
        extract(paths, cache.root, cache.spec)
        return _measure(paths, clips, cache)


def _from_cache(cache: FlowCache, path: str, frames, starts, geometry):
    spec = cache.spec
    pairs = sorted({(a, a + spec.flow_stride) for s in starts for a in spec.raw_frames(s)[:-1]})
    flows = cache.load(path, pairs)
    return clip_trajectories(frames, starts, spec, geometry.pixel_box, geometry.flip, SIZE, PATCH[1], flows)


def _clip_timings(path: str, length: int, g: torch.Generator, cache: FlowCache) -> dict[str, float]:
    spec = TrajectorySpec()
    span = (CLIP_LEN - 1) * STRIDE + 1
    first = int(torch.randint(length - span - spec.length + 1, (), generator=g))
    indices = [first + i * STRIDE for i in range(CLIP_LEN)]
    starts = indices[:: PATCH[0]]
    raw = sorted({i for s in starts for i in spec.raw_frames(s)})
    t = {}
    t["decode_clip"], clip = _ms(decode_clip, path, indices)
    t["decode_clip_and_raw_frames"], both = _ms(decode_clip, path, indices + raw)
    frames = dict(zip(raw, both.frames[CLIP_LEN:].numpy(), strict=True))
    geometry = ClipTransform(size=SIZE).geometry(*clip.frames.shape[1:3], g)
    for name, variant in VARIANTS.items():
        t[f"trajectory_{name}"], _ = _ms(clip_trajectories, frames, starts, variant, geometry.pixel_box,
                                         geometry.flip, SIZE, PATCH[1])
    t["trajectory_dis_medium_camera_klt_from_cache"], _ = _ms(_from_cache, cache, path, frames, starts, geometry)
    video = ClipTransform(size=SIZE)(clip.frames, g)[0][None]  # (1, 3, T, 224, 224)
    for name in ("hog", "rgb_diff", "norm_pixels"):
        target = targets.build(name, patch=PATCH)
        t[f"target_{name}"], _ = _ms(target, video)
    flow_spec = FlowFieldSpec()  # one flow per input frame, at the input stride (MME's s_flow = s_rgb)
    pairs = flow_spec.pairs(indices, PATCH[0], STRIDE)
    flow_frames = dict(zip([i for p in pairs for i in p], decode_clip(path, [i for p in pairs for i in p]).frames
                           .numpy(), strict=True))
    t["flow_fields_dis_medium"], fields = _ms(clip_flow_fields, flow_frames, pairs, flow_spec, geometry.pixel_box,
                                              geometry.flip, SIZE)
    for name in ("hof", "mbh"):
        target = targets.build(name, patch=PATCH, stride=STRIDE)
        t[f"target_{name}"], _ = _ms(target, fields[None])
    return t


def _sample_timings(paths: list[str], clips: int) -> dict[str, float]:
    """A whole training sample (decode + augment + mask-free) with and without trajectories."""
    records = [VideoRecord(p, 0) for p in paths]
    common = {"num_frames": CLIP_LEN, "stride": STRIDE, "patch": PATCH, "transform": ClipTransform(size=SIZE)}
    plain = VideoDataset(records, **common)
    tracked = VideoDataset(records, trajectories=TrajectorySpec(), **common)
    out = {"sample_plain": [], "sample_with_trajectories": []}
    for k in range(clips + 1):
        for name, dataset in (("sample_plain", plain), ("sample_with_trajectories", tracked)):
            ms, _ = _ms(dataset.__getitem__, k % len(records))
            if k:
                out[name].append(ms)
    return {name: statistics.median(values) for name, values in out.items()}


def _measure(paths: list[str], clips: int, cache: FlowCache) -> dict:
    g = torch.Generator().manual_seed(0)
    length = frame_count(paths[0])
    rows = []
    for k in range(clips + 1):
        timing = _clip_timings(paths[k % len(paths)], length, g, cache)
        if k:  # the first clip warms caches and the packet index
            rows.append(timing)
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    median.update(_sample_timings(paths, clips))
    default = median["trajectory_dis_medium_camera_klt"]
    return {
        "ms_per_clip": median,
        "trajectory_clips_per_s_per_core": 1e3 / default,
        "cached_over_online": median["trajectory_dis_medium_camera_klt_from_cache"] / default,
        "trajectory_over_hog": default / median["target_hog"],
        "extra_decode_ms": median["decode_clip_and_raw_frames"] - median["decode_clip"],
        "setup": {
            "source": f"{len(paths)} H.264 videos {SOURCE}x{SOURCE}x{length} (synth motion preset)",
            "clip": f"{CLIP_LEN}x{STRIDE}, multiscale crop to {SIZE}², patch {PATCH}",
            "trajectory": "K=4, L=6, flow stride 1 (default spec; DIS medium, KLT camera removal)",
            "clips": clips,
            "threads": 1,
        },
    }


def format_targets(result: dict) -> str:
    lines = [f"bench targets: {result['setup']}", "  per clip, median ms (one core):"]
    lines += [f"  {name:>44}: {value:8.2f}" for name, value in result["ms_per_clip"].items()]
    lines.append(f"  {'raw frames added to the decode':>44}: {result['extra_decode_ms']:8.2f} ms")
    rate = result["trajectory_clips_per_s_per_core"]
    lines.append(f"  {'trajectories (default), clips/s/core':>44}: {rate:8.2f}  (goal >= 10, i.e. <= 100 ms)")
    lines.append(f"  {'trajectories / HOG target':>44}: {result['trajectory_over_hog']:8.2f}x")
    lines.append(f"  {'from the cache / online':>44}: {result['cached_over_online']:8.2f}x")
    return "\n".join(lines)
