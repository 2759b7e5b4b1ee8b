"""Feed the decoder from any packet of a video and name each frame it outputs by its display index.

The demuxer is put at a start packet in one of two ways: by reading forward without decoding (demuxing costs about
1% of decoding) when the packet is near or the file cannot seek, or by ``container.seek`` to the packet's timestamp
followed by a match on byte position. A seek that lands after the packet — MPEG-PS/TS seek by bisecting
timestamps and may land on a later keyframe — is retried further back, then from the file's start, so it is never
taken for the packet asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np

from maskvid.data.frame_index import FrameIndex
from maskvid.data.video_file import configure_decoder, open_video, packet_ordinal, tag_packet
from maskvid.errors import VideoDecodeError

# a start this close ahead is reached by demuxing, not seeking: demuxing costs ~2.5 µs a packet, a seek 0.05-0.15 ms
# (MP4, AVI, TS measured); past ~50 packets seeking wins
READ_AHEAD_PACKETS = 32
SEEK_MARGINS_S = (0.0, 2.0, 20.0)  # seek targets tried before reading from the file's start
# decoders drained as soon as a run's last packet is in: what they output then is what a full decode gives (tested
# on the corpus); FFmpeg's MPEG-4 Part 2 decoder hands its held-back frame out without motion vectors on a drain,
# and a packed B-frame then came out different. Only single-threaded decoders are drained early: a drained
# slice-threaded decoder left frames whose release, in a DataLoader worker forked afterwards, never returned.
DRAIN_EARLY_CODECS = ("h264", "hevc")


class IndexMismatch(Exception):
    """A decode contradicted the frame index (a wrong frame, a missing one, a packet out of place); ``start``: the
    start packet of the decode that did, when known."""

    def __init__(self, message: str, start: int | None = None):
        super().__init__(message)
        self.start = start


class _Overshoot(Exception):
    """The demuxer is already past the packet asked for."""


class PacketReader:
    """One open video: ``frames_from(start, first_valid, skip)`` decodes from packet ``start`` and yields
    ``(display index, frame)`` for frames ``first_valid, first_valid + 1, ...``, checking each against the index."""

    def __init__(self, path: str, index: FrameIndex, threads: int = 1, motion_vectors: bool = False):
        self.path, self.index = path, index
        self.threads, self.motion_vectors = threads, motion_vectors
        self.container = None
        self.fed = -1  # ordinal of the last packet read for the decoder (given to it, or skipped)
        self.packets_decoded = 0  # packets actually given to the decoder
        self._reopen()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def _reopen(self) -> None:
        self.close()
        self.container, self.stream = open_video(self.path)
        configure_decoder(self.stream, self.threads, self.motion_vectors)
        self._restart_demuxing(next_ordinal=0)

    def _restart_demuxing(self, next_ordinal: int | None) -> None:
        self._next = next_ordinal  # ordinal of the next packet read; None after a seek, until a position matches
        self._numbered = self._number(self.container.demux(self.stream))
        self._held = None  # a packet read while positioning, to be decoded first

    def _read(self) -> tuple[int | None, av.Packet] | None:
        """The next non-empty packet and its ordinal (None: not yet placed after a seek); None at the end."""
        if self._held is not None:
            item, self._held = self._held, None
            return item
        return next(self._numbered, None)

    def _number(self, packets) -> Iterator[tuple[int | None, av.Packet]]:
        """Non-empty packets with their ordinals, checked against the index's byte positions (one tight loop: it
        runs for every packet decoded)."""
        positions, at_pos = self.index.positions, self.index.ordinal_at_pos
        ordinal = self._next
        for packet in packets:
            if not packet.size:
                continue  # the demuxer's end-of-file packet, or an AVI chunk of a dropped frame
            pos = packet.pos
            if ordinal is None:  # after a seek: placed by the first packet whose position is known
                ordinal = at_pos.get(pos)
                if ordinal is None:
                    yield None, packet
                    continue
            elif ordinal >= len(positions) or (pos is not None and pos >= 0 and positions[ordinal] not in (-1, pos)):
                raise IndexMismatch(f"packet {ordinal} is not where the index has it")
            self._next = ordinal + 1
            yield ordinal, packet
            ordinal += 1

    # ---- positioning ----------------------------------------------------------------------------------------

    def position(self, start: int) -> None:
        """Make packet ``start`` the next one read, and reset the decoder."""
        if self._next is not None and self._next <= start <= self._next + READ_AHEAD_PACKETS:
            self._skip_to(start)
        elif self.index.seekable and start > 0:
            self._seek_to(start)
        else:
            self._reopen()
            self._skip_to(start)
        self.stream.codec_context.flush_buffers()
        self.fed = start - 1

    def _skip_to(self, start: int) -> None:
        while (item := self._read()) is not None:
            ordinal, packet = item
            if ordinal is None:
                continue  # data before the first recognizable packet after a seek
            if ordinal > start:
                raise _Overshoot
            if ordinal == start:
                self._held = item
                return
        raise IndexMismatch(f"the file ended before packet {start}")

    def _seek_to(self, start: int) -> None:
        target = int(self.index.packet_ts[start])
        tb = self.stream.time_base
        for margin in SEEK_MARGINS_S:
            try:
                self.container.seek(target - int(margin / tb) if tb else target, backward=True, stream=self.stream)
            except av.error.FFmpegError:
                break
            self._restart_demuxing(next_ordinal=None)
            try:
                self._skip_to(start)
                return
            except (_Overshoot, IndexMismatch):
                continue
        self._reopen()
        self._skip_to(start)

    # ---- decoding -------------------------------------------------------------------------------------------

    def frames_from(self, start: int, first_valid: int, skip: np.ndarray | None = None,
                    last_packet: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """``skip``: ``(P,)`` packets not to give the decoder (disposable ones whose frame is not wanted); their
        frames are then not expected either. ``last_packet``: once it is fed, the decoder is drained instead of fed
        further (the frames it holds come out without decoding the packets after it)."""
        self.position(start)
        if self.index.by_count:
            skip = last_packet = None  # frames are counted: every one must come out
        if self.stream.codec_context.name not in DRAIN_EARLY_CODECS or self.threads != 1:
            last_packet = None
        absent = None  # (N,) in display order: frames this decode does not output (their packet is not fed)
        if skip is not None:
            absent = skip[self.index.packet]
        if last_packet is not None:
            after = self.index.packet > last_packet
            absent = after if absent is None else absent | after

        def due(shown: int) -> int:  # the first frame at or after ``shown`` that this decode outputs
            while absent is not None and shown < len(absent) and absent[shown]:
                shown += 1
            return shown

        expected = due(first_valid)
        counted = first_valid if self.index.by_count else None
        while True:
            item = None if last_packet is not None and self.fed >= last_packet else self._read()
            packet = None if item is None else item[1]  # None flushes the decoder's last frames
            if item is not None:
                self.fed = item[0]
                if skip is not None and skip[item[0]]:
                    continue
            for frame in self._decode(packet):
                if counted is not None:
                    shown, counted = counted, counted + 1
                else:
                    shown = self.index.display_of_packet.get(packet_ordinal(frame))
                if shown is None:
                    raise IndexMismatch(f"packet {packet_ordinal(frame)} made a frame that a full decode does not "
                                        "output", start)
                if shown < first_valid:
                    continue  # a leading picture of an open GOP: it may reference frames before the start
                if shown != expected:
                    raise IndexMismatch(f"decoding from packet {start} gave frame {shown} where {expected} was due",
                                        start)
                expected = due(expected + 1)
                yield shown, frame
            if item is None:
                return

    def _decode(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        if packet is not None:
            tag_packet(packet, self.fed)
            self.packets_decoded += 1
        try:
            return self.stream.decode(packet)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(self.path, f"damaged data: the decoder rejected packet {self.fed} "
                                   f"({self._frame_near(self.fed)}): {e}") from e

    def _frame_near(self, ordinal: int) -> str:
        """The frame a packet makes, or the last one made before it (a rejected packet may make none)."""
        if ordinal in self.index.display_of_packet:
            return f"frame {self.index.display_of_packet[ordinal]}"
        order = self.index.decode_order
        k = int(np.searchsorted(self.index.packet[order], ordinal)) - 1
        return f"after frame {order[k]}" if k >= 0 else "before the first frame"
