"""Which packets may be skipped, read from hand-built bitstream headers: every codec's rule, both H.264/HEVC
framings, and arbitrary bytes never crash the classifier nor count as skippable by accident of parsing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from maskvid.data.disposable import Classification, classifier, disposable_packets

AVCC = bytes([1, 100, 0, 13, 0xFF])  # avcC header: 4-byte NAL lengths
HVCC = bytes([1] + [0] * 20 + [0x0F, 0])  # hvcC header: lengthSizeMinusOne = 3


def h264_nal(ref_idc: int, kind: int, payload: bytes = b"\x88\x84") -> bytes:
    return bytes([(ref_idc << 5) | kind]) + payload


def hevc_nal(kind: int, temporal_id: int = 0, payload: bytes = b"\xaf\x01") -> bytes:
    return bytes([kind << 1, temporal_id + 1]) + payload


def length_prefixed(*units: bytes) -> bytes:
    return b"".join(len(u).to_bytes(4, "big") + u for u in units)


def annex_b(*units: bytes) -> bytes:
    return b"".join(b"\0\0\0\1" + u for u in units)


def mpeg4_vop(coding_type: int) -> bytes:
    return b"\0\0\1\xb6" + bytes([coding_type << 6 | 0x10, 0x55, 0x21])


def mpeg2_picture(coding_type: int) -> bytes:
    return b"\0\0\1\x00" + bytes([0x01, coding_type << 3, 0xFF, 0xF8])


@pytest.mark.parametrize("packet, disposable", [
    (length_prefixed(h264_nal(0, 1)), True),  # a non-reference slice
    (length_prefixed(h264_nal(0, 9), h264_nal(0, 6), h264_nal(0, 1), h264_nal(0, 1)), True),  # AUD, SEI, 2 slices
    (length_prefixed(h264_nal(2, 1)), False),  # a reference slice (x264's B-pyramid middle frame)
    (length_prefixed(h264_nal(3, 5)), False),  # IDR
    (length_prefixed(h264_nal(0, 1), h264_nal(2, 1)), False),  # one slice of the picture is a reference
    (length_prefixed(h264_nal(0, 6)), False),  # SEI alone: no picture
    (length_prefixed(h264_nal(3, 7), h264_nal(0, 1)), False),  # carries a parameter set
    (length_prefixed(h264_nal(0, 20), h264_nal(0, 1)), False),  # an SVC/MVC extension: unknown, kept
    (length_prefixed(h264_nal(0, 1))[:-1], False),  # a length running past the packet
])
def test_h264_length_prefixed(packet, disposable):
    assert classifier("h264", AVCC)(packet).disposable is disposable


@pytest.mark.parametrize("packet, disposable", [
    (annex_b(h264_nal(0, 9, b"\xf0"), h264_nal(0, 1)), True),
    (b"\0\0\1" + h264_nal(0, 1) + b"\0\0", True),  # 3-byte start code, trailing zeros
    (annex_b(h264_nal(2, 1)), False),
    (h264_nal(0, 1), False),  # no start code: not Annex B data
])
def test_h264_annex_b(packet, disposable):
    assert classifier("h264", b"")(packet).disposable is disposable


def test_hevc_non_reference_types_and_sub_layers():
    classify = classifier("hevc", HVCC)
    assert classify(length_prefixed(hevc_nal(35), hevc_nal(0))) == Classification(True, 0)  # AUD + TRAIL_N
    assert classify(length_prefixed(hevc_nal(8, temporal_id=2))) == Classification(True, 2)  # RASL_N, layer 2
    assert not classify(length_prefixed(hevc_nal(1))).disposable  # TRAIL_R
    assert not classify(length_prefixed(hevc_nal(19))).disposable  # IDR
    assert not classify(length_prefixed(hevc_nal(34), hevc_nal(0))).disposable  # a PPS in the packet
    assert classifier("hevc", b"")(annex_b(hevc_nal(0))).disposable  # start codes (MPEG-TS, raw)


def test_only_the_highest_sub_layer_is_skipped():
    """A lower sub-layer's _N picture may be referenced by a higher sub-layer's picture."""
    classes = [Classification(False, 0), Classification(True, 0), Classification(False, 1), Classification(True, 1)]
    assert disposable_packets(classes, np.ones(4, bool)).tolist() == [False, False, False, True]


def test_nothing_skipped_where_a_packet_makes_no_frame_or_two_pictures_share_one():
    classes = [Classification(False), Classification(True)]
    assert disposable_packets(classes, np.ones(2, bool)).tolist() == [False, True]
    assert not disposable_packets(classes, np.array([True, False])).any()  # a field of a pair, say
    assert not disposable_packets([*classes, Classification(False, packed=True)], np.ones(3, bool)).any()


def test_mpeg4_b_vops():
    classify = classifier("mpeg4", b"")
    assert classify(mpeg4_vop(2)).disposable
    assert not classify(mpeg4_vop(1)).disposable  # P-VOP
    assert not classify(mpeg4_vop(3)).disposable  # S-VOP (global motion compensation): a reference
    assert classify(mpeg4_vop(1) + mpeg4_vop(2)).packed  # Xvid's packed B-frames
    assert not classify(b"\0\0\1\xb2DivX503b1393p" + mpeg4_vop(2)).disposable  # user data sets decoder state


def test_mpeg2_b_pictures():
    classify = classifier("mpeg2video", b"")
    slices = b"\0\0\1\x01\x12\x34" + b"\0\0\1\x02\x56"
    coding_extension = b"\0\0\1\xb5\x8f\xff"
    assert classify(mpeg2_picture(3) + coding_extension + slices).disposable
    assert not classify(mpeg2_picture(2) + slices).disposable  # P-picture
    assert not classify(b"\0\0\1\xb8\x00\x08" + mpeg2_picture(3) + slices).disposable  # with a GOP header
    assert not classify(mpeg2_picture(3) + b"\0\0\1\xb5\x3f" + slices).disposable  # a quantizer-matrix extension
    assert classifier("mpeg1video", b"")(mpeg2_picture(3) + slices).disposable


@pytest.mark.parametrize("codec", ["vp9", "vp8", "av1", "mjpeg", "prores", "ffv1"])
def test_other_codecs_decode_everything(codec):
    assert classifier(codec, b"") is None


@given(st.sampled_from([("h264", AVCC), ("h264", b""), ("hevc", HVCC), ("hevc", b""), ("mpeg4", b""),
                        ("mpeg2video", b"")]), st.binary(max_size=64))
def test_any_bytes_classify_without_error(codec_and_extradata, data):
    result = classifier(*codec_and_extradata)(data)
    assert isinstance(result, Classification) and isinstance(result.disposable, bool)
