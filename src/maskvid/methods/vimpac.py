"""VIMPAC (Tan et al., "VIMPAC: Video Pre-Training via Masked Token Prediction and Contrastive Learning", §3,
App. A–B): mask-then-predict on VQ tokens plus contrastive learning between two clips of one video.

    ids (2B, T', H', W')      both clips of each video, one batch: tokens from the cache or a frozen tokenizer
        BERT noise at mask & real: 80% [MASK], 10% a random code, 10% unchanged           (App. G.3)
        ──encoder (token stem, [CLS], T,H|W post-LN)──► h (2B, N, D), h_CLS (2B, D)
    L_mask: the token head (tied to the stem's embedding, eq. 16–17) at the masked, non-[PAD] tokens, cross-entropy
    L_cl:   MLP-BN(h_CLS) → f, f' → NT-Xent between the clips of each video, negatives from every rank (eq. 19–20)
    L = L_mask + α·γ·L_cl                                                                               (eq. 6)

Both losses see the same masked inputs (§3.3). The mask comes from the data workers (``block3d``); the 80/10/10
noise is drawn here, from torch's generator (saved with each checkpoint, as dropout's), because it needs the ids,
which a frozen tokenizer makes only on the device. [PAD] (frames past a short video's end) is never masked, never
corrupted and never predicted.
"""

from __future__ import annotations

import torch

from maskvid.config import VimpacConfig
from maskvid.constants import PAD_TOKEN
from maskvid.errors import ConfigError, InputError
from maskvid.masking import bert_noise
from maskvid.methods.base import MaskedOutput, prepare_inputs
from maskvid.methods.losses import masked_cross_entropy, vimpac_info_nce
from maskvid.models import VideoViT, ViTConfig
from maskvid.models.frozen import CarriesFrozenParts
from maskvid.models.heads import ContrastiveHead, TokenHead
from maskvid.models.tokens import gather_tokens, order_ids
from maskvid.targets.tokens import TokenIds


