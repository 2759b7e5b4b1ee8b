"""MAM² (Song et al., "It Takes Two: Masked Appearance-Motion Modeling", §2, Tab. 1–2, 9): encoder → latent
regressor → two decoders that see only the masked tokens.

    visible (B, K, D) ──encoder──► latents ──proj──► regressor(queries = mask query + position)  ─► r (B, M, W)
    alignment: ‖r − proj(encoder(masked patches))‖², the target without gradient                  (eq. 1)
    r + position ─► appearance decoder (4 blocks) ─► VQ token logits   (CE)
                 ─► motion decoder (2 blocks)     ─► RGB difference    (MSE)
    L = L_app + L_mot + α · L_align, α = 2                                                       (eq. 4)

The heads come from ``config.heads`` (their targets, losses, weights and decoder depths); dropping one is Tab. 2's
"w/o appearance" / "w/o motion". The ``mam2`` config section (:class:`~maskvid.config.Mam2Config`) switches the
rest of Tab. 2: ``coupled`` (MAM²-c: one
decoder, one linear head per target), ``regressor: false`` (the decoders read the encoder's tokens with mask
tokens at the masked positions, MAE-style; nothing to align then, whatever ``alignment`` says),
``alignment: false``.
A ``clip_order`` head (Tab. 1f) gets a decoder of its own (:class:`~maskvid.models.decoders.ClipOrderDecoder`):
one prediction per masked tube, scored by cross-entropy over the 2 orders, its accuracy logged beside the loss.
Which positions are masked tubes is worked out on the host (:meth:`MAM2.prepare`'s ``tube_order``), so the
forward reads nothing back from the device.
The alignment term is the mean squared error over entries (as CAE's implementation), not eq. 1's sum over the
width, which at width 768 would outweigh the other terms ~700×.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskvid.config import Mam2Config
from maskvid.errors import ConfigError
from maskvid.methods.base import (
    MaskedOutput,
    checked_inputs,
    masked_target_loss,
    method_inputs,
    pooled_features,
    prepare_masked_inputs,
)
from maskvid.methods.losses import DEFAULT_LOSS, HEAD_LOSSES, weighted_total
from maskvid.models import DecoderConfig, PositionEmbedding, VideoViT, ViTConfig
from maskvid.models.blocks import TokenLayout
from maskvid.models.decoders import ClipOrderDecoder, MaskedDecoder
from maskvid.models.frozen import CarriesFrozenParts
from maskvid.models.regressor import LatentRegressor
from maskvid.models.tokens import MaskOrder, fill_masked, gather_tokens, order_ids
from maskvid.targets import Target


@dataclass
class MAM2Head:
    """One pretext task: a name, its target, loss, weight and decoder depth."""

    name: str
    target: Target
    loss: str | None = None
    weight: float = 1.0
    depth: int = 2


class MAM2(CarriesFrozenParts):
    def __init__(self, encoder: ViTConfig, heads: list[MAM2Head], options: Mam2Config | None = None):
        super().__init__()
        o = self.options = options or Mam2Config()
        if not heads:
            raise ConfigError("heads", "MAM² needs an appearance or a motion head (or both)")
        if encoder.pos_embed == "rope":  # its regressor and decoders read the encoder's position table (App. C)
            raise ConfigError("model.pos_embed", "MAM² shares the encoder's position table with its regressor and "
                              "decoders; rope has none: use sincos, learned or separable")
        self.encoder = VideoViT(encoder)
        width, n_heads = o.width or encoder.width, o.heads or encoder.heads
        self.proj = nn.Linear(encoder.width, width) if width != encoder.width else nn.Identity()
        self.pos_embed = PositionEmbedding("sincos", encoder.grid, width) if width != encoder.width else None
        self.mask_query = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.mask_query, std=0.02)
        self.regressor = LatentRegressor(width, o.regressor_depth, n_heads, eps=encoder.eps) if o.regressor else None
        self.token_tasks = per_token = [h for h in heads if not getattr(h.target, "per_tube", False)]
        self.order_tasks = [h for h in heads if getattr(h.target, "per_tube", False)]
        self._check_clip_order(encoder)
        self.tasks = per_token + self.order_tasks
        self.losses = [HEAD_LOSSES.get_entry(h.loss or DEFAULT_LOSS[h.target.kind]) for h in per_token]
        self.targets = nn.ModuleList(h.target for h in self.tasks)
        groups = [per_token] if o.coupled and per_token else [[h] for h in per_token]  # MAM²-c: one decoder

        def config(depth: int) -> DecoderConfig:
            return DecoderConfig(width=width, depth=depth, heads=n_heads, eps=encoder.eps,
                                 grad_checkpointing=encoder.grad_checkpointing)

        self.decoders = nn.ModuleList(MaskedDecoder(config(max(h.depth for h in g)), tuple(h.target.dim for h in g),
                                                    encoder.attention) for g in groups)
        self.order_decoders = nn.ModuleList(ClipOrderDecoder(config(h.depth), encoder.grid[0])
                                            for h in self.order_tasks)

    def _check_clip_order(self, encoder: ViTConfig) -> None:
        if not self.order_tasks:
            return
        if self.options.coupled:
            raise ConfigError("mam2.coupled", "clip order has its own decoder (a [CLS] over each masked tube); it "
                              "cannot share the coupled one")
        if encoder.grid[0] < 2:
            raise ConfigError("heads", f"clip order splits each tube into 2 clips: it needs >= 2 temporal slices, "
                              f"the grid is {encoder.grid}")

    @property
    def input_key(self) -> str:
        return self.encoder.input_key

    @property
    def inputs(self) -> tuple[str, ...]:
        return method_inputs(self.input_key, self.targets)

    def prepare(self, batch: dict, device: torch.device) -> dict:
        """:func:`prepare_masked_inputs`; with a clip-order head also ``tube_order``, the ``order_ids`` of each
        sample's masked tubes made from the host mask (the forward would otherwise read their count back)."""
        inputs = prepare_masked_inputs(self.inputs, batch, device, self.targets)
        mask = batch.get("mask")
        t, h, w = self.encoder.config.grid
        if self.order_tasks and isinstance(mask, torch.Tensor) and mask.device.type == "cpu" \
                and mask.dim() == 2 and mask.shape[1] == t * h * w:  # (the forward names any other mask's fault)
            ids, valid = self.tube_order(mask)
            inputs["tube_order"] = (ids.to(device, non_blocking=True),
                                    None if valid is None else valid.to(device, non_blocking=True))
        return inputs

    def tube_order(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``order_ids`` of each sample's masked tubes — spatial positions masked in every temporal slice — of a
        ``(B, N)`` mask: ids ``(B, K)`` into the ``H'·W'`` positions and validity (None when all samples hide K)."""
        return order_ids(mask.view(mask.shape[0], self.encoder.config.grid[0], -1).all(1))

    def features(self, batch: dict, device: torch.device) -> torch.Tensor:
        return pooled_features(self.encoder, batch, device)

    def _positions(self, grid, like: torch.Tensor) -> torch.Tensor:
        """The encoder's position table (shared with regressor and decoders; MAM² App. C), at their width."""
        table = self.pos_embed if self.pos_embed is not None else self.encoder.pos_embed
        return table.table_for(grid, like)

    def latents(self, x: torch.Tensor, mask: torch.Tensor,
                order: MaskOrder | None = None) -> tuple[torch.Tensor, TokenLayout, bool, dict]:
        """The decoders' input and its layout: the regressed latents ``(B, M, W)`` at the masked ids, or without a
        regressor all N tokens (mask queries at the masked positions, MAE-style; ``gather`` True: keep the masked
        outputs); and the alignment term. ``order``: the mask's, made on the host."""
        visible, layout = self.encoder(x, mask, order=order)  # (B, K, D)
        masked_ids, pred_valid = order.masked if order is not None else order_ids(mask)
        grid = layout.grid
        masked_layout = TokenLayout(grid, masked_ids, pred_valid)
        context = self.proj(visible)
        positions = self._positions(grid, context)  # (N, W)
        if self.regressor is None:  # Tab. 2 "w/o regressor": mask queries among the visible tokens, all N decoded
            full = fill_masked(context, layout.ids, layout.valid, self.mask_query, grid[0] * grid[1] * grid[2])
            return full + positions, TokenLayout(grid), True, {}
        queries = self.mask_query + positions[masked_ids]  # (B, M, W)
        regressed = self.regressor(queries, context, layout.valid)
        extra = {}
        if self.options.alignment:
            with torch.no_grad():  # the target: the encoder's own latents of the masked patches, no gradient
                # visible = the masked patches, in masked-id order
                truth, _ = self.encoder(x, ~mask, order=None if order is None else order.inverse())
                truth = self.proj(truth)
            error = F.mse_loss(regressed.float(), truth.float(), reduction="none").mean(-1)  # (B, M)
            weight = pred_valid.float() if pred_valid is not None else torch.ones_like(error)
            extra["loss_alignment"] = (error * weight).sum() / weight.sum().clamp(min=1)
        return regressed + positions[masked_ids], masked_layout, False, extra

    def forward(self, x: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                mask_order: MaskOrder | None = None, tube_order: tuple | None = None, **inputs) -> MaskedOutput:
        """``mask_order`` / ``tube_order``: the mask's order and its masked tubes', made on the host by
        :meth:`prepare`; without them they are worked out here (reading their sizes back from the device)."""
        inputs = checked_inputs(self.input_key, x, mask, inputs)
        if mask_order is None:  # not made on the host (prepare makes it): ordered here, once for every use below
            mask_order = MaskOrder.of(mask)
        masked_ids, pred_valid = mask_order.masked
        decoder_in, layout, gather, extra = self.latents(inputs[self.input_key], mask, mask_order)
        outputs = [out for decoder in self.decoders for out in decoder(decoder_in, layout)]
        if gather:
            outputs = [gather_tokens(out, masked_ids) for out in outputs]
        total, metrics, preds = None, {}, {}
        for task, loss_fn, pred in zip(self.token_tasks, self.losses, outputs, strict=True):
            term = masked_target_loss(task.target, loss_fn, pred, inputs, masked_ids, pred_valid)
            total = weighted_total(total, task.weight, term)
            metrics[f"loss_{task.name}"] = term.detach()
            preds[task.name] = pred
        for task, decoder in zip(self.order_tasks, self.order_decoders, strict=True):
            logits, order, valid = self._clip_order(decoder, task, decoder_in, gather, mask, mask_order,
                                                    tube_order, inputs)
            term, accuracy = _order_scores(logits, order, valid)
            total = weighted_total(total, task.weight, term)
            metrics[f"loss_{task.name}"] = term.detach()
            metrics[f"acc_{task.name}"] = accuracy
            preds[task.name] = logits
        if "loss_alignment" in extra:
            total = weighted_total(total, self.options.alpha, extra["loss_alignment"])
            metrics["loss_alignment"] = extra["loss_alignment"].detach()
        metrics["loss"] = total.detach()
        return MaskedOutput(total, outputs[0] if outputs else logits, pred_valid, metrics, preds)

    def _clip_order(self, decoder: ClipOrderDecoder, task: MAM2Head, decoder_in: torch.Tensor, full: bool,
                    mask: torch.Tensor, mask_order: MaskOrder, tube_order: tuple | None, inputs: dict
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The decoder's logits ``(B·K, 2)`` over each sample's K masked tubes (padded to the batch's most), their
        orders ``(B·K,)`` and validity (None: none is padding); ``full``: ``decoder_in`` holds all N tokens, else
        the masked ones."""
        b, n = mask.shape
        t = self.encoder.config.grid[0]
        if not full:  # the regressed latents of the masked tokens, back in place among N
            masked_ids, pred_valid = mask_order.masked
            blank = torch.zeros(1, 1, decoder_in.shape[-1], dtype=decoder_in.dtype, device=decoder_in.device)
            decoder_in = fill_masked(decoder_in, masked_ids, pred_valid, blank, n)
        ids, valid = tube_order if tube_order is not None else self.tube_order(mask)  # (B, K)
        width = decoder_in.shape[-1]
        by_position = decoder_in.view(b, t, -1, width).transpose(1, 2)  # (B, S, T', W)
        tubes = by_position.gather(1, ids[:, :, None, None].expand(-1, -1, t, width)).flatten(0, 1)  # (B·K, T', W)
        order = task.target(**{k: inputs[k] for k in task.target.inputs}).gather(1, ids).flatten()  # (B·K,)
        return decoder(tubes, order), order, None if valid is None else valid.flatten()


def _order_scores(logits: torch.Tensor, order: torch.Tensor, valid: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy over the real tubes (0 and 0 where there is none: the batch hides no whole
    tube), without reading the device."""
    if not len(order):  # a shape, known while tracing
        return logits.sum() * 0.0, logits.sum().detach() * 0.0
    loss = F.cross_entropy(logits.float(), order, reduction="none")
    right = (logits.argmax(-1) == order).float()
    if valid is None:
        return loss.mean(), right.mean().detach()
    weight = valid.float()
    count = weight.sum().clamp(min=1)
    return (loss * weight).sum() / count, ((right * weight).sum() / count).detach()
