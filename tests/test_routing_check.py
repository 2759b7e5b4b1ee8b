"""``maskvid check-routing``: its clips hold the answer in every temporal slice, the trivial loss is what predicting
zero scores, the plateau's exit is found on a loss curve, and the command runs from a config and refuses what it
cannot check."""

from __future__ import annotations

import json

import pytest
import torch

from maskvid.cli import main
from maskvid.config import load_config
from maskvid.errors import ConfigError
from maskvid.masking.standard import RandomMask, TubeMask
from maskvid.routing_check import batch_masks, check_routing, left_plateau, smooth_clips, texture_clips
from maskvid.targets import build as build_target

CONFIG = "configs/pretrain/videomae_micro.yaml"
SMALL = ["data.num_frames=4", "data.size=32", "model.decoder_width=32", "model.decoder_depth=1",
         "model.decoder_heads=2"]


def test_every_temporal_slice_holds_the_answer_and_zero_scores_the_trivial_loss():
    g = torch.Generator().manual_seed(0)
    video = texture_clips(3, 8, 32, g)
    assert video.shape == (3, 3, 8, 32, 32) and torch.equal(video[:, :, 0], video[:, :, 7])
    assert 0.5 < float(video.std()) < 2  # about the scale of normalized video
    target = build_target("norm_pixels", patch=(2, 8, 8))(video)  # (B, N, 384), N = 4 slices × 16 places
    slices = target.view(3, 4, 16, -1)
    torch.testing.assert_close(slices[:, 0], slices[:, 3])  # a masked token's answer is visible elsewhere
    torch.testing.assert_close(float(target.pow(2).mean()), 127 / 128, atol=1e-3, rtol=0)  # (n - 1) / n, n = 128
    masks = batch_masks(RandomMask(0.75), 5, (1, 8, 8), g)
    assert masks.sum(1).tolist() == [48] * 5 and not torch.equal(masks[0], masks[1])


def test_smooth_clips_are_static_and_smooth_and_tube_masks_hide_a_place_in_every_slice():
    g = torch.Generator().manual_seed(0)
    video = smooth_clips(2, 4, 32, 8.0, g)
    assert video.shape == (2, 3, 4, 32, 32) and torch.equal(video[:, :, 0], video[:, :, 3])
    frame = video[:, :, 0]
    step = (frame[..., 1:] - frame[..., :-1]).std() / frame.std()
    assert 0.6 < float(frame.std()) < 0.8 and step < 0.2  # neighbouring pixels nearly equal: smooth over a patch
    masks = batch_masks(TubeMask(0.75), 3, (2, 4, 4), g).view(3, 2, 16)
    assert torch.equal(masks[:, 0], masks[:, 1]) and masks[:, 0].sum(1).tolist() == [12] * 3


def test_the_plateau_is_left_at_the_first_interval_below_nine_tenths_of_trivial():
    trivial = 0.99
    assert left_plateau([(25, 0.995), (50, 0.991), (75, 0.95), (100, 0.80), (125, 0.85)], trivial) == 100
    assert left_plateau([(25, 0.995), (50, 0.90)], trivial) is None  # 0.90 is not below 0.891
    assert left_plateau([], trivial) is None


def test_a_short_check_reports_every_interval_from_the_config():
    config = load_config(CONFIG, SMALL + ["model.pos_embed=rope"])
    seen = []
    report = check_routing(config, steps=6, batch=2, log_every=4, progress=lambda step, loss: seen.append(step))
    assert [step for step, _ in report.losses] == seen == [4, 6]
    assert report.lr == 1e-3 and report.trivial == pytest.approx(127 / 128)
    assert report.final == report.losses[-1][1] and report.final > 0.5  # six steps cannot route yet
    assert report.left_at is None


def test_the_command_prints_json_and_refuses_a_token_stem(capsys):
    assert main(["check-routing", "--config", CONFIG, *sum((["--set", s] for s in SMALL), []), "--steps", "2",
                 "--batch", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 2 and out["left_at"] is None and len(out["losses"]) == 1
    with pytest.raises(ConfigError, match="content"):
        check_routing(load_config(CONFIG, SMALL), steps=1, content="stripes")
    with pytest.raises(ConfigError, match="token"):
        check_routing(load_config("configs/pretrain/vimpac_micro.yaml", ["data.tokens=null"]), steps=1)
