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
