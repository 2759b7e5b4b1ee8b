"""Frame-exact clip decoding with PyAV, optionally with the codec's motion vectors in the same pass.

Frame i of a video is the i-th frame a full sequential decode outputs, in presentation order, whatever the
container's timestamps say (AVI, MPEG-PS/TS, packed B-frames, edit lists): :mod:`maskvid.data.frame_index` ties
every frame to the packet that produces it and to a keyframe to start from, and :mod:`maskvid.data.reader` seeks
there and recognizes each decoded frame by its packet. A clip at the end of a long video never decodes the video
from its start. Frames come out upright (the display matrix's 90/180/270° rotation is applied, motion vectors
turned alike). Resizing happens inside the RGB conversion (FFmpeg's swscale), never as a second pass.

Damaged data: frames a decoder drops or conceals without an error are simply what a sequential decode gives. A
packet the decoder *rejects* makes the clips whose decoding passes through it raise ``VideoDecodeError`` naming
the file, the packet and the frame near it (a dataset skips, counts and reports them); other clips of the file
decode as usual.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from maskvid.data.frame_index import FrameIndex, mark_needs_decoding, video_index
from maskvid.data.reader import IndexMismatch, PacketReader
from maskvid.data.video_file import frame_checksum, open_video, quarter_turns
from maskvid.errors import MaskvidError, VideoDecodeError
from maskvid.motion.vectors import rasterize_frames, resize_field, rotate_field

MIN_FRAMES = 2
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` reads from a file: sizes are of the upright frames ``decode_clip`` returns."""

    path: str
    frames: int  # exactly the frames a full decode outputs
    fps: float
    width: int
    height: int
    codec: str
    duration: float
    container: str
    seekable: bool  # decodes start with a seek (else by demuxing forward from the file's start)
    addressing: str  # "packets": from container timestamps; "decoded": from an index of one decoding pass
    addressing_reason: str | None  # why the timestamps could not be used
    rotation: int  # degrees counter-clockwise applied to upright the frames (display matrix), 0/90/180/270
    motion_vectors: bool | None = None  # None: not checked (pass check_motion_vectors=True)


@dataclass
class Clip:
    """Decoded frames of one clip and, when asked for, the codec motion field.

    frames: uint8 ``(T, H, W, 3)``, upright; motion: float32 ``(T, ceil(H/4), ceil(W/4), 2)`` velocity (dx, dy) in
    output pixels per frame, or None; motion_valid: bool ``(T,)``, False for frames without vectors (I-frames,
    codecs that export none) whose field is zero; indices: the display indices decoded; rotation: degrees applied.
    """

    frames: torch.Tensor
    indices: torch.Tensor
    motion: torch.Tensor | None = None
    motion_valid: torch.Tensor | None = None
    rotation: int = 0


def frame_count(path: str | os.PathLike) -> int:
    """Exact number of frames a full decode outputs (from the cached index)."""
    return video_index(os.fspath(path)).frames


def _checked_index(path: str) -> FrameIndex:
    index = video_index(path)
    if index.frames < MIN_FRAMES:
        raise VideoDecodeError(path, f"has {index.frames} frame(s); a clip needs at least {MIN_FRAMES}")
    return index


