"""The synthetic benchmark: real H.264 with B-frames, deterministic per seed, lists that load, config checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from maskvid.data import ClipTransform, VideoDataset, collate, read_class_names
from maskvid.errors import ConfigError
from maskvid.synth import SynthConfig, render_video, synthesize


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_layout_lists_and_b_frames(synth_motion):
    assert read_class_names(os.path.join(synth_motion, "classes.txt")) == ["move_right", "move_left", "move_up"]
    lines = Path(synth_motion, "train.csv").read_text().split("\n")
    assert lines[0] == "videos/train_00000.mp4 0" and len([x for x in lines if x]) == 6
    with av.open(os.path.join(synth_motion, "videos", "train_00000.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        types = {int(frame.pict_type) for frame in container.decode(stream)}
    assert {1, 2, 3} <= types  # AVPictureType I, P, B


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, synth_motion):
    config = SynthConfig(classes=3, train_per_class=2, val_per_class=1, size=64, frames=24)
    synthesize(tmp_path / "again", config, workers=2)
    synthesize(tmp_path / "other", SynthConfig(**{**config.__dict__, "seed": 1}), workers=1)
    for name in ("train_00003.mp4", "val_00002.mp4"):
        original = digest(os.path.join(synth_motion, "videos", name))
        assert digest(str(tmp_path / "again" / "videos" / name)) == original
        assert digest(str(tmp_path / "other" / "videos" / name)) != original


def test_rerun_reuses_complete_output(synth_motion):
    config = SynthConfig(classes=3, train_per_class=2, val_per_class=1, size=64, frames=24)
    assert synthesize(synth_motion, config)["reused"] is True


def test_a_single_frame_does_not_reveal_the_motion_class():
    """Same seed, different motion class: the frame where poses coincide is identical, pixel for pixel.

    Position and angle are uniform on the torus, so equal frames at one time mean equal distributions at all times.
    """
    config = SynthConfig(classes=10, size=64, frames=25)

    def frame(label: int, t: int) -> np.ndarray:
        return render_video(config, label, np.random.default_rng([5, 0]))[t]

    first = frame(0, 0)
    for label in (1, 2, 3, 4, 5, 8, 9):  # translations, rotations, move/stop: same pose at t = 0
        np.testing.assert_array_equal(frame(label, 0), first)
    np.testing.assert_array_equal(frame(6, 12), frame(7, 12))  # approach/recede: same scale at the centre frame
    assert not np.array_equal(frame(0, 12), frame(1, 12))  # ...and the motion does differ


def test_motion_preset_motion_is_visible_in_codec_vectors(synth_motion):
    dataset = VideoDataset.from_list(
        os.path.join(synth_motion, "train.csv"),
        transform=ClipTransform(size=64, crop="none", flip=False),
        num_frames=8,
        stride=2,
        motion_vectors=True,
    )
    batch = collate([dataset[i] for i in range(len(dataset))])
    valid = batch["motion_valid"]
    for label, sign_axis in ((0, (0, 1)), (1, (0, -1)), (2, (1, -1))):  # right: +x, left: -x, up: -y
        axis, sign = sign_axis
        field = batch["motion"][batch["label"] == label][..., axis]
        strong = field[valid[batch["label"] == label]]
        strong = strong[strong.abs() > 0.5]
        assert torch.sign(strong.median()) == sign, label


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"preset": "noise"}, "preset"), ({"classes": 1}, "classes"), ({"size": 100}, "size"), ({"frames": 3}, "frames")],
)
def test_bad_config(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        SynthConfig(**kwargs)


def test_the_pool_is_unlabeled_balanced_and_disjoint_from_the_labelled_sets(tmp_path):
    config = SynthConfig(classes=2, train_per_class=1, val_per_class=1, pool=3, size=32, frames=8)
    summary = synthesize(tmp_path / "s", config, workers=1)
    assert (summary["train"], summary["val"], summary["pool_videos"]) == (2, 2, 3)
    pool = Path(tmp_path, "s", "pool.csv").read_text().split()
    assert pool == ["videos/pool_00000.mp4", "videos/pool_00001.mp4", "videos/pool_00002.mp4"]
    dataset = VideoDataset.from_list(str(tmp_path / "s" / "pool.csv"), require_labels=False, num_frames=4, stride=1,
                                     transform=ClipTransform(size=32, crop="none", flip=False))
    assert len(dataset) == 3 and dataset[0]["label"] == -1
    train = {digest(str(p)) for p in Path(tmp_path, "s", "videos").glob("train_*.mp4")}
    assert not train & {digest(str(p)) for p in Path(tmp_path, "s", "videos").glob("pool_*.mp4")}


@pytest.mark.parametrize("motion", ["speed_up", "slow_down"])
def test_speed_classes_show_in_any_two_intervals_of_any_clip(motion):
    """The label is decidable from any clip: each frame step is longer (speed_up) or shorter than the one before, by
    at least 5%, all through the video — no class waits for one event at one moment."""
    from maskvid.synth.scenes import main_sprite

    for seed in range(5):
        sprite = main_sprite(motion, np.random.default_rng(seed), 128, 40, "circle", (200, 40, 40))
        steps = np.array([np.linalg.norm(sprite.pose(t + 1)[0] - sprite.pose(t)[0]) for t in range(39)])
        ratios = steps[1:] / steps[:-1]
        assert (ratios > 1.05).all() if motion == "speed_up" else (ratios < 1 / 1.05).all()


def test_the_motion_preset_moves_at_its_pace_and_the_appearance_preset_at_format_3s(monkeypatch):
    """Format 4: the motion preset's objects move, turn and grow MOTION_PACE times as fast as format 3's, from the
    same random draws; the appearance preset, where motion is a nuisance, keeps format 3's pace."""
    import maskvid.synth.benchmark as benchmark
    from maskvid.synth.scenes import main_sprite

    colour = (200, 40, 40)
    for motion, part in (("move_up", lambda s: s.velocity), ("rotate_cw", lambda s: s.spin),
                         ("approach", lambda s: s.growth), ("speed_up", lambda s: s.velocity)):
        slow = main_sprite(motion, np.random.default_rng(3), 128, 40, "circle", colour)
        fast = main_sprite(motion, np.random.default_rng(3), 128, 40, "circle", colour, pace=2.0)
        assert np.any(part(slow) != 0)
        np.testing.assert_allclose(part(fast), 2.0 * np.asarray(part(slow)))
    paces = []
    monkeypatch.setattr(benchmark, "main_sprite", lambda *a: paces.append(a[-1]) or main_sprite(*a))
    for preset in ("motion", "appearance"):
        render_video(SynthConfig(preset=preset, size=32, frames=8), 0, np.random.default_rng(0))
    assert paces == [benchmark.MOTION_PACE, 1.0] and benchmark.MOTION_PACE == 2.0


