"""A corpus of broken files: each raises VideoDecodeError naming it; a dataset skips, counts and reports them."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import moving_square_frames
from maskvid.data import BadVideoLog, ClipTransform, VideoDataset, VideoRecord, collate, decode_clip, probe_video
from maskvid.errors import DataError, VideoDecodeError
from maskvid.synth import write_video
from video_corpus import encode, sequential


def _audio_only(path: str) -> None:
    with av.open(path, "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _no_frames(path: str) -> None:
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    good = moving_square_frames(n=24, size=64)
    paths = {}

    def make(name: str) -> str:
        paths[name] = str(root / name)
        return paths[name]

    open(make("zero_bytes.mp4"), "wb").close()
    write_video(make("good_source.mp4"), good)
    data = Path(paths["good_source.mp4"]).read_bytes()
    with open(make("truncated.mp4"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(make("not_a_video.mp4"), "w") as f:
        f.write("this is a text file, not a video\n" * 50)
    _audio_only(make("audio_only.m4a"))
    _no_frames(make("zero_frames.mp4"))
    write_video(make("one_frame.mp4"), good[:1])
    os.makedirs(make("a_directory.mp4"))
    paths["missing.mp4"] = str(root / "missing.mp4")
    del paths["good_source.mp4"]
    return paths


def test_every_broken_file_raises_a_named_decode_error(corpus):
    for name, path in corpus.items():
        with pytest.raises(VideoDecodeError) as probe_error:
            probe_video(path)
        with pytest.raises(VideoDecodeError) as decode_error:
            decode_clip(path, [0, 1])
        for err in (probe_error.value, decode_error.value):
            assert err.path == path and path in str(err), name
            assert err.reason, name


def test_truncated_file_mid_stream_is_reported(tmp_path):
    """A file whose index survives but whose tail is gone (moov first) fails on the missing frames only."""
    path = str(tmp_path / "faststart.mp4")
    write_video(path, moving_square_frames(n=40, size=64), options={"movflags": "+faststart"})
    data = Path(path).read_bytes()
    cut = str(tmp_path / "cut.mp4")
    with open(cut, "wb") as f:
        f.write(data[: int(len(data) * 0.6)])
    try:
        n = probe_video(cut).frames
    except VideoDecodeError:
        return  # also acceptable: the container refuses the file outright
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        decode_clip(cut, [n - 1])


def test_out_of_range_index_names_the_file(moving_square):
    with pytest.raises(VideoDecodeError, match="out of range"):
        decode_clip(moving_square, [0, 48])


def _dataset(records, **kw) -> VideoDataset:
    return VideoDataset(records, ClipTransform(size=32, crop="centre", flip=False), num_frames=4, stride=2, **kw)


def test_dataset_yields_only_good_samples_and_reports_each_bad_path_once(corpus, tmp_path):
    good = []
    for i in range(4):
        good.append(str(tmp_path / f"good{i}.mp4"))
        write_video(good[-1], moving_square_frames(n=16, size=64))
    records = [VideoRecord(p, 1) for p in good] + [VideoRecord(p, 0) for p in corpus.values()]
    dataset = _dataset(records, max_retries=30)
    log = BadVideoLog(max_fraction=1.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate)
    for _ in range(2):  # two epochs: bad files are met again but reported once
        for batch in loader:
            log.update(batch)
            assert set(batch["path"]) <= set(good)
            assert (batch["label"] == 1).all()
    assert set(log.bad) == set(corpus.values())
    lines = log.report().splitlines()
    for path in corpus.values():
        assert sum(line.strip().startswith(f"{path}: ") for line in lines) == 1


def test_too_many_bad_videos_stop_the_run(corpus, tmp_path):
    good = str(tmp_path / "good.mp4")
    write_video(good, moving_square_frames(n=16, size=64))
    records = [VideoRecord(good, 0)] + [VideoRecord(p, 0) for p in corpus.values()]
    log = BadVideoLog(max_fraction=0.2, min_attempts=5)
    dataset = _dataset(records, max_retries=50)
    with pytest.raises(DataError, match="max_bad_fraction"):
        for i in range(len(dataset)):
            log.update(collate([dataset[i]]))


def test_a_dataset_of_only_bad_videos_gives_up_with_the_list(corpus):
    dataset = _dataset([VideoRecord(p, 0) for p in corpus.values()], max_retries=3)
    with pytest.raises(DataError, match="bad videos in a row"):
        dataset[0]


def _damage(src: str, dst: str, packet: int) -> None:
    """Copy ``src`` with one packet's payload (past its first 8 bytes, so its headers stay) replaced by noise."""
    with av.open(src) as container:
        stream = container.streams.video[0]
        where = [(p.pos, p.size) for p in container.demux(stream) if p.size][packet]
    data = bytearray(Path(src).read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, where[1] - 8, np.uint8)
    data[where[0] + 8 : where[0] + where[1]] = noise.tobytes()
    Path(dst).write_bytes(bytes(data))


