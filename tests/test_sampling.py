"""Clip samplers: properties over random lengths, clip sizes, strides and seeds (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from maskvid.data import sampling

lengths = st.integers(1, 400)
clip_lens = st.integers(1, 32)
strides = st.integers(1, 8)
seeds = st.integers(0, 2**31)


@given(lengths, clip_lens, strides, seeds)
def test_dense_clip_is_strided_and_in_range(n, clip_len, stride, seed):
    g = torch.Generator().manual_seed(seed)
    idx = sampling.dense_indices(n, clip_len, stride, g)
    assert len(idx) == clip_len and all(0 <= i < n for i in idx)
    span = (clip_len - 1) * stride + 1
    if n >= span:
        assert all(b - a == stride for a, b in zip(idx, idx[1:], strict=False))
    else:  # short video: strided from 0, then the last frame repeats
        assert idx[0] == 0 and idx[-1] == n - 1
        assert all(b - a in (0, stride) or b == n - 1 for a, b in zip(idx, idx[1:], strict=False))
    assert idx == sampling.dense_indices(n, clip_len, stride, torch.Generator().manual_seed(seed))


@given(lengths, clip_lens, seeds)
def test_segments_cover_the_video_in_order(n, clip_len, seed):
    idx = sampling.segment_indices(n, clip_len, torch.Generator().manual_seed(seed))
    assert len(idx) == clip_len and idx == sorted(idx) and all(0 <= i < n for i in idx)
    if n >= clip_len:
        assert len(set(idx)) == clip_len


@given(lengths, clip_lens, strides, st.integers(1, 10))
def test_views_are_evenly_spread(n, clip_len, stride, views):
    clips = sampling.multiview_indices(n, clip_len, stride, views)
    starts = [c[0] for c in clips]
    assert len(clips) == views and starts == sorted(starts)
    span = (clip_len - 1) * stride + 1
    if views > 1 and n >= span:
        assert starts[0] == 0 and clips[-1][-1] == n - 1


@given(lengths, clip_lens, strides, st.integers(0, 64), seeds)
def test_pair_starts_within_max_distance(n, clip_len, stride, distance, seed):
    a, b = sampling.pair_indices(n, clip_len, stride, distance, torch.Generator().manual_seed(seed))
    assert len(a) == len(b) == clip_len
    assert abs(a[0] - b[0]) <= distance


def test_spatial_crops_along_the_long_side():
    assert sampling.spatial_offsets(224, 298, 224, 3) == [(0, 0), (0, 37), (0, 74)]
    assert sampling.spatial_offsets(300, 224, 224, 1) == [(38, 0)]
