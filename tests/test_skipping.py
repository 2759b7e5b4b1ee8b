"""Skipping disposable packets: used where it is safe (fewer packets reach the decoder, same frames and motion
vectors as a sequential decode), never where it would be wrong, and the rule that tells them apart matters — a
naive rule (skip every B-frame, skip every lone B-VOP) gives wrong frames on the same files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from maskvid.data import decode
from maskvid.data.frame_index import video_index
from video_corpus import corpus_file, sequential

SPAN = 61  # 16 frames at stride 4


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("skipping"))
    return lambda name: corpus_file(name, root)


def clips(n: int) -> list[list[int]]:
    return [list(range(first, first + SPAN, 4)) for first in (0, (n - SPAN) // 2, n - SPAN)]


@pytest.mark.parametrize("name", ["real/bikes.mp4", "real/carphone_pristine.mp4", "h264_composition_offsets.mp4",
                                  "h264.avi", "h264_open_gop.ts", "hevc.mp4", "mpeg4_bframes.avi", "mpeg2.ts",
                                  "xvid_bframes.mkv"])
def test_skipping_is_used_and_changes_nothing(name, made):
    path = made(name)
    reference, _ = sequential(path)
    fewer = 0
    for indices in clips(len(reference)):
        for motion in (False, True):
            skipped = decode.decode_clip(path, indices, motion_vectors=motion)
            full = decode.decode_clip(path, indices, motion_vectors=motion, skip_disposable=False)
            np.testing.assert_array_equal(skipped.frames.numpy(), reference[indices], err_msg=f"{name} {indices[0]}")
            if motion:
                assert torch.equal(skipped.motion, full.motion) and torch.equal(skipped.motion_valid, full.motion_valid)
            assert skipped.packets_decoded <= full.packets_decoded
            fewer += skipped.packets_decoded < full.packets_decoded
    assert fewer >= 4, f"{name}: skipping was used in only {fewer} of 6 decodes"
    assert path not in decode._skipping_failed


@pytest.mark.parametrize("name", ["xvid_packed_bframes.avi", "vp9.webm", "mjpeg.avi", "real/bigbuckbunny.mp4"])
def test_never_skipped_where_nothing_may_be(name, made):
    """Packed B-frames, codecs without a rule, a stream without non-reference pictures: every packet is decoded."""
    path = made(name)
    assert not video_index(path).disposable.any()
    n = video_index(path).frames
    for indices in clips(n):
        assert (decode.decode_clip(path, indices).packets_decoded
                == decode.decode_clip(path, indices, skip_disposable=False).packets_decoded)


def naive_b_frames(index) -> np.ndarray:
    """(P,) packets of every reordered frame (one shown before a frame decoded earlier): B-frames, reference or not."""
    later_min = np.minimum.accumulate(index.packet[::-1])[::-1]
    reordered = np.zeros(index.frames, bool)
    reordered[:-1] = index.packet[:-1] > later_min[1:]
    mask = np.zeros(len(index.packet_pos), bool)
    mask[index.packet[reordered]] = True
    return mask


def lone_b_vops(path: str, index) -> np.ndarray:
    """(P,) packets holding one B-VOP and nothing else: Xvid's packed stream has them beside its P+B packets."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        data = [bytes(p) for p in container.demux(stream) if p.size]
    return np.array([p.count(b"\0\0\1\xb6") == 1 and p[p.find(b"\0\0\1\xb6") + 4] >> 6 == 2 for p in data])


@pytest.mark.parametrize("name, naive", [("real/bikes.mp4", "b-frames"), ("xvid_packed_bframes.avi", "b-vops")])
def test_a_naive_rule_would_give_wrong_frames(name, naive, made, monkeypatch):
    """bikes.mp4 has x264 B-pyramid reference B-frames; the packed AVI keeps a B-VOP back for the next packet.
    Skipping them as :mod:`maskvid.data.disposable` would not gives frames unlike a sequential decode (or a decode
    the frame index rejects), which is why the rule reads ``nal_ref_idc`` and refuses packed streams."""
    path = made(name)
    reference, _ = sequential(path)
    index = video_index(path)
    mask = naive_b_frames(index) if naive == "b-frames" else lone_b_vops(path, index)
    assert (mask & ~index.disposable).any()
    wrong_index = dataclasses.replace(index, disposable=mask)
    monkeypatch.setattr(decode, "video_index", lambda p: wrong_index)
    monkeypatch.setattr(decode, "_skipping_failed", set())
    wrong = 0
    for indices in clips(len(reference)):
        clip = decode.decode_clip(path, indices)
        wrong += path in decode._skipping_failed or not np.array_equal(clip.frames.numpy(), reference[indices])
        decode._skipping_failed.clear()
    assert wrong, f"{name}: skipping the naive packets changed nothing, so this test shows nothing"


def test_the_environment_switches_skipping_off_for_a_whole_run(made, monkeypatch):
    path = made("real/bikes.mp4")
    indices = list(range(40, 40 + SPAN, 4))
    skipping = decode.decode_clip(path, indices).packets_decoded
    monkeypatch.setenv("MASKVID_SKIP_DISPOSABLE", "off")
    whole = decode.decode_clip(path, indices).packets_decoded
    assert whole == decode.decode_clip(path, indices, skip_disposable=False).packets_decoded > skipping
    assert decode.decode_clip(path, indices, skip_disposable=True).packets_decoded == skipping  # explicit wins
