"""``maskvid mask`` and its library function: a real clip, a real mask, the score, the picture, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from maskvid.cli import main
from maskvid.errors import ConfigError, VideoDecodeError
from maskvid.mask_report import mask_video
from maskvid.masking import motion_score, rectangle_for_ratio


def test_mgm_hides_the_orbiting_square_far_better_than_tube(orbit_video):
    path, _ = orbit_video
    mgm = mask_video(path, "mgm", ratio=0.5, frames=16, stride=2)
    tube = mask_video(path, "tube", ratio=0.5, frames=16, stride=2)
    assert mgm.mask.shape == tube.mask.shape == (8, 14, 14)
    assert mgm.frames.shape == (16, 224, 224, 3) and mgm.frames.dtype == torch.uint8
    h, w = rectangle_for_ratio(0.5, 14, 14)  # each side x sqrt(0.5): 10x10
    assert mgm.masked == 8 * h * w and tube.masked == 8 * 98
    # the static background leaves nothing moving outside mgm's rectangle: the score is infinite, and JSON says null
    assert motion_score(mgm.mask, mgm.motion) > 3 * motion_score(tube.mask, tube.motion)
    inside, outside = mgm.motion_inside_outside()
    assert inside > 0 and outside < 0.05 * inside
    assert mgm.summary()["motion_score"] is None or mgm.summary()["motion_score"] > 3


def test_flow_source_guides_and_is_reported(orbit_video):
    path, _ = orbit_video
    report = mask_video(path, "mgm", source="flow", frames=8, stride=2, seed=3)
    summary = report.summary()
    assert summary["motion_source"] == "flow" and "source" not in summary["options"]  # a data option now
    assert summary["motion_score"] > 1.5
    # frame 0 has no flow: the first slice still has its second frame, so every slice has motion
    assert torch.isfinite(report.motion).all()


def test_cli_json_and_picture(orbit_video, tmp_path, capsys):
    path, _ = orbit_video
    png = tmp_path / "pics" / "mask.png"
    code = main(["mask", path, "--strategy", "running_cell", "--ratio", "0.75", "--option", "temporal=fixed",
                 "--frames", "8", "--stride", "2", "--out", str(png), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"strategy", "ratio", "masked", "tokens", "motion_score"} <= set(summary)
    assert summary["strategy"] == "running_cell" and summary["tokens"] == 4 * 14 * 14
    assert summary["masked"] == 3 * 49 * 4 and summary["ratio"] == 0.75
    assert summary["options"]["temporal"] == "fixed"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and summary["picture"] == str(png)


def test_cli_plain_text(orbit_video, capsys):
    path, _ = orbit_video
    assert main(["mask", path, "--strategy", "block3d", "--frames", "8", "--stride", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "block3d" in out and "tokens" in out and "score" in out


def test_json_has_no_nan_when_a_clip_has_no_motion(tmp_path, capsys):
    from conftest import write_video

    still = [torch.full((64, 64, 3), 90, dtype=torch.uint8).numpy() for _ in range(16)]
    path = tmp_path / "still.mp4"
    write_video(path, still)
    assert main(["mask", str(path), "--strategy", "mgm", "--frames", "8", "--stride", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # json.loads would accept NaN; check the text never has it
    assert summary["motion_score"] is None and summary["fallbacks"] == 1
    h, w = rectangle_for_ratio(0.75, 14, 14)
    assert summary["masked"] == 4 * h * w  # the smm fallback keeps mgm's count
    assert not any(isinstance(v, float) and math.isnan(v) for v in summary.values())


def test_bad_input_names_the_problem(orbit_video, tmp_path, capsys):
    path, _ = orbit_video
    with pytest.raises(ConfigError, match="mask.strategy"):
        mask_video(path, "no_such_mask")
    with pytest.raises(ConfigError, match="data.motion_source"):
        mask_video(path, "tube", source="radar")
    with pytest.raises(ConfigError, match="model.patch"):
        mask_video(path, "tube", frames=15)
    with pytest.raises(VideoDecodeError):
        mask_video(tmp_path / "missing.mp4", "tube")
    assert main(["mask", path, "--option", "ratio"]) == 2
    assert "mask.option" in capsys.readouterr().err
    assert main(["mask", path, "--strategy", "tube", "--option", "speed=3"]) == 2
    assert "mask.speed" in capsys.readouterr().err
