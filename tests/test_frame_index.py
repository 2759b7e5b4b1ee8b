"""The frame index: which way a file is addressed, the safety net behind it, its disk cache, seeking back-off."""

from __future__ import annotations

import dataclasses
import gc
import os

import av
import numpy as np
import pytest

from maskvid.data import decode_clip, frame_index, probe_video, reader
from maskvid.data.frame_index import video_index
from maskvid.data.index_cache import cache_dir
from maskvid.data.video_file import packet_ordinal, tag_packet
from maskvid.errors import VideoDecodeError
from video_corpus import MADE, MissingTool, encode, sequential


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch) -> str:
    """Each test starts with no index in memory or on disk."""
    root = str(tmp_path / "frame-index")
    monkeypatch.setenv("MASKVID_INDEX_CACHE", root)
    frame_index.clear_cache()
    yield root
    frame_index.clear_cache()


@pytest.fixture(scope="module")
def avi(tmp_path_factory) -> str:
    """H.264 with B-frames in AVI: container pts are decode order, so only a decoding pass can index it."""
    return encode(str(tmp_path_factory.mktemp("avi") / "h264.avi"), options={"g": "24"})


@pytest.fixture(scope="module")
def ts(tmp_path_factory) -> str:
    return encode(str(tmp_path_factory.mktemp("ts") / "mpeg2.ts"), "mpeg2video", options={"bf": "2", "g": "6"},
                  frames=None)


def _tagged_frames(path: str, count: int = 4) -> list[av.VideoFrame]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.copy_opaque = True
        frames = []
        for ordinal, packet in enumerate(p for p in container.demux(stream) if p.size):
            tag_packet(packet, ordinal)
            frames += stream.decode(packet)
            if len(frames) >= count:
                return frames
    return frames


def test_packet_tags_survive_other_frames_being_freed(avi):
    """Regression: PyAV keys opaque values by id(); ints shared between packets vanished from live frames when an
    earlier decode's frames were garbage-collected, which sent every later decode to the slow safety net."""
    earlier = _tagged_frames(avi)
    later = _tagged_frames(avi)
    tags = [packet_ordinal(f) for f in later]
    del earlier
    gc.collect()
    assert [packet_ordinal(f) for f in later] == tags and None not in tags


def test_a_misleading_packets_index_is_caught_and_replaced(avi, monkeypatch):
    """Trusting AVI's decode-order pts gives a wrong index; the first decode it contradicts re-indexes the file by
    a decoding pass, and the frames returned are still exact."""
    monkeypatch.setattr(frame_index, "display_timestamp_problem", lambda *args: None)
    assert video_index(avi).addressing == "packets"
    reference, _ = sequential(avi)
    indices = list(range(30, 94, 4))
    np.testing.assert_array_equal(decode_clip(avi, indices).frames.numpy(), reference[indices])
    assert video_index(avi).addressing == "decoded"
    assert video_index(avi).reason == "a decode contradicted the packet timestamps"


