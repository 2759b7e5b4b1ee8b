"""Frame addressing: which packet makes the decoder output display frame i, and where decoding must start for it.

Frame i of a video is the i-th frame a full sequential decode outputs (PyAV, one thread). A :class:`FrameIndex`
ties each such frame to the *packet* whose submission makes the decoder output it — its ordinal among the video
stream's non-empty packets in demux order. FFmpeg carries that ordinal from packet to frame (``copy_opaque``), so a
decoded frame is recognized by where it came from, whatever its timestamps say. Each frame also gets a *start
packet*: a keyframe from which decoding reproduces it exactly (or packet 0, the file's start).

Two ways to build the index:

* **packets** — from packet timestamps, demuxing only. Valid where the container's pts are display times and every
  kept packet makes one frame: MP4/MOV and Matroska/WebM whose pts show the codec's reordering (or a codec that
  does not reorder), and intra-only streams anywhere. Edit lists are honoured (packets FFmpeg marks *discard* make
  no frame but stay decodable start points).
* **decoded** — from one decoding pass, for everything else: AVI (its pts are decode order; packed B-frames and
  N-VOPs), MPEG-PS/TS, MP4 whose pts are decode times (``setts=pts=DTS``), streams without timestamps or whose first
  GOP opens with leading pictures. The pass costs one decode of the file and is cached on disk
  (:mod:`maskvid.data.index_cache`).

A packets index that a decode later contradicts (an unexpected frame order, a missing frame) is replaced by a
decoded one (:func:`mark_needs_decoding`), so a wrong guess costs time, never a wrong frame.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field, fields

import av
import numpy as np

from maskvid.data import index_cache
from maskvid.data.disposable import Classification, classifier, disposable_packets
from maskvid.data.video_file import (
    check_file,
    configure_decoder,
    frame_checksum,
    open_video,
    packet_ordinal,
    tag_packet,
)
from maskvid.errors import VideoDecodeError
from maskvid.motion.vectors import reference_distances

DISPLAY_TIMESTAMP_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")
# decoders whose output after a keyframe can depend on what came before it: FFmpeg's MPEG-4 Part 2 decoder learns
# encoder quirks (Xvid/DivX builds: IDCT, packed B-frames) from user data in the stream
STATEFUL_DECODERS = ("mpeg4",)
NO_TIMESTAMP = np.iinfo(np.int64).min
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameIndex:
    """Display frame i → the packet that produces it and the packet to start decoding at.

    packet: ``(N,)`` ordinal of the packet whose submission outputs frame i (None-free, unique).
    start: ``(N,)`` ordinal of the keyframe packet to start decoding at for frame i (0: the file's start).
    first_valid: ``(N,)`` the first display index that decoding from ``start[i]`` reproduces (frames shown before
        their start keyframe — open-GOP leading pictures — may be broken after a seek and are never taken from it).
    packet_pos / packet_ts: ``(P,)`` byte position and seek timestamp (dts, else pts) of every packet; -1 /
        ``NO_TIMESTAMP`` when unknown.
    addressing: ``packets`` or ``decoded``; reason: why a decoded index was needed (None for packets).
    seekable: positions and timestamps allow ``container.seek`` followed by a byte-position match.
    by_count: frames cannot be told apart by packet (a packet made two frames): they are counted from the file's
        start, which is then where every decode begins.
    disposable: ``(P,)`` packets no other frame depends on (:mod:`maskvid.data.disposable`): a decode that does not
        want their frame need not decode them.
    checksum: ``(N,)`` CRC-32 of every frame of the decoding pass (decoded indices): each frame a decode returns is
        checked against it. bad_starts: start packets found not to reproduce the sequential decode (MPEG-4 Part 2
        decoders carry encoder-quirk state across keyframes); later decodes start earlier.
    """

    packet: np.ndarray
    start: np.ndarray
    first_valid: np.ndarray
    packet_pos: np.ndarray
    packet_ts: np.ndarray
    addressing: str
    reason: str | None
    seekable: bool
    by_count: bool = False
    checksum: np.ndarray | None = None
    disposable: np.ndarray | None = None
    bad_starts: set[int] = field(default_factory=set, compare=False, repr=False)

    @property
    def frames(self) -> int:
        return len(self.packet)

    @functools.cached_property
    def display_of_packet(self) -> dict[int, int]:
        return {int(p): i for i, p in enumerate(self.packet)}

    @functools.cached_property
    def positions(self) -> list[int]:
        return self.packet_pos.tolist()

    @functools.cached_property
    def ordinal_at_pos(self) -> dict[int, int]:
        """Byte position → the first packet there (an MPEG-PS pack can hold two; a seek lands on the pack)."""
        first: dict[int, int] = {}
        for i, p in enumerate(self.positions):
            if p >= 0:
                first.setdefault(p, i)
        return first

    @functools.cached_property
    def decode_order(self) -> np.ndarray:
        """Display indices in the order their packets are decoded."""
        return np.argsort(self.packet, kind="stable")

    @functools.cached_property
    def start_points(self) -> list[tuple[int, int]]:
        """(first display index reproduced, start packet) of every start point, in display order."""
        pairs = zip(self.start.tolist(), self.first_valid.tolist(), strict=True)
        return sorted({(first, start) for start, first in pairs} | {(0, 0)})

    def start_for(self, frame: int) -> tuple[int, int]:
        """(start packet, first valid frame) to decode ``frame`` from: its own start unless found bad, else the
        latest good start point before it (packet 0 at the latest)."""
        start, first = int(self.start[frame]), int(self.first_valid[frame])
        if start not in self.bad_starts:
            return start, first
        own = int(self.packet[frame])
        for earlier_first, earlier in reversed(self.start_points):
            if earlier_first <= frame and earlier <= own and earlier not in self.bad_starts:
                return earlier, earlier_first
        return 0, 0

    @functools.cached_property
    def reference_distances(self) -> tuple[np.ndarray, np.ndarray]:
        """Per frame, the display distance to the nearest possible past / future reference (motion vectors)."""
        return reference_distances(self.decode_order)


@dataclass
class _Packets:
    """What demuxing tells about every non-empty packet of the video stream, in demux order."""

    pts: list
    dts: list
    pos: list
    key: list
    discard: list
    classes: list[Classification] = field(default_factory=list)  # empty: the codec's packets are never skipped

    @classmethod
    def empty(cls) -> _Packets:
        return cls([], [], [], [], [])

    def add(self, packet: av.Packet, classify=None) -> None:
        self.pts.append(packet.pts)
        self.dts.append(packet.dts)
        self.pos.append(packet.pos if packet.pos is not None else -1)
        self.key.append(bool(packet.is_keyframe))
        self.discard.append(bool(packet.is_discard))
        if classify is not None:
            self.classes.append(classify(bytes(packet)))

    def disposable(self, packet_of_frame: np.ndarray) -> np.ndarray:
        """``(P,)`` packets that may be skipped, given which packet makes each frame (nothing where unknown)."""
        if len(self.classes) != len(self.pts):
            return np.zeros(len(self.pts), bool)
        makes_frame = np.zeros(len(self.pts), bool)
        makes_frame[packet_of_frame] = True
        makes_frame |= np.asarray(self.discard, bool)  # an edit list's dropped packets make no frame by design
        return disposable_packets(self.classes, makes_frame) & ~np.asarray(self.discard, bool)

    def seek_fields(self) -> tuple[np.ndarray, np.ndarray, bool]:
        pos = np.asarray(self.pos, np.int64)
        ts = np.array([d if d is not None else (p if p is not None else NO_TIMESTAMP)
                       for p, d in zip(self.pts, self.dts, strict=True)], np.int64)
        starts = np.asarray(self.key, bool)
        placeable = len(np.unique(pos)) == len(pos) or (np.diff(pos) >= 0).all()  # a position names one place
        seekable = bool(len(pos) and (pos >= 0).all() and placeable and (ts[starts] != NO_TIMESTAMP).all())
        return pos, ts, seekable


def display_timestamp_problem(packets: _Packets, container_format: str, reorders: bool, codec: str = "") -> str | None:
    """Why these packets' pts cannot address frames (None: they can), from demuxing alone."""
    if not packets.pts:
        return "no packets"
    if codec in STATEFUL_DECODERS:
        return f"{codec} decoders carry state across keyframes: frames are checked against a decoding pass"
    if any(p is None for p in packets.pts):
        return "some packets carry no timestamp"
    pts = np.asarray(packets.pts, np.int64)
    kept = pts[~np.asarray(packets.discard, bool)]
    if len(np.unique(kept)) != len(kept):
        return "repeated timestamps"
    if not packets.key[0] or pts[0] != pts.min():
        return "the stream does not start on a keyframe shown first (leading pictures may not decode)"
    if all(packets.key):
        return None  # intra-only: no reordering, one frame per packet, in any container
    if container_format not in DISPLAY_TIMESTAMP_FORMATS:
        return f"{container_format} timestamps are not reliable display times for predicted frames"
    if reorders and (np.diff(pts) > 0).all():
        return "the codec reorders frames but the timestamps are in decode order (pts = dts)"
    return None


def packets_index(packets: _Packets) -> FrameIndex:
    """The index from timestamps (call only where :func:`display_timestamp_problem` found none)."""
    pts = np.asarray(packets.pts, np.int64)
    kept = np.flatnonzero(~np.asarray(packets.discard, bool))
    packet = kept[np.argsort(pts[kept], kind="stable")]  # (N,) display order
    shown_pts = pts[packet]
    keys = np.flatnonzero(np.asarray(packets.key, bool))
    keys = keys[np.argsort(pts[keys], kind="stable")]
    # the last keyframe shown at or before the frame; frames shown before it (leading pictures) are not its
    slot = np.searchsorted(pts[keys], shown_pts, side="right") - 1
    start = np.where(slot >= 0, keys[np.maximum(slot, 0)], 0)
    start = np.where(start <= packet, start, 0)  # never start after the frame's own packet
    first_valid = np.searchsorted(shown_pts, pts[start], side="left")
    pos, ts, seekable = packets.seek_fields()
    return FrameIndex(packet, start, first_valid, pos, ts, "packets", None, seekable,
                      disposable=packets.disposable(packet))


def decoded_index(packets: _Packets, outputs: list[tuple[int | None, bool, int]], reason: str) -> FrameIndex:
    """The index from one decoding pass: ``outputs`` are (packet ordinal, is key frame, checksum) of each frame, in
    output order."""
    packet = np.array([-1 if o is None else o for o, _, _ in outputs], np.int64)
    checksum = np.array([c for _, _, c in outputs], np.uint32)
    pos, ts, seekable = packets.seek_fields()
    n = len(packet)
    if (packet < 0).any() or len(np.unique(packet)) != n:
        # frames cannot be told apart by packet: address them by counting from the file's start (no seeking)
        zeros = np.zeros(n, np.int64)
        return FrameIndex(np.arange(n), zeros, zeros, pos, ts, "decoded", reason, seekable=False, by_count=True,
                          checksum=checksum, disposable=np.zeros(len(pos), bool))
    # a keyframe packet is a start point only if the frame it makes is a key frame: AVI indexes flag the N-VOPs
    # of packed B-frames as keyframes, and those output the previous GOP's last P-frame
    key_flag = np.asarray(packets.key, bool)
    starts = [(0, 0)] + [(i, int(o)) for i, (o, is_key, _) in enumerate(outputs) if is_key and key_flag[o] and o > 0]
    start_shown = np.array([s for s, _ in starts])
    start_packet = np.array([p for _, p in starts])
    order = np.argsort(start_shown, kind="stable")
    start_shown, start_packet = start_shown[order], start_packet[order]
    slot = np.searchsorted(start_shown, np.arange(n), side="right") - 1
    start = start_packet[slot]
    first_valid = start_shown[slot]
    behind = start > packet  # a start decoded after the frame's own packet cannot produce it
    start[behind], first_valid[behind] = 0, 0
    return FrameIndex(packet, start, first_valid, pos, ts, "decoded", reason, seekable, checksum=checksum,
                      disposable=packets.disposable(packet))


# ---- building --------------------------------------------------------------------------------------------------


def _demux_packets(path: str) -> tuple[_Packets, str, bool, str]:
    container, stream = open_video(path)
    packets = _Packets.empty()
    classify = _classifier(stream)
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets.add(packet, classify)
        reorders = bool(stream.codec_context.has_b_frames)
        return packets, container.format.name, reorders, stream.codec_context.name
    except Exception as e:
        raise VideoDecodeError(path, f"cannot read packets: {type(e).__name__}: {e}") from e
    finally:
        container.close()


def _decoding_pass(path: str) -> tuple[_Packets, list[tuple[int | None, bool, int]]]:
    """Decode the whole file once, recording for each output frame the packet it came from, whether it is a key
    frame, and its checksum.

    A packet the decoder rejects is skipped, as the ffmpeg command line does; decoding goes on after it.
    """
    container, stream = open_video(path)
    configure_decoder(stream)
    packets, outputs, rejected = _Packets.empty(), [], 0
    classify = _classifier(stream)
    try:
        for packet in container.demux(stream):
            if packet.size:
                tag_packet(packet, len(packets.pts))
                packets.add(packet, classify)
            try:
                frames = stream.decode(packet if packet.size else None)
            except av.error.FFmpegError:
                rejected += 1
                continue
            outputs.extend((packet_ordinal(frame), bool(frame.key_frame), frame_checksum(frame)) for frame in frames)
    except av.error.FFmpegError as e:
        raise VideoDecodeError(path, f"cannot read packets: {type(e).__name__}: {e}") from e
    finally:
        container.close()
    if packets.pts and rejected == len(packets.pts):
        raise VideoDecodeError(path, "the decoder rejected every packet")
    return packets, outputs


def _classifier(stream):
    context = stream.codec_context
    return classifier(context.name, bytes(context.extradata or b""))


@functools.lru_cache(maxsize=4096)
def _cached_index(path: str, size: int, mtime_ns: int, force_decoding: bool) -> FrameIndex:
    # a file with a decoded index on disk needed one (its timestamps cannot address frames, or a decode
    # contradicted them in an earlier process): reuse it before demuxing anything
    entry = index_cache.entry_path(path, size, mtime_ns)
    cached = _from_cache(index_cache.load(entry))
    if cached is not None:
        return cached
    reason = "a decode contradicted the packet timestamps"
    if not force_decoding:
        packets, container_format, reorders, codec = _demux_packets(path)
        reason = display_timestamp_problem(packets, container_format, reorders, codec)
        if reason is None:
            return packets_index(packets)
    log.info("%s: indexing frames by one decoding pass (%s)", path, reason)
    index = decoded_index(*_decoding_pass(path), reason=reason)
    index_cache.store(entry, {f.name: getattr(index, f.name) for f in fields(FrameIndex)
                              if f.name not in ("addressing", "bad_starts")})
    return index


def _from_cache(values: dict | None) -> FrameIndex | None:
    try:
        return None if values is None else FrameIndex(
            packet=values["packet"], start=values["start"], first_valid=values["first_valid"],
            packet_pos=values["packet_pos"], packet_ts=values["packet_ts"], addressing="decoded",
            reason=str(values["reason"]), seekable=bool(values["seekable"]), by_count=bool(values["by_count"]),
            checksum=values["checksum"], disposable=values["disposable"])
    except KeyError:
        return None  # another layout: decode again


_needs_decoding: set[tuple[str, int, int]] = set()


def _key(path: str) -> tuple[str, int, int]:
    check_file(path)
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def video_index(path: str) -> FrameIndex:
    """The (cached) index of ``path``; raises VideoDecodeError for a file that is no readable video."""
    key = _key(path)
    return _cached_index(*key, key in _needs_decoding)


def clear_cache() -> None:
    """Forget every index held in this process (the on-disk cache of decoded indices stays)."""
    _cached_index.cache_clear()
    _needs_decoding.clear()


def mark_needs_decoding(path: str) -> None:
    """A decode contradicted ``path``'s packets index: from now on it is addressed by a decoding pass."""
    _needs_decoding.add(_key(path))
