"""Motion-guided masks on real decoded video: codec vectors and DIS flow → per-slice magnitudes → MGM."""

from __future__ import annotations

import pytest
import torch

from conftest import square_box
from maskvid import masking
from maskvid.data import decode_clip
from maskvid.errors import ConfigError, InputError
from maskvid.motion import dis_flow, slice_magnitude

INDICES = list(range(0, 32, 2))  # 16 frames at stride 2 → 8 slices of 2


def object_coverage(mask: torch.Tensor, boxes, patch: int = 16) -> list[float]:
    """Per slice, the smallest fraction of the object's pixels hidden in either of the slice's frames."""
    covered = []
    for s, plane in enumerate(mask):
        pixels = plane.repeat_interleave(patch, 0).repeat_interleave(patch, 1)
        fractions = []
        for frame in (2 * s, 2 * s + 1):
            top, left, bottom, right = boxes[INDICES[frame]]
            fractions.append(float(pixels[top:bottom, left:right].float().mean()))
        covered.append(min(fractions))
    return covered


@pytest.fixture(scope="module")
def orbit_motion(orbit_video):
    path, boxes = orbit_video
    clip = decode_clip(path, INDICES, motion_vectors=True)
    codec = slice_magnitude(clip.motion, clip.motion_valid, tubelet=2)
    field, valid = dis_flow(clip.frames, frame_distance=2.0)
    return {"codec": codec, "flow": slice_magnitude(field, valid, tubelet=2)}, boxes


@pytest.mark.parametrize("source", ["codec", "flow"])
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_mgm_rectangle_covers_the_moving_object_and_beats_tube(orbit_motion, source, ratio):
    motion, boxes = orbit_motion
    mgm, tube = masking.build("mgm", ratio=ratio), masking.build("tube", ratio=ratio)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        mask = mgm((8, 14, 14), g, motion[source])
        covered = object_coverage(mask, boxes)
        assert sum(c >= 0.9 for c in covered) >= 0.9 * len(covered), covered
        blind = masking.motion_score(tube((8, 14, 14), g), motion[source])
        assert masking.motion_score(mask, motion[source]) > 5 * blind


def test_codec_motion_peaks_on_the_object(orbit_motion):
    motion, boxes = orbit_motion
    for s in range(1, 8):
        cell = int(motion["codec"][s].flatten().argmax())
        y, x = (cell // 56) * 4 + 2, (cell % 56) * 4 + 2
        top, left, bottom, right = boxes[INDICES[2 * s]]
        assert top - 8 <= y <= bottom + 8 and left - 8 <= x <= right + 8


def test_slice_magnitude_averages_valid_frames_and_marks_empty_slices_nan():
    field = torch.zeros(4, 2, 2, 2)
    field[1, ..., 0] = 3.0
    field[1, ..., 1] = 4.0  # |v| = 5
    field[2] = 7.0  # an invalid frame: ignored
    valid = torch.tensor([False, True, False, False])
    out = slice_magnitude(field, valid, tubelet=2)
    assert out.shape == (2, 2, 2)
    assert torch.allclose(out[0], torch.full((2, 2), 5.0)) and bool(out[1].isnan().all())
    with pytest.raises(ConfigError, match="tubelet"):
        slice_magnitude(torch.zeros(5, 2, 2, 2), None, tubelet=2)


def test_dis_flow_reads_rightward_motion_in_pixels_per_frame(moving_square):
    clip = decode_clip(moving_square, [0, 1, 2, 3])
    field, valid = dis_flow(clip.frames)
    assert valid.tolist() == [False, True, True, True] and field.shape == (4, 32, 32, 2)
    top, left, bottom, right = square_box(3)
    inside = field[3, top // 4 + 1 : bottom // 4 - 1, left // 4 + 1 : right // 4 - 1]
    assert float(inside[..., 0].median()) == pytest.approx(2.0, abs=0.3)
    assert abs(float(inside[..., 1].median())) < 0.3


def test_motion_score_is_the_inside_outside_ratio():
    motion = torch.ones(2, 4, 4)
    motion[:, :2] = 3.0
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    assert masking.motion_score(mask, motion) == pytest.approx(3.0)
    assert masking.motion_score(~mask, motion) == pytest.approx(1 / 3)
    motion[1] = float("nan")  # slices without motion are left out
    assert masking.motion_score(mask, motion) == pytest.approx(3.0)
    assert masking.motion_score(mask, torch.full((2, 4, 4), float("nan"))) != masking.motion_score(mask, motion)


def test_bert_noise_splits_masked_tokens_80_10_10_and_leaves_the_rest():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 1000, (64, 1000), generator=g)
    mask = torch.rand(64, 1000, generator=g) < 0.5
    noisy = masking.bert_noise(tokens, mask, mask_token=1000, vocab_size=1000, generator=g)
    assert torch.equal(noisy[~mask], tokens[~mask])
    masked = int(mask.sum())
    to_mask = int((noisy[mask] == 1000).sum()) / masked
    changed = int(((noisy != tokens) & (noisy != 1000) & mask).sum()) / masked
    assert to_mask == pytest.approx(0.8, abs=0.01) and changed == pytest.approx(0.1 * 0.999, abs=0.01)
    again = masking.bert_noise(tokens, mask, 1000, 1000, torch.Generator().manual_seed(5))
    assert torch.equal(again, masking.bert_noise(tokens, mask, 1000, 1000, torch.Generator().manual_seed(5)))
    with pytest.raises(InputError, match="mask"):
        masking.bert_noise(tokens, mask.int(), 1000, 1000)
