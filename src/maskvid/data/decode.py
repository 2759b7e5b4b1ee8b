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
from maskvid.motion.vectors import AV_MOTION_VECTOR, motion_field, rotate_field

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
    codecs that export none) whose field is zero; indices: the display indices decoded; rotation: degrees applied;
    packets_decoded: how many packets the decoder was given (disposable ones whose frame is not wanted are not).
    """

    frames: torch.Tensor
    indices: torch.Tensor
    motion: torch.Tensor | None = None
    motion_valid: torch.Tensor | None = None
    rotation: int = 0
    packets_decoded: int = 0


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
    skip_disposable: bool | None = None,
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
        skip_disposable: packets that no other frame depends on (non-reference pictures,
            :mod:`maskvid.data.disposable`) are not decoded unless their frame is wanted. The frames and motion
            vectors are the same either way; a decode that the index contradicts while skipping is retried
            without, and the file is no longer skipped in this process. None (the default): on, unless
            ``$MASKVID_SKIP_DISPOSABLE`` is ``0``/``off`` — the switch for a whole run, data-loader workers
            included.
    Raises:
        VideoDecodeError: the file cannot be decoded, or an index is outside ``[0, frames)``.
    """
    path = os.fspath(path)
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("decode_clip: indices is empty")
    targets = sorted(set(wanted))
    from_start = False
    if skip_disposable is None:
        skip_disposable = _skipping_by_default()
    skipping = skip_disposable and path not in _skipping_failed
    suspect = None  # a mismatch seen while skipping, being retried without
    while True:
        index = _checked_index(path)
        if targets[-1] >= index.frames or targets[0] < 0:
            bad = next(i for i in wanted if not 0 <= i < index.frames)
            raise VideoDecodeError(path, f"frame index {bad} out of range: the video has {index.frames} frames")
        reader = PacketReader(path, index, threads, motion_vectors)
        skip = _skipped_packets(index, targets) if skipping else None
        try:
            builder = _ClipBuilder(wanted, size, motion_vectors, threads)
            _decode_frames(reader, index, targets, from_start, skip, builder.take)
            if suspect is not None:  # the same decode without skipping is right: skipping was at fault
                log.warning("%s: %s while skipping non-reference packets; this file is decoded whole from now on",
                            path, suspect)
                _skipping_failed.add(path)
            return builder.clip(index, reader.packets_decoded)
        except IndexMismatch as e:
            # while skipping: retry the same decode without, to learn whether skipping misled the decoder; timestamps
            # misled a packets index: index the file by decoding it once; a start keyframe that does not reproduce
            # the decoding pass: start earlier (from the file's start at last); that failing is an error
            if skip is not None:
                skipping, suspect = False, e
                continue
            skipping, suspect = skip_disposable and path not in _skipping_failed, None
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


_skipping_failed: set[str] = set()  # files where a decode that skipped packets was contradicted


def _skipping_by_default() -> bool:
    return os.environ.get("MASKVID_SKIP_DISPOSABLE", "1").strip().lower() not in ("0", "off", "no", "false")


def _skipped_packets(index: FrameIndex, targets: list[int]) -> np.ndarray | None:
    """``(P,)`` the disposable packets whose frame is not among ``targets``; None when there are none."""
    if index.disposable is None or index.by_count or not index.disposable.any():
        return None
    skip = index.disposable.copy()
    skip[index.packet[targets]] = False
    return skip


def _decode_frames(reader: PacketReader, index: FrameIndex, targets: list[int], from_start: bool,
                   skip: np.ndarray | None, take) -> None:
    """Give ``take(display index, av.VideoFrame)`` each of ``targets`` (sorted) as it is decoded, in runs from a
    start packet; the ``skip`` packets are not given to the decoder.

    A run goes on to the next target while that target's start packet is no later than what the run has fed; a
    run ends by draining the decoder once its last target's packet is in, rather than feeding further packets
    until the reorder delay lets that frame out. With a decoded index every frame returned is checked against the
    decoding pass's checksum.
    """
    start_of = (lambda t: (0, 0)) if from_start else index.start_for
    for start, first_valid, run in _runs(index, targets, start_of):
        last_packet = int(index.packet[run].max())
        pending = iter(run)
        target = next(pending)
        for shown, frame in reader.frames_from(start, first_valid, skip, last_packet):
            if shown != target:
                continue
            if index.checksum is not None and frame_checksum(frame) != index.checksum[target]:
                raise IndexMismatch(f"frame {target} decoded from packet {start} differs from the decoding pass",
                                    start)
            take(target, frame)
            target = next(pending, None)
            if target is None:
                break
        else:
            raise IndexMismatch(f"the stream ended before frame {target} (of {index.frames}): truncated?")


