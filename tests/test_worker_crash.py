"""A video that crashes the decoder kills its loader worker (a segmentation fault, no Python exception). Training and
evaluation go on: the video is named, skipped like any bad video, and the rest is exactly what a run that met it as
an ordinary unreadable file gives."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from maskvid.config import load_config
from maskvid.data import datasets
from maskvid.data.worker_watch import WorkerWatch, _alive
from maskvid.engine import evaluate as evaluation
from maskvid.engine.checkpoint import load_state
from maskvid.engine.surviving_loader import CRASHED, batches_in_order, surviving_batches
from maskvid.engine.train import train
from maskvid.errors import VideoDecodeError
from maskvid.finetune_recipes import build_finetune_method
from maskvid.recipes import build_dataset, build_method
from test_engine import CONFIG, tiny_overrides
from test_evaluate import _config as finetune_config


def _poison(monkeypatch, victim: str, how: str, opened: str | None = None) -> None:
    """Decoding ``victim`` in a loader worker kills the worker with SIGSEGV (``how="crash"``), as a crash inside
    FFmpeg does, or raises the decoder's ordinary error (``how="error"``); each time, a line is added to the file
    ``opened``."""
    decode = datasets.decode_clip

    def decode_clip(path, *args, **kw):
        if path == victim:
            assert torch.utils.data.get_worker_info() is not None, "the test's own process would die"
            if opened is not None:
                with open(opened, "a") as f:
                    f.write(f"{os.getpid()}\n")
            if how == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            raise VideoDecodeError(path, "unreadable")
        return decode(path, *args, **kw)

    monkeypatch.setattr(datasets, "decode_clip", decode_clip)  # the forked workers inherit it


def _train(synth_motion, out: str, steps: int = 6, resume: bool = False) -> tuple:
    config = load_config(CONFIG, tiny_overrides(synth_motion, out, **{
        "train.num_workers": 2, "train.max_steps": steps, "train.checkpoint_every": 1000}))
    dataset = build_dataset(config)
    torch.manual_seed(0)
    result = train(build_method(config), dataset, config, out, resume=resume)
    return result, load_file(os.path.join(result.checkpoint, "model.safetensors"))


def test_training_skips_a_video_that_kills_its_worker_and_trains_as_if_it_were_unreadable(
        synth_motion, tmp_path, monkeypatch):
    victim = datasets.read_annotation_list(os.path.join(synth_motion, "train.csv"))[0].path
    _poison(monkeypatch, victim, "error")
    unreadable, expected = _train(synth_motion, str(tmp_path / "unreadable"))
    _poison(monkeypatch, victim, "crash")
    crashed, weights = _train(synth_motion, str(tmp_path / "crashed"))
    assert crashed.status == "finished" and crashed.step == 6
    assert set(crashed.bad_videos) == set(unreadable.bad_videos) == {victim}
    assert crashed.bad_videos[victim].startswith(CRASHED) and unreadable.bad_videos[victim] == "unreadable"
    # the loader made again where it stood: the same batches, the crashed video substituted as the unreadable one was
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)

    # stopped after epoch 0 (3 steps of the 6 videos), then resumed: the checkpoint remembers the crash, so the
    # video is not opened again in epoch 1, the report still names it, and the weights are the uninterrupted run's
    split, opened = str(tmp_path / "split"), tmp_path / "opened.txt"
    _poison(monkeypatch, victim, "crash", opened=str(opened))
    first, _ = _train(synth_motion, split, steps=3)
    assert first.bad_videos == {victim: CRASHED}
    reads = opened.read_text()  # one or two: the loader's workers may be reading epoch 1 ahead when it stops
    saved = load_state(first.checkpoint)["bad_videos"]
    assert saved == {"skipped": {victim: CRASHED}, "crashed": {victim: CRASHED}, "bad_attempts": 1, "good": 6}
    resumed, resumed_weights = _train(synth_motion, split, resume=True)
    assert resumed.step == 6 and resumed.bad_videos == {victim: CRASHED}
    assert opened.read_text() == reads  # not opened again after the resume
    assert load_state(resumed.checkpoint)["bad_videos"] == load_state(crashed.checkpoint)["bad_videos"]
    assert all(torch.equal(resumed_weights[k], expected[k]) for k in expected)


def test_evaluation_skips_a_video_that_kills_its_worker(synth_motion, monkeypatch):
    config = finetune_config(synth_motion, "videomae_micro.yaml")
    torch.manual_seed(0)
    method = build_finetune_method(config, 3)
    dataset = build_dataset(config, "val")
    victim = dataset.records[1].path
    reports = {}
    for how in ("error", "crash"):
        _poison(monkeypatch, victim, how)
        dataset.watch = WorkerWatch()
        report = evaluation.evaluate(method, dataset, num_classes=3, batch_size=1, num_workers=2)
        reports[how] = {k: v for k, v in report.items() if k not in ("seconds", "clips_per_s")}
    assert reports["crash"]["bad_videos"][victim].startswith(CRASHED)
    assert reports["crash"]["videos"] == len(dataset) - 1
    reports["crash"]["bad_videos"][victim] = "unreadable"
    assert reports["crash"] == reports["error"]  # every other video scored once, as without the crash


class _Numbers(torch.utils.data.Dataset):
    """Samples 0..n-1 (``records`` name them), -1 for a video known to have killed a worker; ``victim`` kills the
    worker reading it, or, with ``between``, the worker dies right after making it, when it reads no video."""

    def __init__(self, n: int, victim: int, between: bool = False):
        self.records = [datasets.VideoRecord(f"video{i}.mp4", 0) for i in range(n)]
        self.victim, self.between, self.watch = victim, between, WorkerWatch()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> int:
        try:
            with self.watch.reading(self.records[index].path, index):
                if index == self.victim and not self.between:
                    os.kill(os.getpid(), signal.SIGKILL)
        except VideoDecodeError:
            return -1
        if index == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return index


def test_batches_in_order_go_on_after_the_victim_and_lose_nothing_else():
    dataset = _Numbers(20, victim=7)
    seen = [i for batch in batches_in_order(dataset, 3, num_workers=2) for i in batch.tolist()]
    assert seen == [*range(7), -1, *range(8, 20)]  # each sample once, in order; the batch with the victim made again
    assert dataset.watch.crashed == {"video7.mp4": CRASHED}


def test_a_worker_dying_between_videos_is_the_loaders_error_as_before():
    dataset = _Numbers(12, victim=4, between=True)
    # the loader's own error: that the worker died, or that a batch it made just before could not be fetched
    with pytest.raises((RuntimeError, OSError, EOFError)):
        for _ in batches_in_order(dataset, 2, num_workers=2):
            pass
    assert dataset.watch.crashed == {}


def test_without_workers_the_loader_is_used_as_it_is():
    dataset = _Numbers(5, victim=-1)
    assert [b.tolist() for b in surviving_batches(dataset, lambda taken: [torch.tensor([taken])], 0)] == [[0]]


def test_a_dead_child_not_yet_reaped_is_not_alive():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:  # until the child has exited: a zombie until reaped
            time.sleep(0.001)
        assert not _alive(pid)
    finally:
        os.waitpid(pid, 0)
    assert _alive(os.getpid())


def test_died_waits_for_a_worker_that_is_still_dying():
    """The loader's error can come before the worker is gone (its socket closed first): ``died(wait)`` looks again."""
    watch = WorkerWatch()
    watch.arm(1)
    pid = os.fork()
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    try:
        watch.table[0] = torch.tensor([pid, 5])  # reading record 5
        assert watch.died() == []  # still running
        assert watch.died(wait=30) == [5]
    finally:
        os.waitpid(pid, 0)