def test_grain_moves_with_the_world_and_is_smooth_at_a_patch_scale():
    """The background's grain is carried by the camera's pan: frame t+1 is frame t shifted by the pan. Its texture
    varies over about a patch, not a pixel (format 2's pixel-fine grain left nothing inside a patch for its
    neighbours to predict, and the normalized-pixel loss never left its trivial value)."""
    from maskvid.synth.scenes import Renderer, background_colours

    rng = np.random.default_rng(0)
    renderer = Renderer(64, rng, np.array([2.0, 0.0]), background_colours(rng))
    a, b = renderer.background(0), renderer.background(1)
    np.testing.assert_allclose(b[:, :-2], a[:, 2:], atol=1e-3)  # pan 2 px/frame to the right: content moves left
    import cv2

    def background(seed: int, amplitude: float) -> np.ndarray:
        rng = np.random.default_rng(seed)
        image = Renderer(128, rng, np.zeros(2), background_colours(rng), amplitude).background(0)
        return image.mean(-1).astype(np.float32)

    for seed in range(3):
        grain = background(seed, 0.5) - background(seed, 0.0)  # what the grain adds
        fine = grain - cv2.GaussianBlur(grain, (0, 0), 1.5)  # the part of it a 1.5-pixel blur removes
        assert grain.std() > 3 and fine.std() < 0.1 * grain.std()  # there, and smooth at a pixel's scale


def test_encoding_the_same_frames_again_gives_the_same_bytes(tmp_path):
    """x264 holds frames for its lookahead; a frame converted into a buffer that is reused (as PyAV's encode-time
    conversion does) made repeated encodes of identical frames differ within one process."""
    frames = render_video(SynthConfig(classes=3, size=64, frames=24), 0, np.random.default_rng([0, 1, 0]))
    from maskvid.synth import write_video

    digests = set()
    for i in range(8):
        write_video(tmp_path / f"v{i}.mp4", frames)
        digests.add(digest(str(tmp_path / f"v{i}.mp4")))
    assert len(digests) == 1