class VIMPAC(CarriesFrozenParts):
    """``forward(mask, mask2=None, **inputs)`` → :class:`~maskvid.methods.base.MaskedOutput`; ``inputs``: what
    ``tokens`` reads for each clip (``tokens`` / ``tokens2``, or ``video`` / ``video2`` with a tokenizer).
    ``pair``: two clips per video (``data.sampling: pair``), needed for the contrastive term (``alpha > 0``)."""

    def __init__(self, encoder: ViTConfig, tokens: TokenIds, options: VimpacConfig | None = None,
                 pair: bool = True):
        super().__init__()
        o = self.options = options or VimpacConfig()
        _check(encoder, tokens, o, pair)
        self.pair = pair
        self.encoder = VideoViT(encoder)
        self.tokens = tokens  # a module: a frozen tokenizer inside moves with the method, never trained or saved
        self.token_head = TokenHead(self.encoder.patch_embed, encoder.vocab_size, eps=encoder.eps)
        self.contrastive_head = ContrastiveHead(encoder.width, o.proj_hidden, o.proj_dim, o.proj_layers) \
            if o.alpha > 0 else None

    @property
    def inputs(self) -> tuple[str, ...]:
        suffixes = ("", "2") if self.pair else ("",)
        return tuple(key + suffix for suffix in suffixes for key in (*self.tokens.inputs, "mask"))

    def prepare(self, batch: dict, device: torch.device) -> dict:
        """:func:`prepare_inputs`, each clip's cached ids checked first, on the host; plus what the forward would
        otherwise read from the device: ``padded`` (is any id [PAD]) and ``hidden_order`` (the order of the tokens
        to predict)."""
        if self.tokens.frozen is None:
            for key in ("tokens", "tokens2"):
                if isinstance(batch.get(key), torch.Tensor):
                    self.tokens.check_ids(batch[key], key)
        inputs = prepare_inputs(self.inputs, batch, device)
        hidden, padded = self._on_host(batch)
        if hidden is not None:
            ids, valid = order_ids(hidden)
            inputs["hidden_order"] = (ids.to(device, non_blocking=True),
                                      None if valid is None else valid.to(device, non_blocking=True))
            inputs["padded"] = padded
        return inputs

    def _on_host(self, batch: dict) -> tuple[torch.Tensor | None, bool]:
        """``(2B, N)`` (or ``(B, N)``) tokens to predict — masked, not [PAD] — and whether any id is [PAD], from the
        host batch: a frozen tokenizer makes no [PAD], cached ids say where it is. None when the batch is not all on
        the host, or not as the forward expects it (the forward then says what is wrong)."""
        suffixes = ("", "2") if self.pair else ("",)
        masks = [batch.get("mask" + s) for s in suffixes]
        ids = [batch.get("tokens" + s) for s in suffixes] if self.tokens.frozen is None else []
        if not all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in masks + ids):
            return None, True
        shape = masks[0].shape
        if any(m.dtype != torch.bool or m.dim() != 2 or m.shape != shape for m in masks) or \
                any(i.dim() < 2 or i.flatten(1).shape != shape for i in ids):
            return None, True
        hidden = torch.cat(masks)
        if not ids:
            return hidden, False
        real = torch.cat([i.flatten(1) for i in ids]) != PAD_TOKEN
        return hidden & real, not bool(real.all())

    def clip_ids(self, inputs: dict, suffix: str = "") -> torch.Tensor:
        """One clip's ids ``(B, T', H', W')`` (``PAD_TOKEN`` past its video's end)."""
        own = {key: inputs[key + suffix] for key in self.tokens.inputs}
        ids = self.tokens(**own)  # (B, N)
        if "tokens" in own:
            return ids.view(own["tokens"].shape)
        b, _, t, h, w = own["video"].shape
        p = self.encoder.config.patch
        return ids.view(b, t // p[0], h // p[1], w // p[2])

    @torch.no_grad()
    def features(self, batch: dict, device: torch.device) -> torch.Tensor:
        """The [CLS] output ``(B, D)`` of each unmasked clip of ``batch`` (the kNN monitor's embedding)."""
        inputs = prepare_inputs(self.tokens.inputs, batch, device)
        ids = batch.get("tokens")  # cached ids say on the host whether any is [PAD]; a tokenizer makes none
        padded = bool((ids == PAD_TOKEN).any()) if isinstance(ids, torch.Tensor) and ids.device.type == "cpu" \
            else None if self.tokens.frozen is None else False
        _, _, cls = self.encoder(self.clip_ids(inputs), None, return_prefix=True, padded=padded)
        return cls[:, 0]

    def forward(self, mask: torch.Tensor | None = None, mask2: torch.Tensor | None = None,
                hidden_order: tuple[torch.Tensor, torch.Tensor | None] | None = None, padded: bool | None = None,
                **inputs) -> MaskedOutput:
        """``hidden_order`` (``order_ids`` of the tokens to predict) and ``padded`` (is any id [PAD]): made on the
        host by :meth:`prepare`; without them the forward works them out on the device."""
        ids = self.clip_ids(inputs)
        masks = [mask]
        if self.pair:
            ids = torch.cat([ids, self.clip_ids(inputs, "2")])  # (2B, T', H', W'): one pass for both clips
            masks.append(mask2)
        if any(m is None or m.shape != (ids.shape[0] // len(masks), ids[0].numel()) for m in masks):
            raise InputError("mask", f"expected a bool (B, N) mask per clip for ids {tuple(ids.shape)}")
        flat = ids.flatten(1)  # (2B, N)
        hidden = torch.cat(masks) & (flat != PAD_TOKEN)
        stem = self.encoder.patch_embed
        noisy = bert_noise(flat, hidden, stem.mask_id, stem.vocab_size, probs=self.options.noise)
        tokens, _, cls = self.encoder(noisy.view_as(ids), None, return_prefix=True, padded=padded)  # (2B, N|1, D)
        masked_ids, valid = hidden_order if hidden_order is not None else order_ids(hidden)  # (2B, M)
        logits = self.token_head(gather_tokens(tokens, masked_ids))  # (2B, M, V)
        expected = gather_tokens(flat, masked_ids)
        loss_mask = masked_cross_entropy(logits, expected, valid)
        right = logits.argmax(-1) == expected
        counted = torch.ones_like(right) if valid is None else valid
        metrics = {"loss_tokens": loss_mask.detach(),
                   "acc_tokens": (right & counted).sum() / counted.sum().clamp(min=1)}
        total = loss_mask
        if self.contrastive_head is not None:
            f, f2 = self.contrastive_head(cls[:, 0]).chunk(2)  # (B, P) each: the two clips of each video
            gamma = self.options.temperature
            loss_cl = vimpac_info_nce(f, f2, gamma)
            total = total + self.options.alpha * gamma * loss_cl
            metrics["loss_contrastive"] = (gamma * loss_cl).detach()  # γ·L_cl: the paper's "CL-Loss"
        metrics["loss"] = total.detach()
        return MaskedOutput(total, logits, valid, metrics, {"tokens": logits})


def _check(encoder: ViTConfig, tokens: TokenIds, options: VimpacConfig, pair: bool) -> None:
    """What VIMPAC needs of the encoder and the data, as ConfigErrors naming the key to change."""
    if encoder.stem != "token":
        raise ConfigError("model.stem", f"VIMPAC encodes VQ token ids: use the token stem, not {encoder.stem}")
    if encoder.hide != "replace":
        raise ConfigError("model.hide", "VIMPAC replaces masked tokens by [MASK] (BERT): set model.hide: replace")
    if tokens.vocab_size != encoder.vocab_size:
        raise ConfigError("model.vocab_size", f"{encoder.vocab_size}, but the tokens come from a vocabulary of "
                          f"{tokens.vocab_size}")
    if options.alpha > 0 and not pair:
        raise ConfigError("data.sampling", "the contrastive term (vimpac.alpha > 0) needs two clips per video: "
                          "set data.sampling: pair (or vimpac.alpha: 0)")
    if options.alpha > 0 and not encoder.cls_token:
        raise ConfigError("model.cls_token", "the contrastive head reads the [CLS] token: set model.cls_token: true")
