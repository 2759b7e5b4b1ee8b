"""The frozen-encoder linear probe of ``maskvid demo`` and ``maskvid study``: clips decoded once, embedded by each
encoder, then a multinomial logistic regression fit to convergence (L-BFGS) on standardized features.

A probe trained by SGD through the data pipeline (``head.kind: probe``) costs a full decode of every epoch; when
many encoders are compared on one labelled set, decoding the clips once (:func:`load_clips`) and fitting in closed
loop makes each comparison cost one forward pass. The L2 weight is chosen by k-fold cross-validation over the
training videos — the validation set is never looked at before the final score.

    train, val = load_clips(train_set), load_clips(val_set)
    report = probe(embed(encoder, train), train.labels, embed(encoder, val), val.labels, num_classes=10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from maskvid.data import BadVideoLog, collate
from maskvid.engine.surviving_loader import batches_in_order
from maskvid.errors import InputError

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class ClipSet:
    """Decoded, transformed clips of a labelled set: ``clips`` ``(N, V, C, T, H, W)`` (views per video), ``labels``
    ``(N,)``, and the videos that could not be read (path -> why), which the dataset replaced."""

    clips: torch.Tensor
    labels: torch.Tensor
    skipped: dict[str, str] = field(default_factory=dict)


def load_clips(dataset, batch_size: int = 16, num_workers: int = 0, dtype: torch.dtype = torch.float16) -> ClipSet:
    """Every sample of a multi-view ``dataset`` (``sampling="multiview"``), kept in memory as ``dtype``."""
    clips, labels, bad = [], [], BadVideoLog(max_fraction=1.0)
    for batch in batches_in_order(dataset, batch_size, num_workers, collate_fn=collate):
        bad.update(batch)
        if "video" not in batch:
            continue  # every video of this batch was bad
        video = batch["video"]
        clips.append((video if video.dim() == 6 else video[:, None]).to(dtype))
        labels.append(batch["label"])
    return ClipSet(torch.cat(clips), torch.cat(labels), dict(bad.bad))


@torch.no_grad()
def embed(encoder: torch.nn.Module, clips: ClipSet, batch_size: int = 32, device: torch.device | str = "cpu",
          encoder_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
          encoded: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, V, D)``: the mean of ``encoder``'s output tokens for every view (``encoder(x) -> (tokens, layout)``,
    a :class:`~maskvid.models.VideoViT`), computed in eval mode. ``encoder_input`` turns a batch of clips into what
    the encoder reads (a token-stem encoder's ids: ``Classification.encoder_input``); default: the clips.
    ``encoded``: that input for every view already made (:func:`encode_clips`), read instead of the clips."""
    from maskvid.methods.base import masked_mean

    was_training = encoder.training
    encoder.eval()
    n, v = clips.clips.shape[:2]
    out = []
    try:
        for start in range(0, n * v, batch_size):
            if encoded is not None:
                x = encoded[start:start + batch_size].to(device)
            else:
                x = _views(clips, start, batch_size, device)
                x = encoder_input(x) if encoder_input else x
            tokens, layout = encoder(x)
            out.append(masked_mean(tokens, layout.valid).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out).view(n, v, -1)


@torch.no_grad()
def encode_clips(clips: ClipSet, encoder_input: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``encoder_input`` of every view, in :func:`embed`'s batches (so the result is what it would compute), for
    encoders that several probes share the input of — a frozen tokenizer's ids, made once."""
    total = clips.clips.shape[0] * clips.clips.shape[1]
    return torch.cat([encoder_input(_views(clips, start, batch_size, device)).cpu()
                      for start in range(0, total, batch_size)])


def _views(clips: ClipSet, start: int, batch_size: int, device) -> torch.Tensor:
    return clips.clips.flatten(0, 1)[start:start + batch_size].to(device, torch.float32)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                 max_iter: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression on ``x`` ``(n, d)`` with L2 ``weight_decay`` on the weights, by L-BFGS."""
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return linear.requires_grad_(False)


class _Standardize:
    def __init__(self, x: torch.Tensor):
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _fit_views(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, weight_decay: float):
    """Each view of a training video is a sample; returns ``predict(x (M, V, D)) -> (M, classes)`` probabilities
    averaged over views."""
    flat = train_x.flatten(0, 1)
    scale = _Standardize(flat)
    linear = fit_logistic(scale(flat), train_y.repeat_interleave(train_x.shape[1]), num_classes, weight_decay)
    return lambda x: linear(scale(x)).softmax(-1).mean(1)


def cross_validate(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, weight_decay: float,
                   folds: int = 4, seed: int = 0) -> float:
    """Mean held-out top-1 over ``folds`` splits of the training videos (all views of a video in one fold)."""
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    hits = 0
    for fold in range(folds):
        held = order[fold::folds]
        kept = torch.ones(len(train_y), dtype=torch.bool)
        kept[held] = False
        predict = _fit_views(train_x[kept], train_y[kept], num_classes, weight_decay)
        hits += int((predict(train_x[held]).argmax(-1) == train_y[held]).sum())
    return hits / len(train_y)


def probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
          num_classes: int, weight_decays: Sequence[float] = WEIGHT_DECAYS, folds: int = 4, seed: int = 0) -> dict:
    """Fit on ``train_x`` ``(N, V, D)`` with the L2 weight of the best cross-validated top-1, score on ``val_x``
    ``(M, V', D)`` (probabilities averaged over views): top-1, top-5, the chosen weight and every CV score."""
    for name, x, y in (("train", train_x, train_y), ("val", val_x, val_y)):
        if x.dim() != 3 or y.shape != x.shape[:1]:
            raise InputError(f"{name}_x", f"expected (N, V, D) features and (N,) labels, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
    if train_x.shape[-1] != val_x.shape[-1]:
        raise InputError("val_x", f"{val_x.shape[-1]} features, the training set has {train_x.shape[-1]}")
    if folds < 2 or len(train_y) < folds:
        raise InputError("folds", f"{folds} folds of {len(train_y)} training videos")
    scores = {wd: cross_validate(train_x, train_y, num_classes, wd, folds, seed) for wd in weight_decays}
    chosen = max(weight_decays, key=lambda wd: (scores[wd], wd))  # ties: the stronger regularization
    probabilities = _fit_views(train_x, train_y, num_classes, chosen)(val_x)
    top5 = probabilities.topk(min(5, num_classes), -1).indices
    return {"top1": float((probabilities.argmax(-1) == val_y).float().mean()),
            "top5": float((top5 == val_y[:, None]).any(1).float().mean()),
            "weight_decay": chosen, "cv_top1": {str(wd): s for wd, s in scores.items()}, "videos": len(val_y)}
