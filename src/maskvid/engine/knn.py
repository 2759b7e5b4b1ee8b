"""A kNN monitor of representation quality during pretraining (VIMPAC's UCF101 monitor, after InstDisc / MoCo's
demo): every ``train.knn_every`` steps the encoder embeds a labelled bank and a labelled query set, and each query
is classified by the weighted vote of its k nearest bank clips (cosine similarity, weights ``exp(s / t)``; k = 200,
t = 0.07 as the official code). It runs in eval mode and changes nothing it does not restore; under torchrun the
ranks share the embedding (each takes every world-th clip) and all get the figures.

    monitor = KNNMonitor(bank_set, query_set, num_classes=10)
    monitor(method, device)   # {"knn_top1": 0.41, "knn_top5": 0.87}; method.features(batch, device) -> (B, D)
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from maskvid.data.datasets import collate
from maskvid.engine.distributed import Dist, gather_rows
from maskvid.engine.interrupt import ignore_stop_signals
from maskvid.engine.surviving_loader import batches_in_order

log = logging.getLogger(__name__)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, query_labels: torch.Tensor,
                 num_classes: int, k: int = 200, temperature: float = 0.07) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of the weighted kNN vote; features ``(N, D)`` / ``(M, D)`` (normalized here), on
    the features' device."""
    bank, queries = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    bank_labels, query_labels = bank_labels.to(bank.device), query_labels.to(bank.device)
    similarity = queries @ bank.T  # (M, N)
    weights, nearest = similarity.topk(min(k, bank.shape[0]), dim=1)  # (M, k)
    votes = torch.zeros(queries.shape[0], num_classes, device=bank.device).scatter_add_(1, bank_labels[nearest],
                                                                    (weights / temperature).exp())
    ranked = votes.argsort(1, descending=True)
    top1 = (ranked[:, 0] == query_labels).float().mean()
    top5 = (ranked[:, : min(5, num_classes)] == query_labels[:, None]).any(1).float().mean()
    return float(top1), float(top5)


class KNNMonitor:
    """The kNN accuracy of ``method.features`` on ``query_set`` against ``bank_set`` (both labelled)."""

    def __init__(self, bank_set, query_set, num_classes: int, batch_size: int = 16, num_workers: int = 0,
                 k: int = 200, temperature: float = 0.07):
        self.sets, self.num_classes = (bank_set, query_set), num_classes
        self.batch_size, self.num_workers, self.k, self.temperature = batch_size, num_workers, k, temperature

    @torch.no_grad()
    def __call__(self, method: torch.nn.Module, device: torch.device | str, info: Dist | None = None) -> dict:
        """The figures; under torchrun (``info``) every rank calls it and embeds every world-th clip of both sets,
        the features are gathered, and each rank returns the one-process figures."""
        device, info = torch.device(device), info or Dist()
        was_training = method.training
        method.eval()
        try:
            (bank, bank_labels), (queries, labels) = (self._embed(method, s, device, info) for s in self.sets)
        finally:
            method.train(was_training)
        if not len(bank) or not len(queries):  # every video of a set was bad (each was reported): nothing to vote
            log.warning("kNN monitor: no readable video in the %s set", "bank" if not len(bank) else "query")
            return {"knn_top1": math.nan, "knn_top5": math.nan}
        top1, top5 = knn_accuracy(bank, bank_labels, queries, labels, self.num_classes, self.k, self.temperature)
        return {"knn_top1": top1, "knn_top5": top5}

    def _embed(self, method, dataset, device, info: Dist | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, D)`` and labels of ``dataset`` in its order, on ``device``: the vote runs there too, and
        nothing is read back per batch."""
        info = info or Dist()
        features, labels, indices = [], [], []
        share = range(info.rank, len(dataset), info.world)
        for batch in batches_in_order(dataset, self.batch_size, self.num_workers, share, collate_fn=collate,
                                      pin_memory=device.type == "cuda",
                                      worker_init_fn=ignore_stop_signals):  # it runs inside a training run
            if "video" not in batch:
                continue  # every video of this batch was bad
            if hasattr(dataset, "on_device"):  # clips left uint8 by the workers are normalized on the device
                batch = dataset.on_device(batch, device)
            features.append(method.features(batch, device).float())
            labels.append(batch["label"])
            indices.append(batch["index"])
        mine = [torch.cat(parts).to(device, non_blocking=True) if parts else torch.zeros(0, dtype=dtype, device=device)
                for parts, dtype in ((features, torch.float32), (labels, torch.long), (indices, torch.long))]
        if info.world == 1:
            return mine[0], mine[1]
        features, labels, indices = (gather_rows(part, info) for part in mine)
        order = indices.argsort()  # the dataset's order, as one process embeds it
        return features[order], labels[order]
