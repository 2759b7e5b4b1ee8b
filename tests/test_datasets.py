"""VideoDataset over the synthetic benchmark: sampling modes, repeats, segments, determinism, loaders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import moving_square_frames
from maskvid.data import ClipTransform, VideoDataset, VideoRecord, collate
from maskvid.data.datasets import folder_or_list
from maskvid.errors import ConfigError
from maskvid.synth import write_video


def make(synth_motion, **kw) -> VideoDataset:
    kw.setdefault("transform", ClipTransform(size=32, crop="multiscale", flip=False))
    return VideoDataset.from_list(
        os.path.join(synth_motion, "train.csv"),
        classes=os.path.join(synth_motion, "classes.txt"),
        num_frames=8,
        stride=2,
        **kw,
    )


def test_dense_sample_dict(synth_motion):
    sample = make(synth_motion, motion_vectors=True)[4]
    assert sample["video"].shape == (3, 8, 32, 32)
    assert sample["motion"].shape == (8, 8, 8, 2) and sample["motion_valid"].shape == (8,)
    assert sample["label"] == 1 and sample["index"] == 4 and sample["skipped"] == []


def test_same_seed_epoch_index_same_clip_and_epochs_differ(synth_motion):
    a, b = make(synth_motion), make(synth_motion)
    assert torch.equal(a[2]["video"], b[2]["video"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["video"], b[2]["video"])


def test_repeated_augmentation_decodes_once_and_flattens(synth_motion):
    dataset = make(synth_motion, num_repeats=3)
    item = dataset[0]
    assert isinstance(item, list) and len(item) == 3
    assert not torch.equal(item[0]["video"], item[1]["video"])
    batch = collate([item, dataset[1]])
    assert batch["video"].shape[0] == 6 and batch["label"].tolist() == [0, 0, 0, 1, 1, 1]


def test_multiview_and_pair_sampling(synth_motion):
    views = make(synth_motion, sampling="multiview", views=(2, 3), transform=ClipTransform(size=32, crop="centre"))
    assert views[0]["video"].shape == (6, 3, 8, 32, 32)
    pair = make(synth_motion, sampling="pair", pair_distance=4)[0]
    assert pair["video"].shape == pair["video2"].shape == (3, 8, 32, 32)


def test_segment_records_stay_inside_their_range(synth_motion):
    path = os.path.join(synth_motion, "videos", "train_00000.mp4")
    dataset = VideoDataset(
        [VideoRecord(path, 0, start=10, num_frames=6)],
        num_frames=8,
        stride=1,
        transform=ClipTransform(size=32, crop="none"),
    )
    from maskvid.data import decode_clip

    expected = decode_clip(path, [10, 11, 12, 13, 14, 15, 15, 15]).frames
    got = dataset[0]["video"]
    reference, _ = ClipTransform(size=32, crop="none")(expected, torch.Generator().manual_seed(0))
    assert got.shape == reference.shape
    # frames 6 and 7 repeat the segment's last frame (short-video padding)
    assert torch.equal(got[:, 5], got[:, 7]) and torch.equal(got[:, 6], got[:, 7])


def test_parallel_loader_matches_serial(synth_motion):
    dataset = make(synth_motion)
    serial = collate([dataset[i] for i in range(len(dataset))])
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), num_workers=2, collate_fn=collate)
    parallel = next(iter(loader))
    assert torch.equal(serial["video"], parallel["video"])


def test_folder_tree_and_config_errors(tmp_path, synth_motion):
    (tmp_path / "right").mkdir()
    os.symlink(os.path.join(synth_motion, "videos", "train_00000.mp4"), tmp_path / "right" / "a.mp4")
    dataset = folder_or_list(str(tmp_path), num_frames=4, transform=ClipTransform(size=32))
    assert dataset[0]["video"].shape == (3, 4, 32, 32)
    with pytest.raises(ConfigError, match="data.sampling"):
        make(synth_motion, sampling="sparse")
    with pytest.raises(ConfigError, match="data.num_frames"):
        VideoDataset([VideoRecord("x.mp4")], num_frames=0)


FORK_AFTER_DECODING = """
import gc, sys, torch
from maskvid.data import VideoDataset, VideoRecord, ClipTransform, collate, decode_clip, probe_video
paths = sys.argv[1:]
gc.collect()
gc.disable()  # keep the decoded frames' reference cycles alive: the forked workers inherit them
for path in paths:
    probe_video(path, check_motion_vectors=True)
    decode_clip(path, list(range(0, 16, 2)), size=48, motion_vectors=True, threads=0)  # FFmpeg's own threads
dataset = VideoDataset([VideoRecord(p, 0) for p in paths], ClipTransform(size=32, crop="centre", flip=False),
                       num_frames=4, stride=2, motion_vectors=True)
def collect_inherited_garbage(worker_id):
    gc.enable()
    gc.collect()
loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate,
                                     worker_init_fn=collect_inherited_garbage)
print(sum(len(batch["label"]) for batch in loader))
"""


def test_a_loader_forked_after_decoding_with_vectors_does_not_hang(tmp_path):
    """Regression: frames decoded in the main process (with vectors, FFmpeg's threads) and freed by a forked
    worker's garbage collector made the worker wait forever on scaler threads that exist only in the parent."""
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"v{i}.mp4"))
        write_video(paths[-1], moving_square_frames(n=16, size=64))
    try:
        done = subprocess.run([sys.executable, "-c", FORK_AFTER_DECODING, *paths], capture_output=True, text=True,
                              timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the 2-worker loader hung after the main process decoded with motion vectors")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "4"
