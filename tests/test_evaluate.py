"""Multi-view evaluation and the kNN monitor as a GPU runs them: uint8 clips normalized on the device, a masked
view's order made on the host, each batch read back once the next is queued — and the same results, to the bit, as
the plain way."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from maskvid.config import FinetuneConfig, load_config
from maskvid.engine import evaluate as evaluation
from maskvid.engine.knn import KNNMonitor
from maskvid.finetune_recipes import build_finetune_method
from maskvid.recipes import build_dataset, build_knn_monitor, build_method

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "finetune")
TIMING = ("seconds", "clips_per_s")


def _config(synth_motion: str, name: str, **extra) -> FinetuneConfig:
    values = {"init": "null", "data.train_list": os.path.join(synth_motion, "train.csv"),
              "data.val_list": os.path.join(synth_motion, "val.csv"),
              "data.classes": os.path.join(synth_motion, "classes.txt"), "data.num_frames": 4,
              "data.size": 32, "data.test_views": "[2, 2]", "model.patch": "[2, 8, 8]", "train.num_workers": 0, **extra}
    return load_config(os.path.join(CONFIGS, name), [f"{k}={v}" for k, v in values.items()], kind=FinetuneConfig)


def _report(method, dataset, **options) -> dict:
    report = evaluation.evaluate(method, dataset, num_classes=3, batch_size=2, **options)
    return {k: v for k, v in report.items() if k not in TIMING}


@pytest.mark.parametrize("name", ["videomae_micro.yaml", "mar_micro.yaml"])
def test_uint8_views_normalized_on_the_device_give_the_float_report_to_the_bit(synth_motion, name):
    config = _config(synth_motion, name)
    torch.manual_seed(0)
    method = build_finetune_method(config, 3)
    on_device = build_dataset(config, "val", normalize_on_device=True)
    assert on_device[0]["video"].dtype == torch.uint8
    plain = build_dataset(config, "val")
    assert plain[0]["video"].dtype == torch.float32
    probs = []
    predict = method.predict
    method.predict = lambda *args, **kw: probs.append(predict(*args, **kw)) or probs[-1]
    assert _report(method, on_device) == _report(method, plain)
    half = len(probs) // 2
    assert all(torch.equal(a, b) for a, b in zip(probs[:half], probs[half:], strict=True))


def test_a_masked_view_is_ordered_on_the_host_with_the_result_of_ordering_it_in_predict(synth_motion):
    config = _config(synth_motion, "mar_micro.yaml")
    torch.manual_seed(0)
    method = build_finetune_method(config, 3)
    dataset = build_dataset(config, "val", normalize_on_device=True)
    orders, predict = [], method.predict

    def recording(video, mask, mask_order=None):
        orders.append(mask_order)
        return predict(video, mask, mask_order=mask_order)

    method.predict = recording
    with_order = _report(method, dataset)
    assert orders and all(o is not None for o in orders)
    method.predict = lambda video, mask, mask_order=None: predict(video, mask)
    assert _report(method, dataset) == with_order


def test_each_batch_is_read_back_after_the_next_one_is_queued(synth_motion, monkeypatch):
    """On a GPU, reading a batch's probabilities waits for it; queuing the next batch first keeps the device busy."""
    config = _config(synth_motion, "videomae_micro.yaml")
    method = build_finetune_method(config, 3)
    dataset = build_dataset(config, "val", normalize_on_device=True)
    events, predict, add = [], method.predict, evaluation._Tally.add
    method.predict = lambda *a, **kw: events.append("predict") or predict(*a, **kw)
    monkeypatch.setattr(evaluation._Tally, "add", lambda self, *a: events.append("read") or add(self, *a))
    report = evaluation.evaluate(method, dataset, num_classes=3, batch_size=1)
    assert report["videos"] == len(dataset) >= 3
    assert events == ["predict"] + ["predict", "read"] * (len(dataset) - 1) + ["read"]


def test_the_knn_monitor_normalizes_uint8_clips_on_the_device_with_the_float_result(synth_motion, tmp_path):
    """Its sets leave clips uint8 (as ``build_knn_monitor`` makes them); the features, and so the vote, are those of
    clips normalized in the workers, to the bit."""
    pretrain = os.path.join(CONFIGS, "..", "pretrain", "videomae_micro.yaml")
    lists = {"data.knn_train_list": os.path.join(synth_motion, "train.csv"),
             "data.knn_val_list": os.path.join(synth_motion, "val.csv")}
    config = load_config(pretrain, [f"{k}={v}" for k, v in {
        "data.train_list": lists["data.knn_train_list"], "data.num_frames": 4, "data.size": 32,
        "model.patch": "[2, 8, 8]", "train.num_workers": 0, "train.batch_size": 2, "output_dir": tmp_path,
        **lists}.items()])
    torch.manual_seed(0)
    method = build_method(config)
    monitor = build_knn_monitor(config, method)
    assert monitor.sets[0][0]["video"].dtype == torch.uint8
    floats = [dataclasses.replace(s, transform=dataclasses.replace(s.transform, normalize=True)) for s in monitor.sets]
    plain = KNNMonitor(*floats, num_classes=monitor.num_classes, batch_size=2, k=monitor.k)
    device = torch.device("cpu")
    for uint8_set, float_set in zip(monitor.sets, floats, strict=True):
        ours, theirs = monitor._embed(method, uint8_set, device), plain._embed(method, float_set, device)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert monitor(method, device) == plain(method, device)


def test_a_predict_without_mask_order_still_gets_masked_views(synth_motion):
    """A method written to the older protocol, ``predict(video, mask)``, is not handed the order it cannot take."""
    config = _config(synth_motion, "mar_micro.yaml")
    torch.manual_seed(0)
    method = build_finetune_method(config, 3)
    dataset = build_dataset(config, "val", normalize_on_device=True)

    class OlderProtocol(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.masks = method, []

        def predict(self, video, mask):
            self.masks.append(mask)
            return self.inner.predict(video, mask)

    older = OlderProtocol()
    assert _report(older, dataset) == _report(method, dataset)
    assert older.masks and all(m is not None for m in older.masks)


def test_a_knn_set_without_one_readable_video_gives_no_figures_rather_than_ending_the_run(synth_motion, tmp_path):
    from maskvid.data import VideoDataset, VideoRecord

    config = _config(synth_motion, "videomae_micro.yaml")
    method = build_finetune_method(config, 3)
    bad = VideoDataset([VideoRecord(str(tmp_path / "missing.mp4"), 0)], bad_videos="skip")
    good = build_dataset(config, "val")
    method.features = lambda batch, device: batch["video"].flatten(1)  # any features: the vote is not reached
    for sets in ((bad, good), (good, bad)):
        figures = KNNMonitor(*sets, num_classes=3, batch_size=2)(method, "cpu")
        assert set(figures) == {"knn_top1", "knn_top5"} and all(v != v for v in figures.values())  # NaN