def probe_video(path: str | os.PathLike, check_motion_vectors: bool = False) -> VideoInfo:
    """Frames, fps, size, codec, duration, rotation and addressing of a video; raises ``VideoDecodeError`` on a file
    that is no video. With ``check_motion_vectors`` the first frames are decoded to see whether the codec exports
    motion vectors (otherwise only the first frame is decoded, for its rotation)."""
    path = os.fspath(path)
    index = _checked_index(path)
    container, stream = open_video(path)
    try:
        fps = float(stream.average_rate or stream.guessed_rate or Fraction(0))
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        info = VideoInfo(
            path=path, frames=index.frames, fps=fps, width=stream.codec_context.width,
            height=stream.codec_context.height, codec=stream.codec_context.name,
            duration=duration or (index.frames / fps if fps else 0.0), container=container.format.name,
            seekable=index.seekable, addressing=index.addressing, addressing_reason=index.reason, rotation=0,
        )
    finally:
        container.close()
    clip = decode_clip(path, list(range(min(index.frames, 8 if check_motion_vectors else 1))),
                       motion_vectors=check_motion_vectors)
    height, width = clip.frames.shape[1:3]
    info = replace(info, rotation=clip.rotation, height=height, width=width)
    if check_motion_vectors:
        info = replace(info, motion_vectors=bool(clip.motion_valid.any()))
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
        size: None (native), an int (short side, aspect kept) or ``(H, W)`` of the upright frame; applied by
            FFmpeg's scaler.
        motion_vectors: also return the codec motion field of those frames (``Clip.motion``), see
            :mod:`maskvid.motion.vectors` for units and B-frame handling.
        threads: decoder (slice) and scaler threads; 0 lets FFmpeg choose. The default, 1, suits
            data-loader workers, and leaves no FFmpeg worker threads behind in a process that later forks them
            (a forked DataLoader worker can deadlock on a lock such a thread held).
    Raises:
        VideoDecodeError: the file cannot be decoded, or an index is outside ``[0, frames)``.
    """
    path = os.fspath(path)
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("decode_clip: indices is empty")
    targets = sorted(set(wanted))
    from_start = False
    while True:
        index = _checked_index(path)
        if targets[-1] >= index.frames or targets[0] < 0:
            bad = next(i for i in wanted if not 0 <= i < index.frames)
            raise VideoDecodeError(path, f"frame index {bad} out of range: the video has {index.frames} frames")
        reader = PacketReader(path, index, threads, motion_vectors)
        try:
            decoded = _decode_frames(reader, index, targets, from_start)
            return _assemble(decoded, wanted, index, size, motion_vectors, threads)
        except IndexMismatch as e:
            # timestamps misled a packets index: index the file by decoding it once; a start keyframe that does not
            # reproduce the decoding pass: start earlier (from the file's start at last); that failing is an error
            if index.addressing == "packets":
                log.warning("%s: %s; indexing it by a decoding pass", path, e)
                mark_needs_decoding(path)
            elif e.start and e.start not in index.bad_starts and not from_start:
                log.info("%s: %s; decoding such frames from an earlier keyframe", path, e)
                index.bad_starts.add(e.start)
            elif not from_start:
                log.warning("%s: %s; decoding from its start", path, e)
                from_start = True
            else:
                raise VideoDecodeError(path, f"decoding does not reproduce the file's frames: {e}") from e
        except MaskvidError:
            raise
        except Exception as e:
            raise VideoDecodeError(path, f"decode failed: {type(e).__name__}: {e}") from e
        finally:
            reader.close()


def _decode_frames(reader: PacketReader, index: FrameIndex, targets: list[int], from_start: bool) -> dict:
    """{display index: av.VideoFrame} for ``targets`` (sorted), starting over only where a later start is nearer.

    With a decoded index every frame returned is checked against the decoding pass's checksum.
    """
    start_of = (lambda t: (0, 0)) if from_start else index.start_for
    found: dict[int, av.VideoFrame] = {}
    frames, start = None, 0
    k = 0
    while k < len(targets):
        target = targets[k]
        if frames is None or start_of(target)[0] > reader.fed:
            start, first_valid = start_of(target)
            frames = reader.frames_from(start, first_valid)
        for shown, frame in frames:
            if shown == target:
                if index.checksum is not None and frame_checksum(frame) != index.checksum[target]:
                    raise IndexMismatch(f"frame {target} decoded from packet {start} differs from the decoding pass",
                                        start)
                found[target] = frame
                k += 1
                if k == len(targets) or start_of(targets[k])[0] > reader.fed:
                    break
                target = targets[k]
        else:
            raise IndexMismatch(f"the stream ended before frame {target} (of {index.frames}): truncated?")
    return found


def _assemble(decoded: dict, wanted: list[int], index: FrameIndex, size, motion_vectors: bool, threads: int) -> Clip:
    first = decoded[wanted[0]]
    turns = quarter_turns(first)
    upright = (first.width, first.height) if turns % 2 else (first.height, first.width)
    out_h, out_w = _output_size(size, *upright)
    coded_out = (out_w, out_h) if turns % 2 else (out_h, out_w)  # the scaler works before the rotation
    frames = np.empty((len(wanted), out_h, out_w, 3), np.uint8)
    converted: dict[int, int] = {}
    # One scaler for the whole clip, owned here and freed when this returns. ``frame.reformat`` would hang a scaler
    # on each frame; decoded frames sit in reference cycles, so with threads != 1 a forked DataLoader worker's garbage
    # collector freed them and waited forever on the scaler's slice threads, which exist only in the parent.
    scaler = VideoReformatter()
    for slot, i in enumerate(wanted):
        if i in converted:
            frames[slot] = frames[converted[i]]
            continue
        rgb = scaler.reformat(decoded[i], coded_out[1], coded_out[0], "rgb24", interpolation="BILINEAR",
                              threads=threads).to_ndarray()
        frames[slot] = np.rot90(rgb, turns) if turns else rgb
        converted[i] = slot
    clip = Clip(frames=torch.from_numpy(frames), indices=torch.tensor(wanted, dtype=torch.long), rotation=turns * 90)
    if motion_vectors:
        clip.motion, clip.motion_valid = _motion_fields(decoded, wanted, index, coded_out, turns)
    return clip


def _motion_fields(decoded: dict, wanted: list[int], index: FrameIndex, coded_out: tuple[int, int], turns: int):
    """(T, h, w, 2) field and (T,) validity of the ``wanted`` frames, rasterized in one pass."""
    vectors = []
    for i in wanted:
        side = decoded[i].side_data.get("MOTION_VECTORS")
        vectors.append(side.to_ndarray() if side is not None else np.zeros(0, _NO_VECTORS))
    valid = torch.tensor([len(v) > 0 for v in vectors], dtype=torch.bool)
    shown = np.array(wanted)
    past, future = index.reference_distances
    coded = (decoded[wanted[0]].height, decoded[wanted[0]].width)
    field = rasterize_frames(vectors, coded, past[shown], future[shown])
    field = rotate_field(resize_field(field, coded_out, coded), turns)
    # the rasterizer's channel-last view is strided; reductions over it were 5x slower than over a compact copy
    return torch.from_numpy(np.ascontiguousarray(field)), valid


_NO_VECTORS = np.dtype([(name, np.int32) for name in ("source", "w", "h", "dst_x", "dst_y", "motion_x", "motion_y")]
                       + [("motion_scale", np.uint16)])
