"""Which packets no other frame depends on: their pictures are never references, so a decode that does not want
their frame need not decode them at all.

Read from the bitstream's own headers, never guessed from frame types or timestamps:

* **H.264** — every NAL unit of the packet has ``nal_ref_idc == 0`` (a slice with it is "not used for reference";
  x264 marks the outer B-frames of its B-pyramid so) and is a slice, SEI, access-unit delimiter or filler. A packet
  carrying a parameter set or anything else is kept.
* **HEVC** — every slice is a *sub-layer non-reference* picture (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, reserved
  _N types) of the stream's highest temporal sub-layer: a lower sub-layer's _N picture may still be referenced by a
  higher one.
* **MPEG-4 Part 2** — the packet's one VOP is a B-VOP. In a stream with packed B-frames (a packet holding two
  VOPs) nothing is skipped: the decoder holds the second VOP back for the next packet.
* **MPEG-1/2 video** — every picture of the packet is a B-picture.

Length-prefixed (MP4/Matroska ``avcC``/``hvcC``) and start-code (AVI, MPEG-TS, raw) streams are both read. Any
other codec, or a packet that does not parse, is never disposable: skipping is an optimization, and a doubt keeps
the packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# H.264 nal_unit_type of a packet that may be skipped when its nal_ref_idc is 0: slices (and data partitions),
# SEI, access-unit delimiter, filler; a slice must be among them
_H264_SLICES = {1, 2, 3, 4}
_H264_ALLOWED = _H264_SLICES | {6, 9, 12}
# HEVC: sub-layer non-reference VCL types, and the non-VCL types a skippable packet may hold (AUD, filler, SEI)
_HEVC_NON_REFERENCE = {0, 2, 4, 6, 8, 10, 12, 14}
_HEVC_ALLOWED_NON_VCL = {35, 38, 39, 40}
_MPEG4_VOP, _MPEG4_B_VOP = 0xB6, 2
_MPEG2_PICTURE, _MPEG2_B_PICTURE = 0x00, 3
# MPEG-2 extensions a B-picture may carry without changing later pictures: picture coding and picture display (a
# quantizer-matrix extension stays in effect, so a packet holding one is kept)
_MPEG2_PICTURE_EXTENSIONS = {7, 8}

class Classification(NamedTuple):
    disposable: bool  # no other picture may reference this packet's
    layer: int = 0  # its temporal sub-layer (HEVC; 0 without layers)
    packed: bool = False  # it holds two pictures (MPEG-4 packed B-frames): nothing in the stream is skipped


KEEP = Classification(False)


def classifier(codec: str, extradata: bytes | None) -> Callable[[bytes], Classification] | None:
    """A function from a packet's bytes to its classification; None for codecs whose packets are never skipped."""
    extradata = extradata or b""
    if codec == "h264":
        length_size = (extradata[4] & 3) + 1 if len(extradata) > 4 and extradata[0] == 1 else None
        return lambda data: _safely(_h264, data, length_size)
    if codec == "hevc":
        length_size = (extradata[21] & 3) + 1 if len(extradata) > 22 and extradata[0] == 1 else None
        return lambda data: _safely(_hevc, data, length_size)
    if codec == "mpeg4":
        return lambda data: _safely(_mpeg4, data)
    if codec in ("mpeg2video", "mpeg1video"):
        return lambda data: _safely(_mpeg2, data)
    return None


def disposable_packets(classes: list[Classification], makes_frame: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: the packets that may be skipped. Only the stream's highest temporal sub-layer counts (HEVC),
    and nothing is skipped in a stream where some packet makes no frame of its own (field pairs in two packets) or
    holds two pictures (packed B-frames: the decoder keeps the second picture and decodes it on the next packet,
    so dropping any packet shifts every picture after it)."""
    if not classes or not makes_frame.all() or any(c.packed for c in classes):
        return np.zeros(len(classes), bool)
    flags = np.array([c.disposable for c in classes], bool)
    layers = np.array([c.layer for c in classes], np.int64)
    return flags & (layers == layers.max())


def _safely(parse, *args) -> Classification:
    try:
        return parse(*args)
    except (ValueError, IndexError):
        return KEEP


def _nal_units(data: bytes, length_size: int | None) -> list[bytes]:
    """The NAL units of a packet: length-prefixed (``length_size`` bytes, big-endian) or Annex B start codes."""
    if length_size is None:
        starts = _start_codes(data)
        if not starts or data[:starts[0]].strip(b"\0"):
            raise ValueError("Annex B data must open with a start code")
        ends = [*starts[1:], len(data)]
        return [data[begin + 3:end] for begin, end in zip(starts, ends, strict=True)]  # trailing zeros are harmless
    units, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + length_size], "big")
        at += length_size
        if size == 0 or at + size > len(data):
            raise ValueError("a NAL length runs past the packet")
        units.append(data[at:at + size])
        at += size
    return units


def _start_codes(data: bytes) -> list[int]:
    """Offsets of every ``00 00 01`` in ``data``."""
    found, at = [], data.find(b"\0\0\1")
    while at >= 0:
        found.append(at)
        at = data.find(b"\0\0\1", at + 3)
    return found


def _h264(data: bytes, length_size: int | None) -> Classification:
    slices = 0
    for unit in _nal_units(data, length_size):
        ref_idc, kind = (unit[0] >> 5) & 3, unit[0] & 31
        if ref_idc != 0 or kind not in _H264_ALLOWED:
            return KEEP
        slices += kind in _H264_SLICES
    return Classification(slices > 0)


def _hevc(data: bytes, length_size: int | None) -> Classification:
    """Disposable or not, the packet's sub-layer is reported: the highest-layer rule needs every picture's."""
    disposable, layers = True, set()
    for unit in _nal_units(data, length_size):
        kind, temporal_id = (unit[0] >> 1) & 63, (unit[1] & 7) - 1
        if kind < 32:  # a slice
            disposable &= kind in _HEVC_NON_REFERENCE
            layers.add(temporal_id)
        elif kind not in _HEVC_ALLOWED_NON_VCL:
            disposable = False
    if len(layers) != 1:
        return KEEP
    return Classification(disposable, layers.pop())


def _mpeg4(data: bytes) -> Classification:
    """One VOP, a B-VOP (the two bits after its start code), and no other start code: a VOL, GOV or user data
    (where Xvid/DivX builds announce packed B-frames) sets decoder state. Two VOPs: a packed stream."""
    codes = _start_codes(data)
    vops = [at for at in codes if data[at + 3] == _MPEG4_VOP]
    if len(vops) > 1:
        return Classification(False, packed=True)
    if len(vops) != len(codes) or not vops:
        return KEEP
    return Classification(data[vops[0] + 4] >> 6 == _MPEG4_B_VOP)


def _mpeg2(data: bytes) -> Classification:
    """Every picture a B-picture (3 bits after the 10-bit temporal reference), with only slices and picture
    extensions beside it."""
    pictures = 0
    for at in _start_codes(data):
        code = data[at + 3]
        if code == _MPEG2_PICTURE:
            if (data[at + 5] >> 3) & 7 != _MPEG2_B_PICTURE:
                return KEEP
            pictures += 1
        elif code == 0xB5:
            if data[at + 4] >> 4 not in _MPEG2_PICTURE_EXTENSIONS:
                return KEEP
        elif not 0x01 <= code <= 0xAF and code != 0xB2:  # slices and user data change nothing after this picture
            return KEEP
    return Classification(pictures > 0)
