"""Masked prediction: one encoder sees the visible part of a clip; any number of heads each predict one target for
the hidden tokens (DESIGN.md, "Methods"). VideoMAE and MGM are one head; MME, MAM² and VIMPAC add heads.

    inputs (video or tokens, mask, what the targets declare)
        ──encoder──► kept tokens (B, K, D)                     (drop: the visible ones; replace: all N)
        ──per head: encoder_to_decoder ─► fill mask tokens + position ─► decoder ─► (B, N, dim)
                    ─► the masked tokens (B, M, dim) ─► loss(pred, target values, validity)
    loss = Σ weight · head loss; each term is logged as ``loss_<head name>``

A head's validity combines the padding of samples that mask fewer tokens than the batch's largest count with the
target's own per-sample validity (e.g. trajectories that leave the frame, RGB difference after the last frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from maskvid.errors import ConfigError, InputError
from maskvid.methods.losses import DEFAULT_LOSS, HEAD_LOSSES, weighted_total
from maskvid.models import DecoderConfig, MAEDecoder, PositionEmbedding, VideoViT, ViTConfig
from maskvid.models.blocks import TokenLayout
from maskvid.models.frozen import CarriesFrozenParts
from maskvid.models.heads import masked_mean
from maskvid.models.tokens import MaskOrder, fill_masked, gather_tokens, order_ids, reads_freely
from maskvid.models.vit import check_rope
from maskvid.targets import Target


@dataclass
class MaskedOutput:
    """loss: the weighted sum; pred: the first head's ``(B, M, D)`` predictions of each sample's masked tokens in
    (t h w) order, padded to the largest M; pred_valid: ``(B, M)`` bool or None when every sample masks the same
    count; preds: every head's predictions by name; metrics: what the loop logs (``loss``, ``loss_<head>``)."""

    loss: torch.Tensor
    pred: torch.Tensor
    pred_valid: torch.Tensor | None
    metrics: dict
    preds: dict = field(default_factory=dict)


class PredictionHead(nn.Module):
    """One ``(decoder, target, loss, weight)``: encoder tokens → predictions of one target for the masked tokens.

    Parameter names follow VideoMAE's (``encoder_to_decoder``, ``mask_token``, ``decoder.*``), one level down.
    """

    def __init__(self, name: str, encoder: ViTConfig, decoder: DecoderConfig, target: Target, loss: str | None = None,
                 weight: float = 1.0):
        super().__init__()
        loss = loss or DEFAULT_LOSS[target.kind]
        self.name, self.weight, self.loss_name = name, float(weight), loss
        self.loss_fn = HEAD_LOSSES.get_entry(loss)
        if (loss == "cross_entropy") != (target.kind == "classes"):
            raise ConfigError("heads.loss", f"head {name!r}: {loss} does not fit a {target.kind} target")
        self.decoder_config = decoder
        self.encoder_to_decoder = nn.Linear(encoder.width, decoder.width, bias=False)
        # dropped tokens come back as mask tokens; an encoder that replaces them already returns all N
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder.width)) if encoder.hide == "drop" else None
        rope = encoder.pos_embed == "rope"  # the decoder then places tokens the encoder's way, by rotation
        if rope:
            check_rope("joint", decoder.width, decoder.heads, "model.decoder_heads")
        self.decoder_pos_embed = PositionEmbedding("rope" if rope else "sincos", encoder.grid, decoder.width)
        self.decoder = MAEDecoder(decoder, target.dim, rope=rope)
        self.target = target
        nn.init.xavier_uniform_(self.encoder_to_decoder.weight)
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, layout: TokenLayout, masked_ids: torch.Tensor) -> torch.Tensor:
        """Kept tokens ``(B, K, D)`` → predictions ``(B, M, dim)`` at ``masked_ids`` ``(B, M)``."""
        grid = layout.grid
        n = grid[0] * grid[1] * grid[2]
        x = fill_masked(self.encoder_to_decoder(tokens), layout.ids, layout.valid, self.mask_token, n)  # (B, N, d)
        out = self.decoder(self.decoder_pos_embed(x, grid), grid)  # (B, N, dim)
        return gather_tokens(out, masked_ids)

    def loss(self, pred: torch.Tensor, batch: dict, masked_ids: torch.Tensor,
             pred_valid: torch.Tensor | None) -> torch.Tensor:
        """This head's loss on the masked tokens, from the target's values and validity."""
        return masked_target_loss(self.target, self.loss_fn, pred, batch, masked_ids, pred_valid)


def method_inputs(input_key: str, targets) -> tuple[str, ...]:
    """The encoder's input, the mask, then every key the targets declare, each once."""
    keys = [input_key, "mask"]
    for target in targets:
        keys += [k for k in target.inputs if k not in keys]
    return tuple(keys)


def checked_inputs(input_key: str, x: torch.Tensor | None, mask: torch.Tensor | None, inputs: dict) -> dict:
    """``inputs`` with the encoder's input (given positionally as ``x`` or by its key) and a mask hiding something;
    an InputError naming what is missing otherwise."""
    if x is not None:
        inputs[input_key] = x
    if input_key not in inputs:
        raise InputError(input_key, "the encoder's input is missing")
    if mask is None:
        raise InputError("mask", "masked prediction needs a mask")
    # on a GPU a read would stall every step: there the batch's mask was checked before it was sent (prepare)
    if reads_freely(mask):
        check_mask(mask)
    return inputs


def check_mask(mask: torch.Tensor) -> None:
    if not bool(mask.any()):
        raise InputError("mask", "masked prediction needs at least one masked token per batch")


