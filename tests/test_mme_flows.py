"""MME's flows: the flow cache and ``maskvid extract flows`` (shards, resume, bad videos), the flow fields cut with the
clip, the HOF/MBH and dense-HOG alternatives to the trajectory target, and local RAFT weights."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from conftest import moving_square_frames
from maskvid import targets
from maskvid.config import load_config
from maskvid.data import ClipTransform, VideoDataset
from maskvid.data.annotations import VideoRecord
from maskvid.data.flow_cache import FlowCache
from maskvid.errors import ConfigError, InputError
from maskvid.extract import extract_flows, shard_of
from maskvid.motion.flow import FlowEstimator
from maskvid.motion.flow_fields import FlowFieldSpec, clip_flow_fields
from maskvid.motion.hog_cells import DenseHOGSpec, clip_dense_hog
from maskvid.motion.trajectory_features import TrajectorySpec
from maskvid.recipes import build_dataset, build_method, pretrain
from test_mme import CONFIG, square_frames


def test_cached_flows_give_the_same_trajectories_and_bad_entries_are_rebuilt(moving_square, tmp_path, caplog):
    spec = TrajectorySpec(k=4, length=6, camera="klt")
    cache = FlowCache(str(tmp_path / "cache"), spec)
    common = {"transform": ClipTransform(size=96, crop="multiscale", flip=True), "num_frames": 4, "stride": 3,
              "patch": (2, 16, 16), "trajectories": spec}
    online = VideoDataset([VideoRecord(moving_square, 0)], **common)
    cached = VideoDataset([VideoRecord(moving_square, 0)], cache=cache, **common)
    for epoch in range(2):  # different clips, crops and flips
        online.set_epoch(epoch), cached.set_epoch(epoch)
        a, b = online[0], cached[0]
        assert torch.equal(a["video"], b["video"])
        torch.testing.assert_close(a["trajectory"], b["trajectory"], atol=1e-5, rtol=0)
        assert torch.equal(a["trajectory_valid"], b["trajectory_valid"])
    assert cache.check(moving_square) is None and not cache.problems
    # a changed source file (mtime) makes the entry stale; a truncated flows.npy makes it corrupted
    stat = os.stat(moving_square)
    os.utime(moving_square, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert "stale" in cache.check(moving_square)
        cached[0]
        assert cache.check(moving_square) is None and "mtime_ns" in cache.problems[-1][1]
    finally:
        os.utime(moving_square, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cached[0]  # stale again (mtime back): rebuilt
    flows = os.path.join(cache.entry(moving_square), "flows.npy")
    with open(flows, "r+b") as f:
        f.truncate(1000)
    assert "corrupted" in cache.check(moving_square)
    with caplog.at_level("WARNING", logger="maskvid.data"):
        torch.testing.assert_close(cached[0]["trajectory"], online[0]["trajectory"], atol=1e-5, rtol=0)
    assert "corrupted" in caplog.text and cache.check(moving_square) is None


def test_extract_shards_resume_and_report_bad_videos(moving_square, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{moving_square}\n{bad}\n")
    out = str(tmp_path / "cache")
    first = extract_flows("flow", str(listing), out, shard=(0, 2))
    assert (first["videos"], first["built"], first["bad"]) == (1, 1, [])
    second = extract_flows("flow", str(listing), out, shard=(1, 2))
    assert second["built"] == 0 and second["bad"][0][0] == str(bad)
    again = extract_flows("flow", str(listing), out, shard=(0, 2))
    assert again["already_valid"] == 1 and again["built"] == 0
    assert FlowCache(out, TrajectorySpec(camera=None)).check(moving_square) is None
    assert FlowCache(out, TrajectorySpec(camera="klt")).check(moving_square).startswith("stale")  # other options
    with pytest.raises(ConfigError, match="--shard"):
        shard_of("2/2")


def test_flow_fields_are_cropped_scaled_and_mirrored_with_the_clip():
    frames = square_frames(12)
    sparse = FlowFieldSpec()  # flow stride = the input stride
    pairs = sparse.pairs([0, 3, 6, 9], tubelet=2, stride=3)
    assert pairs == [(0, 3), (3, 6), (6, 9), (9, 12)] and sparse.per_tubelet(2, 3) == 2
    dense = FlowFieldSpec(flow_stride=1, dense=True)
    assert dense.pairs([0, 3], tubelet=2, stride=3)[:3] == [(0, 1), (1, 2), (2, 3)] and dense.per_tubelet(2, 3) == 6
    pairs = sparse.pairs([0, 1], tubelet=2, stride=1)  # 2 px a pair (the 8-px checker aliases larger steps)
    fields = clip_flow_fields(frames, pairs, sparse, (0, 0, 128, 128), False, 128)
    assert fields.shape == (2, 2, 128, 128) and fields.dtype == torch.float16
    inside = fields[:, :, 56:72, 24:40].float()  # ≥ 8 px inside the square
    torch.testing.assert_close(inside.mean((0, 2, 3)), torch.tensor([2.0, 0.0]), atol=0.1, rtol=0)
    assert float(fields[:, :, :32].abs().max()) < 0.1  # the rows above never move
    zoomed = clip_flow_fields(frames, pairs[:1], sparse, (32, 0, 64, 64), False, 128)  # 2× zoom
    torch.testing.assert_close(zoomed[0, :, 48:80, 48:80].float().mean((1, 2)), torch.tensor([4.0, 0.0]),
                               atol=0.2, rtol=0)
    flipped = clip_flow_fields(frames, pairs[:1], sparse, (0, 0, 128, 128), True, 128)
    torch.testing.assert_close(flipped[0, 0].flip(-1), -fields[0, 0])
    torch.testing.assert_close(flipped[0, 1].flip(-1), fields[0, 1])


def test_hof_and_mbh_histograms_by_hand():
    flow = torch.zeros(1, 2, 2, 16, 16)  # (B, F, 2, H, W): one token of one 16² patch, 2 flows
    flow[:, 0, 0] = 1.0  # flow 0 points right: all of HOF's mass in bin 0
    flow[:, 1, 1] = 1.0  # flow 1 points down: angle π/2 → position 9/4 → bins 2 and 3 with 0.75 and 0.25
    hof = targets.build("hof", patch=(2, 16, 16), stride=1)
    values = hof(flow)
    assert values.shape == (1, 1, 18) and hof.dim == 18
    torch.testing.assert_close(values[0, 0, :9], torch.eye(9)[0])
    down = torch.zeros(9)
    down[2], down[3] = 0.75, 0.25
    torch.testing.assert_close(values[0, 0, 9:], down / down.norm())
    mbh = targets.build("mbh", patch=(2, 16, 16), stride=1)
    assert mbh.dim == 36 and float(mbh(flow).abs().max()) == 0.0  # uniform flow: no motion boundary
    ramp = torch.zeros(1, 2, 2, 16, 16)
    ramp[:, :, 0] = torch.arange(16.0)  # the x component grows to the right: MBHx's gradient points at angle 0
    boundaries = mbh(ramp)[0, 0].reshape(2, 2, 9)  # (flows, components, bins)
    torch.testing.assert_close(boundaries[:, 0], torch.eye(9)[0].expand(2, 9))
    assert float(boundaries[:, 1].abs().max()) == 0.0
    raw = targets.build("flow", patch=(2, 8, 8), stride=1)
    assert raw(ramp).shape == (1, 4, 2 * 8 * 8 * 2) and raw.dim == 256
    torch.testing.assert_close(raw(ramp)[0, 1].reshape(2, 8, 8, 2)[0, 0, :, 0], torch.arange(8.0, 16.0))
    with pytest.raises(InputError, match="flow"):
        hof(flow[:, :1])
    with pytest.raises(ConfigError, match="target.flow_stride"):
        targets.build("mbh", patch=(2, 16, 16), stride=3, dense=True, flow_stride=4)


def test_mbh_with_hog_pretrains_from_flows_made_in_the_workers(synth_motion, tmp_path):
    overrides = {"output_dir": str(tmp_path / "run"), "data.train_list": os.path.join(synth_motion, "train.csv"),
                 "data.size": 32, "train.batch_size": 2, "train.num_workers": 0, "train.max_steps": 3,
                 "train.progress": False, "target.name": "mbh", "target.options": "{with_hog: true, dense: true, "
                 "flow_stride: 1}", "train.checkpoint_every": 3}
    config = load_config(CONFIG, [f"{k}={v}" for k, v in overrides.items()])
    method = build_method(config)
    dataset = build_dataset(config, "train", method)
    sample = dataset[0]
    assert dataset.trajectories is None and sample["flow"].shape == (8 // 2 * 4, 2, 32, 32)
    assert method.heads[0].target.dim == 4 * 2 * 9 + 2 * 3 * 9  # 4 flows × (MBHx, MBHy) + HOG of 2 frames × RGB
    assert pretrain(config).step == 3


def test_dense_hog_reads_every_raw_frame_of_a_tubelet_and_equals_the_hog_target_per_frame(moving_square):
    spec = DenseHOGSpec()
    assert spec.spans([0, 3, 6, 9], tubelet=2, stride=3) == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    frames = square_frames(12)
    dense = clip_dense_hog(frames, spec.spans([0, 3, 6, 9], 2, 3), (0, 0, 128, 128), False, 128, 16)
    assert dense.shape == (2 * 64, 6, 9)
    gray = cv2.cvtColor(frames[4], cv2.COLOR_RGB2GRAY)  # frame 4: the first slice's 5th raw frame
    video = torch.from_numpy(np.repeat(gray[None, None], 3, 0)).float() / 255.0
    video = (video - torch.tensor(targets.IMAGENET_MEAN).view(3, 1, 1, 1)) / torch.tensor(
        targets.IMAGENET_STD).view(3, 1, 1, 1)
    reference = targets.build("hog", patch=(1, 16, 16))(video[None]).reshape(64, 3, 9)[:, 0]
    torch.testing.assert_close(dense[:64, 4], reference, atol=2e-3, rtol=0)
    target = targets.build("dense_hog", patch=(2, 16, 16), stride=3)
    assert target.dim == 54 and target(dense[None]).shape == (1, 128, 54)
    dataset = VideoDataset([VideoRecord(moving_square, 0)], transform=ClipTransform(size=64, crop="none", flip=False),
                           num_frames=4, stride=3, patch=(2, 16, 16), dense_hog=spec)
    assert dataset[0]["dense_hog"].shape == (2 * 16, 6, 9)


def test_raft_flow_loads_local_weights_only_and_pads_to_its_stride(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models.optical_flow import raft_small

    from maskvid.errors import CheckpointError

    torch.manual_seed(0)
    reference = raft_small(weights=None).eval()  # random weights in torchvision's published key layout
    pth, safetensors = tmp_path / "raft_small.pth", tmp_path / "raft_small.safetensors"
    torch.save(reference.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(safetensors))
    frames = np.stack(moving_square_frames(n=2, size=124))  # not a multiple of RAFT's 8
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    ours = FlowEstimator("raft_small", bound=None, raft_weights=str(safetensors))(*gray)
    again = FlowEstimator("raft_small", bound=None, raft_weights=str(pth))(*gray)
    assert ours.shape == (124, 124, 2) and np.array_equal(ours, again)
    padded = [torch.nn.functional.pad(torch.from_numpy(g).float()[None, None].expand(1, 3, 124, 124) / 127.5 - 1,
                                      (0, 4, 0, 4), mode="replicate") for g in gray]
    with torch.no_grad():
        expected = reference(*padded, num_flow_updates=12)[-1][0, :, :124, :124].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    with pytest.raises(ConfigError, match="target.raft_weights"):
        targets.build("trajectory", flow="raft_small")  # no weights: nothing is downloaded
    with pytest.raises(ConfigError, match="target.raft_weights"):
        TrajectorySpec(method="raft_large", raft_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match="not raft_large weights — missing context_encoder"):
        FlowEstimator("raft_large", raft_weights=str(pth))  # small weights for the large model
