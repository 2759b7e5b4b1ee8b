"""Frame-accurate clip decoding with PyAV, optionally with the codec's motion vectors in the same pass.

``decode_clip`` seeks to the keyframe before each requested frame and decodes forward, so a clip at the end of a
long video never decodes the video from its start. Frames are addressed by their display index, found from the
container's packet timestamps (an index built by demuxing only, cached per file), which keeps variable-frame-rate
videos exact. Resizing happens inside the RGB conversion (FFmpeg's swscale), never as a second pass.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

from maskvid.errors import MaskvidError, VideoDecodeError
from maskvid.motion.vectors import rasterize_frames, reference_distances, resize_field

MIN_FRAMES = 2


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` reads from a file without decoding it."""

    path: str
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    duration: float
    container: str
    seekable: bool  # every packet has a timestamp: frames are addressed exactly and seeks are used
    motion_vectors: bool | None = None  # None: not checked (pass check_motion_vectors=True)


@dataclass
class Clip:
    """Decoded frames of one clip and, when asked for, the codec motion field.

    frames: uint8 ``(T, H, W, 3)``; motion: float32 ``(T, ceil(H/4), ceil(W/4), 2)`` velocity (dx, dy) in output
    pixels per frame, or None; motion_valid: bool ``(T,)``, False for frames without vectors (I-frames, codecs that
    export none) whose field is zero; indices: the display indices decoded.
    """

    frames: torch.Tensor
    indices: torch.Tensor
    motion: torch.Tensor | None = None
    motion_valid: torch.Tensor | None = None


@dataclass(frozen=True)
class _StreamIndex:
    pts: np.ndarray  # (N,) int64, display order
    keyframe_before: np.ndarray  # (N,) index of the last keyframe at or before each frame
    past_distance: np.ndarray  # (N,) display distance to the nearest possible past reference
    future_distance: np.ndarray
    seekable: bool  # every packet has a pts; otherwise frames are counted from the start

    @functools.cached_property
    def position(self) -> dict[int, int]:
        return {int(p): i for i, p in enumerate(self.pts)}


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file does not exist")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "permission denied")


