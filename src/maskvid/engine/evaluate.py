"""Multi-view evaluation: every video seen as temporal clips × spatial crops, softmax averaged per video, then
top-1 / top-5, per-class accuracy and the confusion matrix (VideoMAE's protocol: 5×3 on K400, 2×3 on SSv2)."""

from __future__ import annotations

import json
import os
import time

import torch

from maskvid.data import BadVideoLog, collate
from maskvid.engine.copy_stream import CopyStream
from maskvid.engine.distributed import Dist, bad_videos_across_ranks, sum_across_ranks
from maskvid.engine.surviving_loader import batches_in_order
from maskvid.models.tokens import MaskOrder
from maskvid.registry import takes_keyword


@torch.no_grad()
def evaluate(method, dataset, num_classes: int, batch_size: int = 4, num_workers: int = 0,
             device: torch.device | str = "cpu", label_map: dict[int, int] | None = None,
             info: Dist | None = None) -> dict:
    """``method.predict(video, mask) -> probabilities`` over ``dataset`` (multi-view samples, labelled); with a
    mask, a ``predict`` that takes ``mask_order=`` is also given the mask's :class:`~maskvid.models.MaskOrder`.

    label_map: dataset label → model class (domain adaptation: evaluate on B's classes that A knows); videos whose
    label is not in the map are left out.

    info: under torchrun, every rank calls it and scores every world-th video; the tallies and bad videos are
    summed over the ranks, so each returns the one-process report.

    On a GPU nothing waits: clips a dataset leaves uint8 are normalized on the device (``dataset.on_device``),
    pinned batches are copied on a side stream while the batch before is computed (:mod:`.copy_stream`), a masked
    view's order is made on the host, and each batch's probabilities are read back only once the next batch is
    queued.
    """
    device, info = torch.device(device), info or Dist()
    was_training = method.training
    method.eval().to(device)
    share = range(info.rank, len(dataset), info.world)
    batches = batches_in_order(dataset, batch_size, num_workers, share, collate_fn=collate,
                               pin_memory=device.type == "cuda")
    tally, copies = _Tally(num_classes, label_map), CopyStream(device)
    takes_order = takes_keyword(method.predict, "mask_order")
    views, bad, pending = 0, BadVideoLog(max_fraction=1.0), None
    start = time.perf_counter()
    for batch in batches:
        bad.update(batch)
        if "video" not in batch:
            continue  # every video of this batch was bad (the dataset skips, never substitutes, here)
        b, v = batch["video"].shape[:2]  # (B, V, C, T, H, W)
        with copies.queue():  # on CUDA a side stream: the copy overlaps the batch before it
            on_device = _views_on(dataset, batch, device)
        video, mask, order = copies.hand_over(on_device)
        probs = method.predict(video, mask, mask_order=order) if order is not None and takes_order \
            else method.predict(video, mask)
        probs = probs.view(b, v, -1).mean(1)  # (B, classes)
        if pending is not None:
            tally.add(*pending)
        pending = (probs, batch["label"])
        views += b * v
    if pending is not None:
        tally.add(*pending)
    seconds = time.perf_counter() - start
    method.train(was_training)
    counts = sum_across_ranks(torch.tensor([tally.top5_hits, tally.videos, views]), info).tolist()
    report = summarize(sum_across_ranks(tally.confusion, info), *counts, seconds,
                       bad_videos_across_ranks(dict(bad.bad), info))
    return {**report, "ranks": info.world}  # how many processes shared the videos


def _views_on(dataset, batch: dict, device: torch.device) -> tuple:
    """``(video, mask, mask_order)`` of a multi-view batch, views flattened into the batch, on ``device``; the
    mask's order made here on the host."""
    if hasattr(dataset, "on_device"):
        batch = dataset.on_device(batch, device)
    video = batch["video"].to(device, non_blocking=True).flatten(0, 1)  # (B·V, C, T, H, W)
    if "mask" not in batch:
        return video, None, None
    mask = batch["mask"].flatten(0, 1)  # (B·V, N)
    return video, mask.to(device, non_blocking=True), MaskOrder.of(mask).to(device, non_blocking=True)


class _Tally:
    """Top-5 hits and the confusion matrix of the videos seen so far."""

    def __init__(self, num_classes: int, label_map: dict[int, int] | None):
        self.num_classes, self.label_map = num_classes, label_map
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.top5_hits = self.videos = 0

    def add(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        probs = probs.cpu()  # (B, classes): the one read of a batch, made once the next batch is queued
        if self.label_map is not None:
            keep = torch.tensor([int(y) in self.label_map for y in labels], dtype=torch.bool)
            probs, labels = probs[keep], torch.tensor([self.label_map[int(y)] for y in labels[keep]],
                                                      dtype=torch.long)
        top5 = probs.topk(min(5, self.num_classes), dim=-1).indices
        self.top5_hits += int((top5 == labels[:, None]).any(1).sum())
        self.confusion.index_put_((labels, probs.argmax(-1)), torch.ones(len(labels), dtype=torch.long),
                                  accumulate=True)
        self.videos += len(labels)


def summarize(confusion: torch.Tensor, top5_hits: int, videos: int, views: int, seconds: float,
              bad: dict[str, str]) -> dict:
    per_class_total = confusion.sum(1)
    per_class = torch.where(per_class_total > 0, confusion.diag() / per_class_total.clamp(min=1),
                            torch.full_like(per_class_total, float("nan"), dtype=torch.float))
    return {
        "top1": float(confusion.diag().sum()) / max(videos, 1),
        "top5": top5_hits / max(videos, 1),
        "videos": videos,
        "views_per_video": views // max(videos, 1) if videos else 0,
        "per_class": [None if v != v else float(v) for v in per_class.tolist()],
        "confusion": confusion.tolist(),
        "clips_per_s": views / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "bad_videos": bad,  # path -> why it was skipped
    }


def write_report(report: dict, out_dir: str, class_names: list[str] | None = None) -> dict:
    """Write ``eval.json`` and ``confusion.png`` (the picture's path joins the report) into ``out_dir``."""
    from maskvid.viz import draw_confusion

    os.makedirs(out_dir, exist_ok=True)
    report["confusion_png"] = draw_confusion(report["confusion"], class_names, os.path.join(out_dir, "confusion.png"),
                                             title=f"top-1 {report['top1']:.3f}")
    with open(os.path.join(out_dir, "eval.json"), "w") as f:
        json.dump(report, f)
    return report
