"""decode_clip / probe_video on real encoded files: exact frames, seeking, resizing, containers, codec motion."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import moving_square_frames, square_box
from maskvid.data import decode_clip, frame_count, probe_video, reader
from maskvid.synth import write_video
from video_corpus import encode, ffmpeg_cli


def decode_all(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_stride4_clip_equals_full_decode(moving_square):
    full = decode_all(moving_square)
    indices = list(range(5, 5 + 16 * 4, 4))[:16]
    indices = [min(i, len(full) - 1) for i in indices]
    clip = decode_clip(moving_square, indices)
    assert clip.frames.shape == (16, 128, 128, 3) and clip.frames.dtype.is_floating_point is False
    np.testing.assert_array_equal(clip.frames.numpy(), full[indices])


def test_lossless_decode_is_exact_in_any_order(lossless_video):
    path, frames = lossless_video
    indices = [29, 3, 3, 17, 0, 8]
    clip = decode_clip(path, indices)
    np.testing.assert_array_equal(clip.frames.numpy(), frames[indices])
    assert clip.indices.tolist() == indices


def decoded_packets(monkeypatch) -> list[int]:
    """Record the ordinal of every packet given to the decoder."""
    fed = []
    original = reader.PacketReader._decode

    def counting(self, packet):
        if packet is not None:
            fed.append(self.fed)
        return original(self, packet)

    monkeypatch.setattr(reader.PacketReader, "_decode", counting)
    return fed


def test_late_clip_does_not_decode_from_start(lossless_video, monkeypatch):
    path, frames = lossless_video  # a keyframe at least every 8 frames, no B-frames: packet k is frame k
    fed = decoded_packets(monkeypatch)
    decode_clip(path, [26, 28])
    assert min(fed) >= 24 and max(fed) == 28, f"decoded packets {fed}; a keyframe is at 24 or later"


def test_a_clip_at_the_end_of_a_long_video_seeks(tmp_path, monkeypatch):
    path = str(tmp_path / "long.mp4")
    write_video(path, moving_square_frames(n=600, size=32, speed=0), options={"g": "25"})
    seeks = []
    original_seek = reader.PacketReader._seek_to
    monkeypatch.setattr(reader.PacketReader, "_seek_to", lambda self, start: (seeks.append(start),
                                                                              original_seek(self, start)))
    fed = decoded_packets(monkeypatch)
    clip = decode_clip(path, list(range(536, 600, 4)))
    np.testing.assert_array_equal(clip.frames.numpy(), decode_all(path)[536:600:4])
    assert seeks == [525] and len(fed) <= 80, f"seeks {seeks}, {len(fed)} packets decoded from {min(fed)}"


def test_probe_reports_exact_counts(moving_square, lossless_video):
    info = probe_video(moving_square, check_motion_vectors=True)
    assert (info.frames, info.width, info.height, info.codec) == (48, 128, 128, "h264")
    assert info.fps == pytest.approx(25) and info.duration == pytest.approx(48 / 25, rel=0.05)
    assert info.motion_vectors is True
    assert (info.addressing, info.addressing_reason, info.rotation, info.seekable) == ("packets", None, 0, True)
    assert probe_video(lossless_video[0]).frames == 30


def test_short_side_resize_happens_in_decode(lossless_video):
    path, _ = lossless_video
    assert decode_clip(path, [0, 1], size=32).frames.shape == (2, 32, 48, 3)
    assert decode_clip(path, [0], size=(40, 50)).frames.shape == (1, 40, 50, 3)


@pytest.mark.parametrize(
    ("name", "codec", "options"),
    [
        ("h264.mkv", "libx264", {}),
        ("mpeg4.avi", "mpeg4", {}),
        ("mjpeg.avi", "mjpeg", {}),
        ("vp9.webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
        ("hevc.mp4", "libx265", {"x265-params": "log-level=error"}),
    ],
)
def test_other_containers_and_codecs(tmp_path, name, codec, options):
    frames = moving_square_frames(n=20, size=64)
    path = tmp_path / name
    write_video(path, frames, codec=codec, options=options)
    assert probe_video(path).frames == 20
    full = decode_all(str(path))
    np.testing.assert_array_equal(decode_clip(path, [19, 2, 11]).frames.numpy(), full[[19, 2, 11]])


def test_variable_frame_rate_is_frame_accurate(tmp_path):
    path = str(tmp_path / "vfr.mkv")
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    gaps = [1, 1, 3, 1, 7, 2, 1, 1, 5, 1, 1, 2]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264rgb", rate=30)
        stream.width = stream.height = 32
        stream.pix_fmt = "rgb24"
        stream.codec_context.options = {"qp": "0", "g": "4"}
        stream.codec_context.time_base = stream.time_base = Fraction(1, 30)
        pts = 0
        for image, gap in zip(frames, gaps, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts
            frame.time_base = stream.codec_context.time_base
            pts += gap
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    np.testing.assert_array_equal(decode_clip(path, [11, 5, 6, 0]).frames.numpy(), frames[[11, 5, 6, 0]])


def test_motion_field_follows_the_moving_square(moving_square):
    indices = list(range(8, 40, 2))
    clip = decode_clip(moving_square, indices, motion_vectors=True)
    field = clip.motion.numpy()
    assert field.shape == (16, 32, 32, 2)
    assert clip.motion_valid.sum() >= 12  # P/B frames carry vectors; I-frames are marked
    inside, outside = [], []
    for slot, t in enumerate(indices):
        if not clip.motion_valid[slot]:
            assert not field[slot].any()
            continue
        top, left, bottom, right = (v // 4 for v in square_box(t))
        core = field[slot, top + 1 : bottom - 1, left + 1 : right - 1]
        inside.append(core.reshape(-1, 2))
        mask = np.ones(field.shape[1:3], bool)
        mask[top - 2 : bottom + 2, max(left - 3, 0) : right + 3] = False
        outside.append(field[slot][mask])
    inside, outside = np.concatenate(inside), np.concatenate(outside)
    moving = np.abs(inside).sum(1) > 0  # intra-coded blocks carry no vector
    assert moving.mean() > 0.7
    assert np.median(inside[moving, 0]) == pytest.approx(2.0, abs=0.25)  # right, 2 px/frame
    assert np.abs(np.median(inside[moving, 1])) < 0.25
    assert np.abs(outside).mean() < 0.1


def test_motion_field_scales_with_resize(moving_square):
    clip = decode_clip(moving_square, list(range(8, 40, 2)), size=64, motion_vectors=True)
    assert clip.motion.shape == (16, 16, 16, 2)
    dx = clip.motion[..., 0][clip.motion[..., 0].abs() > 0.25]  # the moving square
    assert dx.median().item() == pytest.approx(1.0, abs=0.15)  # 2 px/frame at full size = 1 px/frame at half


def test_a_forked_worker_can_collect_frames_the_parent_decoded(moving_square):
    """Regression: swscale's default slice threads made a forked DataLoader worker crash or hang when its garbage
    collector freed a frame converter inherited from the parent (it joins threads that only the parent had)."""
    gc.collect()
    gc.disable()  # keep the decoded frames' reference cycles alive until the child collects them
    try:
        for _ in range(3):
            decode_clip(moving_square, list(range(0, 16, 2)), size=64, motion_vectors=True)
        pid = os.fork()
        if pid == 0:
            gc.collect()
            os._exit(0)
    finally:
        gc.enable()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung collecting decoded frames")


@pytest.mark.parametrize(("rotation", "direction"), [(90, (0, -1)), (-90, (0, 1)), (180, (-1, 0))])
def test_rotation_uprights_frames_and_turns_motion_vectors(tmp_path, rotation, direction):
    """The square moves right 2 px/frame as coded; displayed turned 90° counter-clockwise it moves up."""
    frames = moving_square_frames(n=40, size=128)
    path = encode(str(tmp_path / f"rot{rotation}.mp4"), frames=[f[:96] for f in frames], rotation=rotation)
    info = probe_video(path)
    turns = (rotation // 90) % 4
    assert info.rotation == turns * 90
    assert (info.height, info.width) == ((128, 96) if turns % 2 else (96, 128))
    clip = decode_clip(path, list(range(8, 40, 2)), motion_vectors=True)
    assert clip.frames.shape[1:3] == (info.height, info.width) and clip.rotation == turns * 90
    np.testing.assert_array_equal(clip.frames[0].numpy(), np.rot90(decode_all(path)[8], turns))
    field = clip.motion.numpy()[clip.motion_valid.numpy()]
    moving = np.abs(field).sum(-1) > 1
    dx, dy = np.median(field[moving], axis=0)
    assert (dx, dy) == pytest.approx((2 * direction[0], 2 * direction[1]), abs=0.3)


def test_upright_frames_equal_the_ffmpeg_command_lines_autorotate(tmp_path):
    """An independent reference for the rotation's direction: ffmpeg's own autorotate (its default)."""
    exe = ffmpeg_cli()
    if exe is None:
        pytest.skip("no ffmpeg command line to compare rotation with (pip install imageio-ffmpeg)")
    path = encode(str(tmp_path / "rot.mp4"), rotation=90)
    done = subprocess.run([exe, "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, check=True)
    frames = decode_clip(path, list(range(frame_count(path)))).frames.numpy()
    cli = np.frombuffer(done.stdout, np.uint8).reshape(frames.shape)
    np.testing.assert_array_equal(frames, cli)
