"""``maskvid bench masking``: what a mask costs, and what MGM's guidance costs from the file.

* per-strategy cost of one mask on the 16×224² token grid (8×14×14), median over many draws;
* MGM end to end from the file on the same 16-frame stride-4 224² clips: decode with codec motion vectors +
  per-slice magnitude + mask, against decode + OpenCV DIS optical flow + the same + mask (MGM Table 4b's
  alternative; the paper reports vectors ~30× cheaper than RAFT-Small flow);
* the motion-vector overhead on decoding itself: decode with vectors vs without (goal ≤10%).

Everything runs on one core (torch and OpenCV limited to one thread), as one data-loader worker would, alternating
the measured paths clip by clip so that a busy machine slows them alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from maskvid import masking
from maskvid.bench.threads import one_core
from maskvid.bench.videos import synthetic_videos
from maskvid.data.decode import decode_clip, frame_count
from maskvid.motion import dis_flow, slice_magnitude

CLIP_LEN, STRIDE, SIZE, TUBELET = 16, 4, 224, 2
GRID = (CLIP_LEN // TUBELET, SIZE // 16, SIZE // 16)
FLOW_PRESETS = ("medium", "ultrafast")


def _ms(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1e3, out


def _strategy_costs(motion: torch.Tensor, draws: int) -> dict[str, float]:
    """Median ms per mask for every registered strategy (guided ones get ``motion``)."""
    g = torch.Generator().manual_seed(0)
    costs = {}
    for name in masking.available():
        gen = masking.build(name, ratio=0.5) if name.startswith("running") else masking.build(name)
        guide = motion if gen.needs_motion else None
        gen(GRID, g, guide)  # warm-up
        costs[name] = statistics.median(_ms(gen, GRID, g, guide)[0] for _ in range(draws))
    return costs


def _clip_timings(path: str, start: int, mgm, g: torch.Generator) -> dict[str, float]:
    indices = [start + i * STRIDE for i in range(CLIP_LEN)]
    t = {}
    t["decode"], _ = _ms(decode_clip, path, indices)
    t["decode_mv"], clip = _ms(decode_clip, path, indices, motion_vectors=True)
    t["guide_codec"], codec = _ms(slice_magnitude, clip.motion, clip.motion_valid, TUBELET)
    t["mask_codec"], _ = _ms(mgm, GRID, g, codec)
    for preset in FLOW_PRESETS:
        t[f"flow_{preset}"], (field, valid) = _ms(dis_flow, clip.frames, frame_distance=STRIDE, preset=preset)
        guide_ms, flow = _ms(slice_magnitude, field, valid, TUBELET)
        mask_ms, _ = _ms(mgm, GRID, g, flow)
        t[f"flow_{preset}"] += guide_ms + mask_ms
    return t


def bench_masking(clips: int = 40, videos: int = 8, workdir: str | None = None, draws: int = 200) -> dict:
    with one_core(), tempfile.TemporaryDirectory() as tmp:
        paths = synthetic_videos(workdir or tmp, videos, SIZE, 96)
        return _measure(paths, clips, draws)


def _measure(paths: list[str], clips: int, draws: int) -> dict:
    g = torch.Generator().manual_seed(0)
    mgm = masking.build("mgm", ratio=0.75)
    length = frame_count(paths[0])
    rows = []
    for k in range(clips + 1):
        start = int(torch.randint(length - (CLIP_LEN - 1) * STRIDE, (), generator=g))
        timing = _clip_timings(paths[k % len(paths)], start, mgm, g)
        if k:  # the first clip warms caches and the packet index
            rows.append(timing)
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    codec_total = median["decode_mv"] + median["guide_codec"] + median["mask_codec"]
    flow_totals = {p: median["decode"] + median[f"flow_{p}"] for p in FLOW_PRESETS}
    clip = decode_clip(paths[0], [i * STRIDE for i in range(CLIP_LEN)], motion_vectors=True)
    return {
        "ms_per_clip": {
            "decode": median["decode"],
            "decode_with_vectors": median["decode_mv"],
            "mgm_codec_end_to_end": codec_total,
            **{f"mgm_flow_{p}_end_to_end": total for p, total in flow_totals.items()},
        },
        "vector_overhead": median["decode_mv"] / median["decode"] - 1,
        "mgm_mask_ms": median["guide_codec"] + median["mask_codec"],
        "flow_over_codec": {p: total / codec_total for p, total in flow_totals.items()},
        "strategy_ms": _strategy_costs(slice_magnitude(clip.motion, clip.motion_valid, TUBELET), draws),
        "setup": {
            "source": f"{len(paths)} H.264 videos {SIZE}x{SIZE}x{length} (synth motion preset)",
            "clip": f"{CLIP_LEN}x{STRIDE}",
            "grid": GRID,
            "clips": clips,
            "threads": 1,
        },
    }


def format_masking(result: dict) -> str:
    lines = [f"bench masking: {result['setup']}", "  per clip, median ms (one core):"]
    lines += [f"  {name:>28}: {value:8.2f}" for name, value in result["ms_per_clip"].items()]
    lines.append(f"  {'vector overhead on decode':>28}: {100 * result['vector_overhead']:7.1f}%  (goal <= 10%)")
    lines.append(f"  {'mgm guide + mask':>28}: {result['mgm_mask_ms']:8.2f}  (goal <= 2 ms)")
    for preset, ratio in result["flow_over_codec"].items():
        lines.append(f"  {'flow (' + preset + ') / codec':>28}: {ratio:8.2f}x  end to end")
    lines.append("  one mask on the 8x14x14 grid, median ms:")
    lines += [f"  {name:>28}: {value:8.3f}" for name, value in result["strategy_ms"].items()]
    return "\n".join(lines)