def _frames_before_the_error(path: str) -> np.ndarray:
    """What a sequential PyAV decode gives before it stops at the damaged packet."""
    frames = []
    with av.open(path) as container:
        try:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.InvalidDataError:
            pass
    return np.stack(frames)


@pytest.mark.parametrize("name", ["damaged.mp4", "damaged.avi"])
def test_a_packet_the_decoder_rejects_fails_only_the_clips_through_it(tmp_path, name):
    """Before the damage clips are exact; a clip whose decoding passes through the rejected packet raises a
    VideoDecodeError naming the file and the frame; in the MP4 a clip after the next keyframe is the original's."""
    original = encode(str(tmp_path / f"original{Path(name).suffix}"), options={"g": "24", "bf": "0"})
    damaged = str(tmp_path / name)
    _damage(original, damaged, packet=30)  # a P-frame of the second GOP (keyframes at 0, 24, 48, 72, 96)
    before = _frames_before_the_error(damaged)
    assert 24 <= len(before) <= 30, "the damage did not stop a sequential decode where expected"
    np.testing.assert_array_equal(decode_clip(damaged, [0, 10, 20, 29]).frames.numpy(), before[[0, 10, 20, 29]])
    with pytest.raises(VideoDecodeError, match=rf"{name}: damaged data: .*packet 30 \((after )?frame (30|29)\)"):
        decode_clip(damaged, [26, 34])
    if name.endswith(".mp4"):  # frames are addressed by timestamps: after the damage they keep their places
        reference = sequential(original)[0]
        np.testing.assert_array_equal(decode_clip(damaged, [50, 60, 70]).frames.numpy(), reference[[50, 60, 70]])


def test_evaluation_leaves_bad_videos_out_instead_of_scoring_another_in_their_place(corpus, tmp_path):
    """A training set may replace a bad video by another; an evaluation set must not: the replacement would be
    scored twice, once under the bad video's place in the list. ``bad_videos="skip"`` leaves the sample out."""
    from maskvid.engine.evaluate import evaluate

    good = []
    for i in range(3):
        good.append(str(tmp_path / f"eval{i}.mp4"))
        write_video(good[-1], moving_square_frames(n=16, size=64))
    bad = [corpus["truncated.mp4"], corpus["not_a_video.mp4"], corpus["missing.mp4"]]
    records = [VideoRecord(good[0], 0), VideoRecord(good[1], 0), VideoRecord(bad[0], 1), VideoRecord(bad[1], 1),
               VideoRecord(bad[2], 1), VideoRecord(good[2], 0)]  # in batches of 2, the second is all bad
    dataset = VideoDataset(records, ClipTransform(size=32, crop="centre", flip=False), num_frames=4, stride=2,
                           sampling="multiview", views=(2, 1), bad_videos="skip")

    class AlwaysClassZero(torch.nn.Module):
        def predict(self, video, mask):
            return torch.tensor([[1.0, 0.0]]).expand(len(video), 2)

    report = evaluate(AlwaysClassZero(), dataset, num_classes=2, batch_size=2)
    assert report["videos"] == 3 and report["top1"] == 1.0  # the three good videos, each once, all class 0
    assert set(report["bad_videos"]) == set(bad)
    only_bad = collate([dataset[2], dataset[3]])
    assert set(only_bad) == {"skipped"} and len(only_bad["skipped"]) == 2
    substituting = VideoDataset(records, dataset.transform, num_frames=4, stride=2, sampling="multiview",
                                views=(2, 1))
    assert substituting[2]["path"] in good  # what training does: another video in the bad one's place


def test_bad_videos_mode_is_checked():
    from maskvid.errors import ConfigError

    with pytest.raises(ConfigError, match="data.bad_videos"):
        VideoDataset([], bad_videos="ignore")
