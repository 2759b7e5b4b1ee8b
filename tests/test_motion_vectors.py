"""Codec motion vectors → field: reference distances from GOP structure, signs, rasterization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskvid.motion import rasterize_motion_vectors, reference_distances
from maskvid.motion.vectors import motion_field, rasterize_frames, resize_field

MV_DTYPE = [(n, "i4") for n in ("source", "w", "h", "src_x", "src_y", "dst_x", "dst_y", "motion_x", "motion_y")] + [
    ("flags", "u8"),
    ("motion_scale", "u2"),
]


def test_distances_with_b_pyramid():
    # display: I0 B1 B2 B3 P4 ; decode: I0 P4 B2(ref) B1 B3  — x264's default mini-GOP
    past, future = reference_distances(np.array([0, 4, 2, 1, 3]))
    assert past.tolist() == [np.inf, 1, 2, 1, 4]
    assert future.tolist() == [np.inf, 1, 2, 1, np.inf]


def test_distances_without_pyramid_skip_non_reference_b_frames():
    # display: I0 B1 B2 P3 ; decode: I0 P3 B1 B2 — B1 is not a reference, so B2 looks back to I0
    past, future = reference_distances(np.array([0, 3, 1, 2]))
    assert past.tolist() == [np.inf, 1, 2, 3]
    assert future.tolist() == [np.inf, 2, 1, np.inf]


def vectors(rows):
    out = np.zeros(len(rows), MV_DTYPE)
    for i, (source, w, h, dst_x, dst_y, mx, my) in enumerate(rows):
        out[i] = (source, w, h, 0, 0, dst_x, dst_y, mx, my, 0, 4)
    return out


def test_signs_and_distances():
    # Block at x 0..15 moved right by 4 px over 2 frames (past ref): motion = src-dst = -4 px → -16 quarter-pels.
    mv = vectors([(-1, 16, 16, 8, 8, -16, 0)])
    field = rasterize_motion_vectors(mv, (32, 32), past_distance=2, future_distance=1)
    assert field.shape == (8, 8, 2)
    assert np.allclose(field[:4, :4, 0], 2.0) and np.allclose(field[4:, :, :], 0)
    # The same motion seen from a future reference one frame ahead: src-dst = +2 px → +8 quarter-pels.
    mv = vectors([(1, 16, 16, 8, 8, 8, 0)])
    assert np.allclose(rasterize_motion_vectors(mv, (32, 32), 2, 1)[:4, :4, 0], 2.0)


def test_bidirectional_blocks_average():
    mv = vectors([(-1, 8, 8, 4, 4, -8, 4), (1, 8, 8, 4, 4, 16, -8)])
    field = rasterize_motion_vectors(mv, (16, 16), past_distance=1, future_distance=2)
    assert field[0, 0].tolist() == pytest.approx([2.0, -1.0])


def test_empty_vectors_give_zero_field():
    assert not rasterize_motion_vectors(vectors([]), (20, 20), 1, 1).any()


def _records(blocks: int, frames: int, hw: tuple[int, int], aligned: bool, rng: np.random.Generator):
    """Random records over ``frames`` frames: macroblock partitions on an 8-pixel grid (H.264's) or, unaligned,
    any 4-pixel multiples; some blocks past the frame's edge, some bi-predicted (two records on one block)."""
    per_frame = []
    for _ in range(frames):
        rows = []
        for _ in range(blocks):
            unit = 8 if aligned else 4
            w, h = (int(rng.choice([1, 2])) * 8 if aligned else int(rng.integers(1, 5)) * 4 for _ in range(2))
            left = int(rng.integers(0, hw[1] // unit + 2)) * unit
            top = int(rng.integers(0, hw[0] // unit + 2)) * unit
            for source in ([-1, 1] if rng.random() < 0.3 else [int(rng.choice([-1, 1]))]):
                rows.append((source, w, h, left + w // 2, top + h // 2, int(rng.integers(-64, 64)),
                             int(rng.integers(-64, 64))))
        per_frame.append(vectors(rows))
    return per_frame


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), aligned=st.booleans(), coded=st.sampled_from([(64, 88), (36, 52), (48, 48)]),
       out=st.sampled_from([None, (32, 40), (56, 60), (100, 120), (40, 200), (64, 88)]))
def test_motion_field_equals_rasterizing_then_resizing(seed, aligned, coded, out):
    rng = np.random.default_rng(seed)
    frames = 3
    records = _records(12, frames, coded, aligned, rng)
    records[1] = vectors([])  # an I-frame among them
    past, future = np.array([1.0, 2.0, np.inf]), np.array([2.0, np.inf, 1.0])
    out = out or coded
    expected = resize_field(rasterize_frames(records, coded, past, future), out, coded)
    field = motion_field(records, coded, out, past, future)
    assert field.shape == expected.shape and field.dtype == np.float32
    np.testing.assert_allclose(field, expected, rtol=1e-5, atol=1e-5)


def test_motion_field_of_no_vectors_is_zero_at_the_output_size():
    field = motion_field([vectors([]), vectors([])], (64, 88), (32, 40), np.ones(2), np.ones(2))
    assert field.shape == (2, 8, 10, 2) and not field.any()


def test_motion_field_of_blocks_wholly_past_the_edge_is_zero():
    # a 24x24 frame has 3x3 cells of 8 px: a block at x 24..32 covers none of them
    field = motion_field([vectors([(-1, 8, 8, 28, 4, -16, 0)])], (24, 24), (24, 24), np.ones(1), np.ones(1))
    assert field.shape == (1, 6, 6, 2) and not field.any()


def test_ffmpeg_records_read_as_pyav_reads_them(moving_square):
    """decode_clip reads each frame's side data with a dtype built once; it must be PyAV's own, field for field."""
    import av

    from maskvid.motion.vectors import AV_MOTION_VECTOR

    read = 0
    with av.open(moving_square) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        for frame in container.decode(stream):
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                theirs, ours = side.to_ndarray(), np.frombuffer(side, AV_MOTION_VECTOR)
                assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()
                read += len(ours)
    assert read > 1000
