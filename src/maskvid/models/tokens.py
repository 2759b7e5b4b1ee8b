"""Token bookkeeping shared by encoders, decoders and methods: which positions a sample keeps, in order, padded to
the batch's largest count; gathering them; putting them back among mask tokens.

Samples of one batch may keep (or mask) different numbers of tokens. Every helper works on padded ``(B, K)``
position ids plus a ``(B, K)`` validity (None when every sample has the same count: the fast path).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from maskvid.errors import ConfigError, InputError


def reads_freely(value: torch.Tensor) -> bool:
    """Whether reading ``value`` costs nothing: a host tensor outside ``torch.compile`` (a GPU tensor's read waits for
    the device, and splits a compiled graph)."""
    return value.device.type == "cpu" and not torch.compiler.is_compiling()


def order_ids(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each sample's selected positions of ``(B, N)`` bool ``selected``, in order, padded to the largest count.

    Returns ids ``(B, K)`` (padding slots hold unselected positions) and validity ``(B, K)`` bool, or None when
    every sample selects the same count.
    """
    counts = selected.sum(1)
    per_sample = counts.tolist()  # the padded width is data: one read from the device (it waits for the mask)
    most = max(per_sample, default=0)
    # a stable sort puts each sample's selected positions first, in (t h w) order
    ids = torch.argsort((~selected).to(torch.uint8), dim=1, stable=True)[:, :most]
    if min(per_sample, default=0) == most:
        return ids, None
    return ids, torch.arange(most, device=selected.device)[None, :] < counts[:, None]


class MaskOrder(NamedTuple):
    """:func:`order_ids` of a ``(B, N)`` mask's visible (``~mask``) and masked positions, worked out where the mask
    was made.

    The padded width of the ids is data; a forward that orders a GPU mask itself must read that width back, a wait
    for the device in every step and a graph break under ``torch.compile``. The loader orders the mask on the host
    (its workers, in ``collate``) and the order travels to the device beside the mask; a forward handed it reads
    nothing back. ``visible_everywhere`` / ``masked_everywhere``: every sample has a visible / a masked token (an
    encoder that drops masked tokens needs the first).
    """

    visible_ids: torch.Tensor  # (B, K)
    visible_valid: torch.Tensor | None  # (B, K), None when every sample keeps K
    masked_ids: torch.Tensor  # (B, M)
    masked_valid: torch.Tensor | None  # (B, M), None when every sample masks M
    visible_everywhere: bool
    masked_everywhere: bool

    @classmethod
    def of(cls, mask: torch.Tensor) -> MaskOrder:
        """The order of ``mask`` (meant for a host mask: it reads the counts)."""
        if mask.dim() != 2 or mask.dtype != torch.bool:
            raise InputError("mask", f"expected a bool (B, N) mask, got {mask.dtype} {tuple(mask.shape)}")
        return cls(*order_ids(~mask), *order_ids(mask), bool((~mask).any(1).all()), bool(mask.any(1).all()))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskOrder:
        return self._replace(**{k: getattr(self, k).to(device, non_blocking=non_blocking)
                                for k in ("visible_ids", "visible_valid", "masked_ids", "masked_valid")
                                if getattr(self, k) is not None})

    def inverse(self) -> MaskOrder:
        """The order of ``~mask``: visible and masked swapped."""
        return MaskOrder(self.masked_ids, self.masked_valid, self.visible_ids, self.visible_valid,
                         self.masked_everywhere, self.visible_everywhere)

    @property
    def masked(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(ids, valid)`` of the masked positions, as ``order_ids(mask)`` gives them."""
        return self.masked_ids, self.masked_valid


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, N, ...)`` at positions ``ids`` ``(B, K)`` → ``(B, K, ...)`` (values or class ids alike)."""
    index = ids.view(*ids.shape, *([1] * (x.dim() - 2))).expand(*ids.shape, *x.shape[2:])
    return x.gather(1, index)


def fill_masked(x: torch.Tensor, ids: torch.Tensor | None, valid: torch.Tensor | None, mask_token: torch.Tensor,
                n: int) -> torch.Tensor:
    """Kept tokens ``x`` ``(B, K, d)`` at positions ``ids`` → the full ``(B, N, d)`` sequence, every other position
    holding ``mask_token`` ``(1, 1, d)``. With ``ids`` None, ``x`` already holds all N tokens and is returned."""
    if ids is None:
        return x
    b = x.shape[0]
    fill = mask_token.to(x.dtype).expand(b, n, -1)
    if valid is not None:  # padding slots point at hidden positions: keep the mask token there
        x = torch.where(valid[..., None], x, gather_tokens(fill, ids))
    return fill.scatter(1, ids[..., None].expand_as(x), x)  # (B, N, d), kept tokens in place


def token_grid(patch: tuple[int, int, int], frames: int, height: int, width: int | None = None) -> tuple[int, int, int]:
    """The token grid ``(T', H', W')`` of a ``frames × height × width`` clip cut into ``patch`` tubelets (width
    defaults to height: square crops); a tubelet that does not divide the clip is a ConfigError on ``model.patch``."""
    t, p, q = patch
    width = height if width is None else width
    if frames % t or height % p or width % q:
        raise ConfigError("model.patch", f"tubelet {tuple(patch)} does not divide a {frames}x{height}x{width} clip")
    return frames // t, height // p, width // q


def grid_positions(grid: tuple[int, int, int]) -> torch.Tensor:
    """``(N, 3)`` int64 ``(t, h, w)`` index of every token of ``grid``, in the ``(t h w)`` order tokens are kept."""
    axes = torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")
    return torch.stack([a.flatten() for a in axes], -1)