def _runs(index: FrameIndex, targets: list[int], start_of) -> list[tuple[int, int, list[int]]]:
    """(start packet, first valid frame, targets) of each decoding run: a target joins the run before it when its
    start packet is at or before the latest packet that run needs."""
    runs: list[tuple[int, int, list[int]]] = []
    reach = -1
    for target in targets:
        start, first_valid = start_of(target)
        if not runs or start > reach:
            runs.append((start, first_valid, []))
            reach = -1
        runs[-1][2].append(target)
        reach = max(reach, int(index.packet[target]))
    return runs


class _ClipBuilder:
    """Converts each wanted frame to RGB at the output size the moment it is decoded (while its planes are still
    in cache, and so the decoded frame is freed at once), and keeps its motion vectors."""

    def __init__(self, wanted: list[int], size, motion_vectors: bool, threads: int):
        self.wanted, self.size, self.motion_vectors, self.threads = wanted, size, motion_vectors, threads
        self.slots: dict[int, list[int]] = {}
        for slot, i in enumerate(wanted):
            self.slots.setdefault(i, []).append(slot)
        self.frames: np.ndarray | None = None
        self.vectors: dict[int, np.ndarray] = {}
        # One scaler for the whole clip, owned here and freed with it. ``frame.reformat`` would hang a scaler on
        # each frame; decoded frames sit in reference cycles, so with threads != 1 a forked DataLoader worker's
        # garbage collector freed them and waited forever on the scaler's slice threads, which exist only in the
        # parent.
        self.scaler = VideoReformatter()

    def take(self, shown: int, frame: av.VideoFrame) -> None:
        if self.frames is None:
            self.turns = quarter_turns(frame)
            self.coded = (frame.height, frame.width)
            upright = (frame.width, frame.height) if self.turns % 2 else (frame.height, frame.width)
            out_h, out_w = _output_size(self.size, *upright)
            self.coded_out = (out_w, out_h) if self.turns % 2 else (out_h, out_w)  # the scaler works before rotating
            self.frames = np.empty((len(self.wanted), out_h, out_w, 3), np.uint8)
        rgb = self.scaler.reformat(frame, self.coded_out[1], self.coded_out[0], "rgb24", interpolation="BILINEAR",
                                   threads=self.threads).to_ndarray()
        for slot in self.slots[shown]:
            self.frames[slot] = np.rot90(rgb, self.turns) if self.turns else rgb
        if self.motion_vectors:
            side = frame.side_data.get("MOTION_VECTORS")
            self.vectors[shown] = np.frombuffer(side if side is not None else b"", AV_MOTION_VECTOR)

    def clip(self, index: FrameIndex, packets_decoded: int) -> Clip:
        clip = Clip(frames=torch.from_numpy(self.frames), indices=torch.tensor(self.wanted, dtype=torch.long),
                    rotation=self.turns * 90, packets_decoded=packets_decoded)
        if self.motion_vectors:
            clip.motion, clip.motion_valid = self._motion_fields(index)
        return clip

    def _motion_fields(self, index: FrameIndex) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, h, w, 2) field and (T,) validity of the wanted frames, rasterized in one pass."""
        vectors = [self.vectors[i] for i in self.wanted]
        valid = torch.tensor([len(v) > 0 for v in vectors], dtype=torch.bool)
        shown = np.array(self.wanted)
        past, future = index.reference_distances
        field = motion_field(vectors, self.coded, self.coded_out, past[shown], future[shown])
        field = rotate_field(field, self.turns)
        # a rotation leaves a strided view; reductions over it were 5x slower than over a compact copy
        return torch.from_numpy(np.ascontiguousarray(field)), valid

