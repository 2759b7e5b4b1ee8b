"""Every kind of video a user brings decodes frame-exactly: the frame count and clips at the start, middle and end
(16 frames at stride 4, with and without motion vectors) equal a plain sequential decode — by reading forward to
each start keyframe and by seeking to it."""

from __future__ import annotations

import numpy as np
import pytest

from maskvid.data import decode, decode_clip, frame_count, probe_video, reader
from maskvid.data.frame_index import video_index
from maskvid.motion.vectors import rasterize_frames, resize_field, rotate_field
from video_corpus import MADE, corpus_file, real_footage, sequential

CLIP, STRIDE = 16, 4
REAL = real_footage()
NAMES = list(MADE) + [f"real/{name}" for name in sorted(REAL)] + ([] if REAL else ["real/<missing>"])


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch):
    """A decode the index contradicts is retried in a slower exact way; for these files it must never happen — but
    for the one designed case: a keyframe of a decoder that carries state across keyframes (MPEG-4 Part 2), found
    by checksum not to reproduce the decoding pass, after which its frames are decoded from an earlier keyframe."""
    plain = decode._decode_frames

    def strict(reader_, index, targets, from_start, skip, take):
        try:
            return plain(reader_, index, targets, from_start, skip, take)
        except reader.IndexMismatch as e:
            if e.start and not from_start and index.reason and "state across keyframes" in index.reason:
                raise
            raise AssertionError(f"the {index.addressing} index was contradicted: {e}") from e

    monkeypatch.setattr(decode, "_decode_frames", strict)


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("corpus"))


def expected_field(path: str, vectors: list, indices: list[int], upright_hw: tuple[int, int], rotation: int):
    """The motion field of ``indices`` from the *sequential* decode's vectors (so it checks they are that frame's)."""
    turns = rotation // 90
    coded = upright_hw[::-1] if turns % 2 else upright_hw
    past, future = video_index(path).reference_distances
    raw = [vectors[i] if vectors[i] is not None else np.zeros(0, _vector_dtype(vectors)) for i in indices]
    field = rasterize_frames(raw, coded, past[indices], future[indices])
    return rotate_field(resize_field(field, coded, coded), turns), [len(v) > 0 for v in raw]


def _vector_dtype(vectors: list):
    return next((v.dtype for v in vectors if v is not None), np.dtype([("source", np.int32)]))


@pytest.mark.parametrize("read_ahead", [10**9, 0], ids=["read-forward", "seek"])
@pytest.mark.parametrize("name", NAMES)
def test_clips_equal_a_sequential_decode(name, read_ahead, corpus_root, monkeypatch):
    path = corpus_file(name, corpus_root)
    monkeypatch.setattr(reader, "READ_AHEAD_PACKETS", read_ahead)  # 0: every start keyframe is reached by a seek
    reference, vectors = sequential(path, motion_vectors=True)
    n = len(reference)
    info = probe_video(path)
    assert info.frames == frame_count(path) == n, f"{name}: {info.frames} frames, a sequential decode gives {n}"
    expected_addressing = MADE[name][1] if name in MADE else "packets"
    assert info.addressing == expected_addressing, f"{name}: {info.addressing} ({info.addressing_reason})"
    span = (CLIP - 1) * STRIDE + 1
    for first in (0, (n - span) // 2, n - span):
        indices = list(range(first, first + span, STRIDE))
        clip = decode_clip(path, indices)
        np.testing.assert_array_equal(clip.frames.numpy(), reference[indices], err_msg=f"{name} at {first}")
        clip = decode_clip(path, indices, motion_vectors=True)
        np.testing.assert_array_equal(clip.frames.numpy(), reference[indices], err_msg=f"{name} at {first}, mv")
        field, valid = expected_field(path, vectors, indices, reference.shape[1:3], clip.rotation)
        np.testing.assert_allclose(clip.motion.numpy(), field, atol=1e-5, err_msg=f"{name} vectors at {first}")
        assert clip.motion_valid.tolist() == valid


@pytest.mark.parametrize("name", ["cli_setts_pts_dts.mp4", "h264_pts_as_dts.mp4", "xvid_packed_bframes.avi",
                                  "xvid_bframes.mkv", "h264.avi", "mpeg2.ts", "h264_edit_list.mp4"])
def test_every_index_decodes_exactly(name, corpus_root):
    """The hostile pass's worst cases, at every index one by one (each call seeks and decodes on its own)."""
    path = corpus_file(name, corpus_root)
    reference, _ = sequential(path)
    assert frame_count(path) == len(reference)
    wrong = [i for i in range(len(reference)) if not np.array_equal(decode_clip(path, [i]).frames[0].numpy(),
                                                                    reference[i])]
    assert wrong == [], f"{name}: frames {wrong[:10]} differ from a sequential decode"
