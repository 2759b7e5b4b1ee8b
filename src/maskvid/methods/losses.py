"""The losses of every method, and only here (DESIGN.md: nothing below ``methods`` knows a loss).

- :func:`masked_mse`: VideoMAE's loss — the squared error averaged over each token's entries, then over the masked
  tokens of the whole batch (every token weighs the same), leaving out what a target marks invalid.
- :func:`masked_cross_entropy`: cross-entropy over the masked tokens' class ids (MAM²'s VQ tokens, VIMPAC).
- :func:`info_nce`: the symmetric InfoNCE between two views (CLIP-style), negatives from every rank under DDP;
  :func:`vimpac_info_nce`: VIMPAC's (eq. 19–20), whose negatives include the clip's own view.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from maskvid.errors import InputError
from maskvid.registry import Registry

IGNORE_INDEX = -100


def weighted_total(total: torch.Tensor | None, weight: float, term: torch.Tensor) -> torch.Tensor:
    """``total + weight * term``, ``total`` None before the first term. It does no arithmetic that changes nothing
    (``0.0 + x``, ``1.0 * x``): torch.compile's inductor (torch 2.15) folds that away, and the loss it then
    returned beside the term's detached metric no longer required grad (tests/test_compile.py)."""
    weighted = term if weight == 1 else weight * term
    return weighted if total is None else total + weighted


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over tokens ``(B, M, D)``.

    valid: None (every entry counts), ``(B, M)`` bool per token, or ``(B, M, D)`` bool per entry. A token's error
    is the mean over its valid entries; the loss is the mean over tokens with at least one valid entry (0 when
    there is none, so a batch with nothing to learn from adds no gradient rather than NaN).
    """
    if pred.shape != target.shape:
        raise InputError("target", f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ")
    error = (pred.float() - target.float()) ** 2  # (B, M, D)
    if error.numel() == 0:  # no masked token (a mask checked nowhere, e.g. on a GPU): 0, not the NaN of an empty mean
        return error.sum()
    if valid is None:
        return error.mean(-1).mean()
    if valid.shape == error.shape:
        weights = valid.to(error.dtype)
        per_token = (error * weights).sum(-1) / weights.sum(-1).clamp(min=1)
        token_valid = valid.any(-1)
    elif valid.shape == error.shape[:2]:
        per_token, token_valid = error.mean(-1), valid
    else:
        raise InputError("valid", f"expected {tuple(error.shape[:2])} or {tuple(error.shape)}, got "
                         f"{tuple(valid.shape)}")
    return (per_token * token_valid).sum() / token_valid.sum().clamp(min=1)


def masked_cross_entropy(logits: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor | None = None,
                         ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``(B, M, V)`` against class ids ``(B, M)``, averaged over the tokens that are
    valid (``(B, M)`` bool) and whose id is not ``ignore_index``."""
    if logits.shape[:2] != ids.shape:
        raise InputError("target", f"logits {tuple(logits.shape)} do not match class ids {tuple(ids.shape)}")
    if valid is not None:
        if valid.shape != ids.shape:
            raise InputError("valid", f"expected {tuple(ids.shape)}, got {tuple(valid.shape)}")
        ids = ids.masked_fill(~valid, ignore_index)
    counted = ids != ignore_index
    per_token = F.cross_entropy(logits.float().flatten(0, 1), ids.flatten(), ignore_index=ignore_index,
                                reduction="none", label_smoothing=label_smoothing)
    return per_token.sum() / counted.sum().clamp(min=1)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07, symmetric: bool = True,
             gather: bool = True) -> torch.Tensor:
    """InfoNCE between paired embeddings ``a`` ``(B, D)`` and ``b`` ``(B, D)`` (row i of each: one positive pair).

    Cosine similarities over ``temperature``; every other sample of the global batch is a negative. Under DDP
    (``gather``), the other ranks' embeddings join as negatives through an all-gather that carries gradients, so the
    loss equals the single-process loss on the whole batch. ``symmetric``: the mean of a→b and b→a.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise InputError("b", f"expected two (B, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    all_a, all_b, offset = _global_batch(a, b, gather)
    labels = torch.arange(a.shape[0], device=a.device) + offset
    loss = F.cross_entropy(a @ all_b.T / temperature, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(b @ all_a.T / temperature, labels)) / 2
    return loss


def vimpac_info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1, gather: bool = True) -> torch.Tensor:
    """VIMPAC's contrastive loss (eq. 5, 19–20; SimCLR's NT-Xent): for clip i, its pair ``b_i`` is the positive
    and every other clip of the global batch — of either view — a negative; ``L_cl`` is the mean over ``a`` of
    eq. 19 plus the mean over ``b`` of eq. 20 (their sum, not their mean). Features are L2-normalized (as the
    official code). Eq. 6's factor γ is the caller's (``L_mask + α·γ·L_cl``)."""
    if a.shape != b.shape or a.dim() != 2:
        raise InputError("b", f"expected two (B, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    all_a, all_b, offset = _global_batch(a, b, gather)
    labels = torch.arange(a.shape[0], device=a.device) + offset
    self_pairs = F.one_hot(labels, all_a.shape[0]).bool()  # k = i: a clip is not its own negative

    def one_side(x: torch.Tensor, same: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        logits_same = (x @ same.T / temperature).masked_fill(self_pairs, float("-inf"))
        return F.cross_entropy(torch.cat([x @ other.T / temperature, logits_same], 1), labels)

    return one_side(a, all_a, all_b) + one_side(b, all_b, all_a)


def _global_batch(a: torch.Tensor, b: torch.Tensor, gather: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both views of every rank's batch (under DDP with ``gather``: an all-gather that carries gradients, so the
    loss equals the single-process loss on the whole batch) and this rank's offset into them."""
    if gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather  # differentiable, unlike dist.all_gather

        return torch.cat(all_gather(a)), torch.cat(all_gather(b)), dist.get_rank() * a.shape[0]
    return a, b, 0


# losses a prediction head can name: (prediction, target, validity) -> scalar
HEAD_LOSSES = Registry("loss", "heads.loss", {"mse": masked_mse, "cross_entropy": masked_cross_entropy})
DEFAULT_LOSS = {"regression": "mse", "classes": "cross_entropy"}