def test_decoded_indices_are_cached_on_disk(avi, index_cache, monkeypatch):
    first = video_index(avi)
    assert first.addressing == "decoded" and "avi" in first.reason
    stored = [os.path.join(d, f) for d, _, files in os.walk(index_cache) for f in files if f.endswith(".npz")]
    assert stored, "no index written to the cache"
    frame_index.clear_cache()
    monkeypatch.setattr(frame_index, "_decoding_pass", lambda path: pytest.fail("decoded again despite the cache"))
    again = video_index(avi)
    for name in ("packet", "start", "first_valid", "packet_pos", "packet_ts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert (again.reason, again.seekable, again.by_count) == (first.reason, first.seekable, first.by_count)


def test_a_corrupt_cache_entry_is_rebuilt(avi, index_cache):
    video_index(avi)
    for d, _, files in os.walk(index_cache):
        for f in files:
            with open(os.path.join(d, f), "wb") as out:
                out.write(b"not an npz file")
    frame_index.clear_cache()
    assert video_index(avi).frames == len(sequential(avi)[0])


def test_the_cache_can_be_turned_off(avi, tmp_path, monkeypatch):
    monkeypatch.setenv("MASKVID_INDEX_CACHE", "off")
    assert cache_dir() is None
    assert video_index(avi).addressing == "decoded"
    monkeypatch.setenv("MASKVID_INDEX_CACHE", str(tmp_path / "idx"))
    frame_index.clear_cache()
    video_index(avi)
    assert any(files for _, _, files in os.walk(tmp_path / "idx"))


def test_a_seek_that_lands_past_the_keyframe_is_retried_earlier(ts, monkeypatch):
    """MPEG-TS seeks bisect timestamps; aimed at a keyframe's *pts* (what maskvid used to do) they land on a later
    keyframe most of the time. The reader sees the overshoot by byte position and backs off until exact."""
    index = video_index(ts)
    with av.open(ts) as container:
        stream = container.streams.video[0]
        pts = np.array([p.pts for p in container.demux(stream) if p.size], np.int64)
    misaimed = dataclasses.replace(index, packet_ts=pts)
    monkeypatch.setattr(reader, "READ_AHEAD_PACKETS", 0)  # reach every keyframe by seeking
    overshoots = []
    original = reader.PacketReader._skip_to

    def watching(self, start):
        try:
            return original(self, start)
        except reader._Overshoot:
            overshoots.append(start)
            raise

    monkeypatch.setattr(reader.PacketReader, "_skip_to", watching)
    starts = sorted(set(index.start.tolist()) - {0})
    for start in starts:
        packets = reader.PacketReader(ts, misaimed)
        try:
            packets.position(start)
            assert packets._read()[0] == start
        finally:
            packets.close()
    assert len(overshoots) >= len(starts) // 2, "the misaimed seeks did not overshoot: the test tests nothing"


def test_many_decoder_threads_give_the_same_frames(avi):
    """Slice threads only: frame threads returned H.264-in-AVI frames out of order now and then."""
    reference, _ = sequential(avi)
    indices = list(range(3, 99, 6))
    np.testing.assert_array_equal(decode_clip(avi, indices, threads=4).frames.numpy(), reference[indices])


def test_probe_says_how_a_file_is_addressed(avi, ts):
    info = probe_video(avi)
    assert info.addressing == "decoded" and "avi" in info.addressing_reason and info.seekable
    assert probe_video(ts).addressing == "decoded"


def test_keyframes_that_do_not_reproduce_the_decoding_pass_are_avoided(tmp_path):
    """Xvid in MKV: after a VOL carrying Xvid's user data, FFmpeg decodes differently than from a fresh start, so
    those keyframes fail the checksum; their frames then come from the keyframe before, exactly."""
    try:
        path = MADE["xvid_bframes.mkv"][0](str(tmp_path))
    except MissingTool as e:
        pytest.skip(f"xvid_bframes.mkv: {e}")
    reference, _ = sequential(path)
    n = len(reference)
    for first in range(0, n - 61, 12):
        indices = list(range(first, first + 61, 4))
        np.testing.assert_array_equal(decode_clip(path, indices).frames.numpy(), reference[indices])
    index = video_index(path)
    assert index.bad_starts, "no keyframe was rejected: the test no longer tests the checksum path"
    assert all(index.start_for(t)[0] not in index.bad_starts for t in range(n))


def test_a_decode_that_never_matches_the_pass_is_an_error_not_a_wrong_frame(avi, monkeypatch):
    from maskvid.data import decode as decoding

    monkeypatch.setattr(decoding, "frame_checksum", lambda frame: -1)
    with pytest.raises(VideoDecodeError, match="decoding does not reproduce the file's frames"):
        decode_clip(avi, [40, 60])
    assert video_index(avi).bad_starts, "the start keyframes should have been tried and rejected first"
