"""Masks made in the data pipeline: one per clip, from the transformed clip's motion, batched as (B, N)."""

from __future__ import annotations

import os

import pytest
import torch

from maskvid import masking
from maskvid.data import ClipTransform, VideoDataset, collate
from maskvid.errors import ConfigError
from maskvid.motion import slice_magnitude


def make(synth_motion, mask, **kw) -> VideoDataset:
    kw.setdefault("transform", ClipTransform(size=64, crop="multiscale", flip=True))
    kw.setdefault("patch", (2, 16, 16))
    return VideoDataset.from_list(os.path.join(synth_motion, "train.csv"), num_frames=8, stride=2, mask=mask, **kw)


@pytest.mark.parametrize("source", ["codec", "flow"])
def test_mgm_mask_in_each_sample_and_batched_flat(synth_motion, source):
    data = make(synth_motion, masking.build("mgm", ratio=0.5), motion_source=source, num_repeats=2)
    assert data.grid == (4, 4, 4) and data.motion_source == source
    first, second = data[1]
    h, w = masking.rectangle_for_ratio(0.5, 4, 4)
    for sample in (first, second):
        assert sample["mask"].shape == (4, 4, 4) and sample["mask"].dtype == torch.bool
        assert int(sample["mask"].sum()) == 4 * h * w
        assert "motion" not in sample  # the field served the mask; samples carry it only when asked
    batch = collate([data[0], data[1]])
    assert batch["mask"].shape == (4, 64) and batch["video"].shape == (4, 3, 8, 64, 64)
    assert torch.equal(make(synth_motion, masking.build("mgm", ratio=0.5), motion_source=source)[1]["mask"],
                       make(synth_motion, masking.build("mgm", ratio=0.5), motion_source=source)[1]["mask"])


def test_guided_masks_follow_the_motion_the_sample_carries(synth_motion):
    data = make(synth_motion, masking.build("mgm", ratio=0.25, jitter=0), motion_vectors=True)
    for index in range(len(data)):
        sample = data[index]
        guide = slice_magnitude(sample["motion"], sample["motion_valid"], tubelet=2)  # (4, 16, 16), 4-px cells
        for s, plane in enumerate(sample["mask"]):
            if not torch.isfinite(guide[s]).all() or float(guide[s].max()) == 0:
                continue
            peaks = (guide[s] == guide[s].max()).nonzero()  # the mask centres on one of them
            assert any(bool(plane[int(y) // 4, int(x) // 4]) for y, x in peaks), (index, s)


def test_masks_with_varying_counts_batch_together(synth_motion):
    data = make(synth_motion, masking.build("block3d", ratio=0.3))
    batch = collate([data[i] for i in range(len(data))])
    counts = batch["mask"].sum(1)
    assert batch["mask"].shape == (len(data), 64) and len(set(counts.tolist())) > 1


def test_pair_sampling_masks_both_clips(synth_motion):
    data = make(synth_motion, masking.build("tube", ratio=0.5), sampling="pair", pair_distance=4)
    sample = data[0]
    assert sample["mask"].shape == sample["mask2"].shape == (4, 4, 4)


def test_mask_grid_must_fit_the_clip_before_any_read(synth_motion):
    with pytest.raises(ConfigError, match="model.patch"):
        make(synth_motion, masking.build("tube"), patch=(3, 16, 16))
    with pytest.raises(ConfigError, match="mask.strategy"):
        make(synth_motion, masking.build("mgm"), sampling="multiview", views=(2, 1))
