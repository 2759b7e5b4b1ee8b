"""Codec motion vectors → field: reference distances from GOP structure, signs, rasterization."""

from __future__ import annotations

import numpy as np
import pytest

from maskvid.motion import rasterize_motion_vectors, reference_distances

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
