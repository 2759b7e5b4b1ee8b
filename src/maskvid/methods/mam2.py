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
from maskvid.methods.base import MaskedOutput, checked_inputs, masked_target_loss, method_inputs, prepare_inputs
from maskvid.methods.losses import DEFAULT_LOSS, HEAD_LOSSES
from maskvid.models import DecoderConfig, PositionEmbedding, VideoViT, ViTConfig
from maskvid.models.blocks import TokenLayout
from maskvid.models.decoders import MaskedDecoder
from maskvid.models.frozen import frozen_parts
from maskvid.models.regressor import LatentRegressor
from maskvid.models.tokens import fill_masked, gather_tokens, order_ids
from maskvid.targets import Target


@dataclass
class MAM2Head:
    """One pretext task: a name, its target, loss, weight and decoder depth."""

    name: str
    target: Target
    loss: str | None = None
    weight: float = 1.0
    depth: int = 2


class MAM2(nn.Module):
    def __init__(self, encoder: ViTConfig, heads: list[MAM2Head], options: Mam2Config | None = None):
        super().__init__()
        o = self.options = options or Mam2Config()
        if not heads:
            raise ConfigError("heads", "MAM² needs an appearance or a motion head (or both)")
        self.encoder = VideoViT(encoder)
        width, n_heads = o.width or encoder.width, o.heads or encoder.heads
        self.proj = nn.Linear(encoder.width, width) if width != encoder.width else nn.Identity()
        self.pos_embed = PositionEmbedding("sincos", encoder.grid, width) if width != encoder.width else None
        self.mask_query = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.mask_query, std=0.02)
        self.regressor = LatentRegressor(width, o.regressor_depth, n_heads, eps=encoder.eps) if o.regressor else None
        self.tasks = heads
        self.losses = [HEAD_LOSSES.get_entry(h.loss or DEFAULT_LOSS[h.target.kind]) for h in heads]
        self.targets = nn.ModuleList(h.target for h in heads)
        groups = [heads] if o.coupled else [[h] for h in heads]  # MAM²-c: one decoder, a head per target
        self.decoders = nn.ModuleList(
            MaskedDecoder(DecoderConfig(width=width, depth=max(h.depth for h in g), heads=n_heads, eps=encoder.eps),
                          tuple(h.target.dim for h in g), encoder.attention)
            for g in groups)

    @property
    def input_key(self) -> str:
        return self.encoder.input_key

    @property
    def inputs(self) -> tuple[str, ...]:
        return method_inputs(self.input_key, self.targets)

    def prepare(self, batch: dict, device: torch.device) -> dict:
        return prepare_inputs(self.inputs, batch, device)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for part in frozen_parts(self):
            part.apply(fn)
        return self

    def _positions(self, grid, like: torch.Tensor) -> torch.Tensor:
        """The encoder's position table (shared with regressor and decoders; MAM² App. C), at their width."""
        table = self.pos_embed if self.pos_embed is not None else self.encoder.pos_embed
        return table.table_for(grid, like)

    def latents(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, TokenLayout, bool, dict]:
        """The decoders' input and its layout: the regressed latents ``(B, M, W)`` at the masked ids, or without a
        regressor all N tokens (mask queries at the masked positions, MAE-style; ``gather`` True: keep the masked
        outputs); and the alignment term."""
        visible, layout = self.encoder(x, mask)  # (B, K, D)
        masked_ids, pred_valid = order_ids(mask)
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
                truth, _ = self.encoder(x, ~mask)  # visible = the masked patches, in masked-id order
                truth = self.proj(truth)
            error = F.mse_loss(regressed.float(), truth.float(), reduction="none").mean(-1)  # (B, M)
            weight = pred_valid.float() if pred_valid is not None else torch.ones_like(error)
            extra["loss_alignment"] = (error * weight).sum() / weight.sum().clamp(min=1)
        return regressed + positions[masked_ids], masked_layout, False, extra

    def forward(self, x: torch.Tensor | None = None, mask: torch.Tensor | None = None, **inputs) -> MaskedOutput:
        inputs = checked_inputs(self.input_key, x, mask, inputs)
        masked_ids, pred_valid = order_ids(mask)
        decoder_in, layout, gather, extra = self.latents(inputs[self.input_key], mask)
        outputs = [out for decoder in self.decoders for out in decoder(decoder_in, layout)]
        if gather:
            outputs = [gather_tokens(out, masked_ids) for out in outputs]
        total, metrics, preds = 0.0, {}, {}
        for task, loss_fn, pred in zip(self.tasks, self.losses, outputs, strict=True):
            term = masked_target_loss(task.target, loss_fn, pred, inputs, masked_ids, pred_valid)
            total = total + task.weight * term
            metrics[f"loss_{task.name}"] = term.detach()
            preds[task.name] = pred
        if "loss_alignment" in extra:
            total = total + self.options.alpha * extra["loss_alignment"]
            metrics["loss_alignment"] = extra["loss_alignment"].detach()
        metrics["loss"] = total.detach()
        return MaskedOutput(total, outputs[0], pred_valid, metrics, preds)