def _open(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    _check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # FFmpeg reports unreadable/unknown data in many ways; all mean "not a video file"
        raise VideoDecodeError(path, f"cannot open container: {e}") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
    return container, container.streams.video[0]


def _build_index(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str
) -> _StreamIndex:
    pts, dts, key = [], [], []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's flush packet
        pts.append(packet.pts)
        dts.append(packet.dts if packet.dts is not None else packet.pts)
        key.append(packet.is_keyframe)
    if any(p is None for p in pts):
        # Without timestamps frames are counted as they come out of the decoder (no seeking).
        n = len(pts)
        return _StreamIndex(np.arange(n), np.zeros(n, np.int64), np.ones(n), np.ones(n), seekable=False)
    pts_arr, dts_arr, key_arr = np.asarray(pts, np.int64), np.asarray(dts, np.int64), np.asarray(key, bool)
    display = np.argsort(pts_arr, kind="stable")
    rank = np.empty_like(display)
    rank[display] = np.arange(len(display))  # packet -> display index
    decode_order = rank[np.argsort(dts_arr, kind="stable")]
    past, future = reference_distances(decode_order)
    key_display = key_arr[display]
    if len(key_display) and not key_display[0]:
        key_display[0] = True  # a stream that starts on a non-key frame still has to be decoded from there
    keyframe_before = np.maximum.accumulate(np.where(key_display, np.arange(len(display)), 0))
    return _StreamIndex(pts_arr[display], keyframe_before, past, future, seekable=True)


@functools.lru_cache(maxsize=1024)
def _cached_index(path: str, size: int, mtime_ns: int) -> _StreamIndex:
    container, stream = _open(path)
    try:
        return _build_index(container, stream, path)
    except MaskvidError:
        raise
    except Exception as e:
        raise VideoDecodeError(path, f"cannot read packets: {type(e).__name__}: {e}") from e
    finally:
        container.close()


def _index(path: str) -> _StreamIndex:
    _check_file(path)
    st = os.stat(path)
    return _cached_index(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def frame_count(path: str | os.PathLike) -> int:
    """Exact number of frames (from the cached packet index; no decoding)."""
    return len(_index(os.fspath(path)).pts)


def probe_video(path: str | os.PathLike, check_motion_vectors: bool = False) -> VideoInfo:
    """Frames, fps, size, codec and duration of a video; raises ``VideoDecodeError`` on a file that is no video.

    The frame count is exact (one packet per frame, from demuxing, not from container metadata). With
    ``check_motion_vectors`` the first frames are decoded to see whether the codec exports motion vectors.
    """
    path = os.fspath(path)
    index = _index(path)
    seekable = index.seekable
    n = len(index.pts)
    if n < MIN_FRAMES:
        raise VideoDecodeError(path, f"has {n} frame(s); a clip needs at least {MIN_FRAMES}")
    container, stream = _open(path)
    try:
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate)
        tb = stream.time_base or Fraction(1, 1)
        span = float((int(index.pts[-1]) - int(index.pts[0])) * tb) if seekable else 0.0
        duration = span + (1.0 / fps if fps else 0.0) if span else (n / fps if fps else 0.0)
        info = VideoInfo(
            path=path,
            frames=n,
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            duration=duration,
            container=container.format.name,
            seekable=seekable,
        )
    finally:
        container.close()
    if check_motion_vectors:
        clip = decode_clip(path, list(range(min(n, 8))), motion_vectors=True)
        info = VideoInfo(**{**info.__dict__, "motion_vectors": bool(clip.motion_valid.any())})
    return info


def _output_size(size: int | tuple[int, int] | None, height: int, width: int) -> tuple[int, int]:
    if size is None:
        return height, width
    if isinstance(size, int):  # short side to `size`, aspect kept
        if height <= width:
            return size, max(1, round(width * size / height))
        return max(1, round(height * size / width)), size
    return int(size[0]), int(size[1])


def decode_clip(
    path: str | os.PathLike,
    indices: Sequence[int],
    size: int | tuple[int, int] | None = None,
    motion_vectors: bool = False,
    threads: int = 1,
) -> Clip:
    """Decode exactly the frames at display ``indices`` (any order, repeats allowed) of one video.

    Args:
        size: None (native), an int (short side, aspect kept) or ``(H, W)``; applied by FFmpeg's scaler.
        motion_vectors: also return the codec motion field of those frames (``Clip.motion``), see
            :mod:`maskvid.motion.vectors` for units and B-frame handling.
        threads: decoder and scaler threads; 0 lets FFmpeg choose. The default, 1, suits
            data-loader workers, and leaves no FFmpeg worker threads behind in a process that later forks them
            (a forked DataLoader worker can deadlock on a lock such a thread held).
    Raises:
        VideoDecodeError: the file cannot be decoded, or an index is outside ``[0, frames)``.
    """
    path = os.fspath(path)
    index = _index(path)
    seekable = index.seekable
    n = len(index.pts)
    if n < MIN_FRAMES:
        raise VideoDecodeError(path, f"has {n} frame(s); a clip needs at least {MIN_FRAMES}")
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("decode_clip: indices is empty")
    bad = [i for i in wanted if not 0 <= i < n]
    if bad:
        raise VideoDecodeError(path, f"frame index {bad[0]} out of range: the video has {n} frames")
    container, stream = _open(path)
    try:
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        if motion_vectors:
            stream.codec_context.options = {"flags2": "+export_mvs"}
        targets = sorted(set(wanted))
        decoded = _decode_frames(container, stream, index, targets, seekable, path)
        return _assemble(decoded, wanted, index, size, motion_vectors, threads)
    except MaskvidError:
        raise
    except Exception as e:
        raise VideoDecodeError(path, f"decode failed: {type(e).__name__}: {e}") from e
    finally:
        container.close()


def _decode_frames(container, stream, index: _StreamIndex, targets: list[int], seekable: bool, path: str) -> dict:
    """Return {display index: av.VideoFrame} for ``targets`` (sorted), seeking only when a keyframe is closer."""
    found: dict[int, av.VideoFrame] = {}
    frames = None
    last = -1
    k = 0
    while k < len(targets):
        target = targets[k]
        if frames is None or (seekable and index.keyframe_before[target] > last):
            if seekable:
                container.seek(int(index.pts[index.keyframe_before[target]]), stream=stream, backward=True)
            frames = _numbered(container.decode(stream), index, seekable)
            last = -1
        for shown, frame in frames:
            last = shown
            if shown > target:
                raise VideoDecodeError(path, f"frame {target} was not produced by the decoder (next was {shown})")
            if shown == target:
                found[target] = frame
                k += 1
                if k == len(targets) or (seekable and index.keyframe_before[targets[k]] > shown):
                    break
                target = targets[k]
        else:
            raise VideoDecodeError(
                path, f"stream ended before frame {target} (decoded up to {last} of {len(index.pts)}): truncated?"
            )
    return found


def _numbered(frames, index: _StreamIndex, seekable: bool):
    """Pair each decoded frame with its display index (by pts, or by count when the stream has no timestamps)."""
    for count, frame in enumerate(frames):
        if not seekable:
            yield count, frame
            continue
        shown = index.position.get(frame.pts) if frame.pts is not None else None
        if shown is not None:
            yield shown, frame


def _assemble(decoded: dict, wanted: list[int], index: _StreamIndex, size, motion_vectors: bool, threads: int) -> Clip:
    first = decoded[wanted[0]]
    out_h, out_w = _output_size(size, first.height, first.width)
    frames = np.empty((len(wanted), out_h, out_w, 3), np.uint8)
    converted: dict[int, int] = {}
    for slot, i in enumerate(wanted):
        if i in converted:
            frames[slot] = frames[converted[i]]
            continue
        # swscale's default (threads=0) starts slice threads per conversion; a frame whose converter holds them,
        # if garbage-collected in a forked DataLoader worker, joins threads that do not exist there and crashes.
        rgb = decoded[i].reformat(out_w, out_h, "rgb24", interpolation="BILINEAR", threads=threads)
        frames[slot] = rgb.to_ndarray()
        converted[i] = slot
    clip = Clip(frames=torch.from_numpy(frames), indices=torch.tensor(wanted, dtype=torch.long))
    if motion_vectors:
        clip.motion, clip.motion_valid = _motion_fields(decoded, wanted, index, (out_h, out_w))
    return clip


def _motion_fields(decoded: dict, wanted: list[int], index: _StreamIndex, out_hw: tuple[int, int]):
    """(T, h, w, 2) field and (T,) validity of the ``wanted`` frames, rasterized in one pass."""
    vectors = []
    for i in wanted:
        side = decoded[i].side_data.get("MOTION_VECTORS")
        vectors.append(side.to_ndarray() if side is not None else np.zeros(0, _NO_VECTORS))
    valid = torch.tensor([len(v) > 0 for v in vectors], dtype=torch.bool)
    shown = np.array(wanted)
    coded = (decoded[wanted[0]].height, decoded[wanted[0]].width)
    field = rasterize_frames(vectors, coded, index.past_distance[shown], index.future_distance[shown])
    # the rasterizer's channel-last view is strided; reductions over it were 5x slower than over a compact copy
    return torch.from_numpy(np.ascontiguousarray(resize_field(field, out_hw, coded))), valid


_NO_VECTORS = np.dtype([(name, np.int32) for name in ("source", "w", "h", "dst_x", "dst_y", "motion_x", "motion_y")]
                       + [("motion_scale", np.uint16)])