def prepare_masked_inputs(inputs: tuple[str, ...], batch: dict, device: torch.device, targets=()) -> dict:
    """:func:`prepare_inputs`, the batch's mask and what ``targets`` read checked first, on the host, plus the mask's
    ``mask_order``."""
    if isinstance(batch.get("mask"), torch.Tensor):
        check_mask(batch["mask"])
    for target in targets:
        target.check_batch(batch)
    prepared = prepare_inputs(inputs, batch, device)
    order = prepare_mask_order(batch, device)
    if order is not None:
        prepared["mask_order"] = order
    return prepared


def prepare_mask_order(batch: dict, device: torch.device) -> MaskOrder | None:
    """The batch's :class:`MaskOrder` on ``device``: the loader's (``collate`` makes it), else made here from a host
    mask; None for a mask already on a GPU (the forward then orders it there)."""
    order = batch.get("mask_order")
    mask = batch.get("mask")
    if order is None and isinstance(mask, torch.Tensor) and mask.device.type == "cpu" and mask.dim() == 2:
        order = MaskOrder.of(mask)
    return None if order is None else order.to(device, non_blocking=True)


def prepare_inputs(inputs: tuple[str, ...], batch: dict, device: torch.device) -> dict:
    """Exactly the keys ``inputs`` of ``batch``, on ``device``; a missing key is an InputError naming it."""
    missing = [k for k in inputs if k not in batch]
    if missing:
        raise InputError(missing[0], f"the method reads {', '.join(inputs)}; the batch lacks it")
    return {k: batch[k].to(device, non_blocking=True) for k in inputs}


@torch.no_grad()
def pooled_features(encoder: VideoViT, batch: dict, device: torch.device) -> torch.Tensor:
    """The mean of the encoder's tokens ``(B, D)`` over each whole, unmasked clip of ``batch`` (the kNN monitor)."""
    tokens, layout = encoder(batch[encoder.input_key].to(device, non_blocking=True))
    return masked_mean(tokens, layout.valid)


def masked_target_loss(target: Target, loss_fn, pred: torch.Tensor, batch: dict, masked_ids: torch.Tensor,
                       pred_valid: torch.Tensor | None) -> torch.Tensor:
    """``loss_fn`` between predictions ``(B, M, D)`` of the masked tokens and ``target``'s values there, counting
    only what both the padding (``pred_valid``) and the target's own validity allow."""
    values = target.compute(batch)
    expected = gather_tokens(values.values, masked_ids)  # (B, M, D) or (B, M)
    valid = pred_valid
    if values.valid is not None:
        own = gather_tokens(values.valid, masked_ids)  # (B, M) or (B, M, D)
        if pred_valid is not None:
            own = own & (pred_valid if own.dim() == 2 else pred_valid[..., None])
        valid = own
    return loss_fn(pred.float(), expected, valid)


class MaskedPrediction(CarriesFrozenParts):
    """An encoder and any number of :class:`PredictionHead`.

    ``forward(x, mask, **inputs)`` → :class:`MaskedOutput`; ``x`` is the encoder's input (``video``, or ``tokens``
    for a token stem), given positionally or by its key as :meth:`prepare` does.
    """

    def __init__(self, encoder: ViTConfig, heads: list[PredictionHead]):
        super().__init__()
        if not heads:
            raise ConfigError("heads", "a masked-prediction method needs at least one head")
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ConfigError("heads", f"head names must differ, got {names}")
        self.encoder = VideoViT(encoder)
        self.heads = nn.ModuleList(heads)

    @property
    def input_key(self) -> str:
        return self.encoder.input_key

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every batch key this method reads: the encoder's input, the mask, and what each target declares."""
        return method_inputs(self.input_key, [head.target for head in self.heads])

    def prepare(self, batch: dict, device: torch.device) -> dict:
        """The loop's batch → this method's arguments on ``device``: exactly the keys in :attr:`inputs`."""
        return prepare_masked_inputs(self.inputs, batch, device, [head.target for head in self.heads])

    def features(self, batch: dict, device: torch.device) -> torch.Tensor:
        return pooled_features(self.encoder, batch, device)

    def forward(self, x: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                mask_order: MaskOrder | None = None, **inputs) -> MaskedOutput:
        """``mask_order``: the mask's order made on the host (:meth:`prepare` adds it), else worked out here."""
        inputs = checked_inputs(self.input_key, x, mask, inputs)
        tokens, layout = self.encoder(inputs[self.input_key], mask, order=mask_order)  # (B, K, D)
        return self.predict_masked(tokens, layout, mask, inputs, mask_order)

    def predict_masked(self, tokens: torch.Tensor, layout: TokenLayout, mask: torch.Tensor, inputs: dict,
                       mask_order: MaskOrder | None = None) -> MaskedOutput:
        """The heads' half: encoded tokens → every head's predictions and loss on the masked tokens (MAR reuses it)."""
        masked_ids, pred_valid = mask_order.masked if mask_order is not None else order_ids(mask)
        total, metrics, preds = None, {}, {}
        for head in self.heads:
            pred = head(tokens, layout, masked_ids)
            term = head.loss(pred, inputs, masked_ids, pred_valid)
            total = weighted_total(total, head.weight, term)
            metrics[f"loss_{head.name}"] = term.detach()
            preds[head.name] = pred
        metrics["loss"] = total.detach()
        first = preds[self.heads[0].name]
        return MaskedOutput(loss=total, pred=first, pred_valid=pred_valid, metrics=metrics, preds=preds)


def head_names(targets: list[str]) -> list[str]:
    """A log name per head: the target's name, numbered (``hog_1``, ``hog_2``) where heads share a target."""
    seen: dict[str, int] = {}
    names = []
    for name in targets:
        if targets.count(name) == 1:
            names.append(name)
            continue
        seen[name] = seen.get(name, 0) + 1
        names.append(f"{name}_{seen[name]}")
    return names
