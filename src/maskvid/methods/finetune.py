"""Supervised methods on a pretrained encoder: full fine-tuning (VideoMAE), linear probing (MAE) and — with a
masked network from :mod:`maskvid.methods.mar` — MAR. One wrapper owns the loss: label-smoothed cross-entropy, or
soft-target cross-entropy under timm's Mixup/CutMix, plus whatever auxiliary losses the network returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from maskvid.methods.base import prepare_mask_order
from maskvid.methods.losses import weighted_total
from maskvid.models import MaskOrder, ProbeHead, VideoViT, masked_mean
from maskvid.models.frozen import CarriesFrozenParts
from maskvid.registry import takes_keyword


@dataclass
class ClassifyOutput:
    loss: torch.Tensor
    logits: torch.Tensor
    metrics: dict


class LinearProbe(nn.Module):
    """MAE's protocol: a frozen encoder (kept in eval mode), mean-pooled tokens, BatchNorm(affine=False) + linear."""

    def __init__(self, encoder: VideoViT, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.head = ProbeHead(encoder.config.width, num_classes)

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^encoder\.", "blocks": []}  # frozen anyway

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout or drop path, whatever the wrapper's mode
        return self

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                order: MaskOrder | None = None, padded: bool | None = None) -> torch.Tensor:
        with torch.no_grad():
            tokens, layout = self.encoder(video, mask, order=order, padded=padded)
        return self.head(masked_mean(tokens, layout.valid))


class Classification(CarriesFrozenParts):
    """``net(video, mask, order) -> logits`` or ``(logits, {name: (weight, loss)})`` trained with cross-entropy
    (``order``: the mask's :class:`~maskvid.models.MaskOrder`, made on the host by :meth:`prepare`). With
    ``tokens`` the net is also told ``padded=False``: ids from a tokenizer are never [PAD], so its encoder need
    not look (a read of the device).

    mixup: a timm :class:`~timm.data.Mixup` applied to training batches in :meth:`prepare` (on a ``(B, C·T, H, W)``
    view, so a CutMix box cuts through every frame); label_smoothing is used without mixup. tokens: for a
    token-stem encoder (VIMPAC), the :class:`~maskvid.targets.tokens.TokenIds` whose frozen tokenizer turns each
    clip into ids on the device, in training and in :meth:`predict`.
    """

    def __init__(self, net: nn.Module, num_classes: int, mixup: Mixup | None = None, label_smoothing: float = 0.1,
                 tokens: nn.Module | None = None):
        super().__init__()
        self.net = net
        self.tokens = tokens
        self.num_classes = num_classes
        self.mixup = mixup
        self.soft_loss = SoftTargetCrossEntropy()
        self.hard_loss = LabelSmoothingCrossEntropy(label_smoothing) if label_smoothing > 0 else nn.CrossEntropyLoss()
        # ids from this method's tokenizer are never [PAD]: the net is told so, if it takes it (a custom one may not)
        self._no_pad = {"padded": False} if tokens is not None and takes_keyword(net.forward, "padded") else {}

    @property
    def encoder(self) -> VideoViT:
        return self.net.encoder

    def group_matcher(self, coarse: bool = False) -> dict:
        """The network's layer groups (for timm's layer-wise lr decay), under this wrapper's ``net.`` prefix."""
        inner = self.net.group_matcher(coarse)
        return {"stem": inner["stem"].replace("^", r"^net\.", 1),
                "blocks": [(p.replace("^", r"^net\.", 1), n) for p, n in inner["blocks"]]}

    def prepare(self, batch: dict, device: torch.device) -> dict:
        video = batch["video"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        target = label
        if self.training and self.mixup is not None:
            frames = video.shape[2]
            mixed, target = self.mixup(rearrange(video, "b c t h w -> b (c t) h w").contiguous(), label)
            video = rearrange(mixed, "b (c t) h w -> b c t h w", t=frames)
        inputs = {"video": video, "target": target, "label": label}
        if "mask" in batch:
            inputs["mask"] = batch["mask"].to(device, non_blocking=True)
            order = prepare_mask_order(batch, device)
            if order is not None:
                inputs["mask_order"] = order
        return inputs

    def encoder_input(self, video: torch.Tensor) -> torch.Tensor:
        """The network's input: the clip, or its token ids ``(B, T', H', W')`` for a token-stem encoder."""
        if self.tokens is None:
            return video
        b, _, t, h, w = video.shape
        p = self.encoder.config.patch
        return self.tokens(video=video).view(b, t // p[0], h // p[1], w // p[2])

    def forward(self, video: torch.Tensor, target: torch.Tensor, label: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, mask_order: MaskOrder | None = None) -> ClassifyOutput:
        out = self.net(self.encoder_input(video), mask, mask_order, **self._no_pad)
        logits, extra = out if isinstance(out, tuple) else (out, {})
        loss = self.soft_loss(logits, target) if target.dim() == 2 else self.hard_loss(logits, target)
        metrics = {"ce": loss.detach()}
        for name, (weight, value) in extra.items():
            loss = weighted_total(loss, weight, value)
            metrics[name] = value.detach()
        if label is not None:
            metrics["acc"] = (logits.argmax(-1) == label).float().mean().detach()
        return ClassifyOutput(loss=loss, logits=logits, metrics=metrics)

    @torch.no_grad()
    def predict(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                mask_order: MaskOrder | None = None) -> torch.Tensor:
        """Class probabilities ``(B, classes)`` (auxiliary branches off); ``mask_order``: the mask's, made on the
        host (else ordered here)."""
        out = self.net(self.encoder_input(video), mask, mask_order, **self._no_pad)
        return F.softmax((out[0] if isinstance(out, tuple) else out).float(), dim=-1)


def build_mixup(mixup: float, cutmix: float, prob: float, switch_prob: float, label_smoothing: float,
                num_classes: int) -> Mixup | None:
    if mixup <= 0 and cutmix <= 0:
        return None
    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=prob, switch_prob=switch_prob,
                 label_smoothing=label_smoothing, num_classes=num_classes)
