"""Open a video file's first video stream, set its decoder up, and tag packets so frames tell where they came from.

Every way maskvid reads a video goes through here, so every failure to open one is a ``VideoDecodeError`` naming the
file, and every decoder is configured the same way (the frame index and the clip decoder must see identical output).
"""

from __future__ import annotations

import os
import zlib

import av
import numpy as np

from maskvid.errors import VideoDecodeError


def open_video(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path``'s first video stream; every failure is a VideoDecodeError naming the file."""
    check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # FFmpeg reports unreadable/unknown data in many ways; all mean "not a video file"
        raise VideoDecodeError(path, f"cannot open container: {e}") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
    return container, container.streams.video[0]


def check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file does not exist")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "permission denied")


def configure_decoder(stream, threads: int = 1, motion_vectors: bool = False) -> None:
    """Slice threads only: FFmpeg's frame-threaded H.264 decoder returned frames out of order, now and then, on
    streams that do not declare their reorder depth (H.264 in AVI, MPEG-TS); slices never change the output."""
    stream.thread_type = "SLICE"
    stream.thread_count = threads
    stream.codec_context.copy_opaque = True  # each frame carries the ordinal of the packet that produced it
    if motion_vectors:
        stream.codec_context.options = {"flags2": "+export_mvs"}


def tag_packet(packet: av.Packet, ordinal: int) -> None:
    """Mark ``packet`` with its ordinal; the decoder copies the mark to the frame it outputs for it.

    The mark is a tuple of its own: PyAV (18) stores opaque values under ``id(value)`` and drops the entry when any
    buffer holding that key is freed, so an int shared by two packets (small ints are one object) vanished from
    live frames whenever an earlier packet or frame with the same number was garbage-collected.
    """
    packet.opaque = (ordinal,)


def packet_ordinal(frame: av.VideoFrame) -> int | None:
    """The ordinal :func:`tag_packet` gave the packet that produced ``frame`` (None: untagged)."""
    tag = frame.opaque
    return tag[0] if isinstance(tag, tuple) else None


def frame_checksum(frame: av.VideoFrame) -> int:
    """CRC-32 of the visible bytes of every plane of a decoded frame, in its own pixel format (line padding is left
    out: it is not part of the picture and may hold anything)."""
    per_pixel = [0] * len(frame.planes)
    for component in frame.format.components:
        per_pixel[component.plane] += (component.bits + 7) // 8
    crc = 0
    for plane, width_bytes in zip(frame.planes, per_pixel, strict=True):
        rows = np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height).reshape(plane.height, -1)
        crc = zlib.crc32(np.ascontiguousarray(rows[:, : min(plane.width * width_bytes, plane.line_size)]), crc)
    return crc


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that upright ``frame`` (its display matrix; ``np.rot90``'s direction)."""
    return round((frame.rotation or 0) / 90) % 4
