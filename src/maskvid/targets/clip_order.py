"""MAM²'s clip-order target (§2.2, Tab. 1f, after Xu et al. 2019's clip order prediction): each masked tube's
regressed latents are split in time into 2 clips, the clips are shuffled, and a [CLS] on the motion decoder
predicts which of the 2 orders it was given.

The order of each spatial position — 0 as is, 1 swapped — is drawn in the data workers from the sample's
generator (``clip_order`` ``(B, H'·W')``, as masks are: never sampled inside ``forward``); this target hands it to
the method, whose clip-order decoder (:class:`~maskvid.models.decoders.ClipOrderDecoder`) shuffles the masked
tubes by it and is scored by cross-entropy over the 2 orders. It is not a per-token target: the method takes one
label per masked tube, and only tube masking leaves whole tubes to order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskvid.errors import InputError
from maskvid.models.tokens import reads_freely
from maskvid.targets.base import Target

ORDERS = 2  # 2 clips: as is, or swapped (MAM² §2.2)


@dataclass(eq=False)
class ClipOrder(Target):
    """``clip_order`` ``(B, S)`` integer orders in ``[0, 2)``, one per spatial position → the same, as long."""

    name = "clip_order"
    inputs = ("clip_order",)
    kind = "classes"
    per_tube = True  # one label per masked tube, not per token: the method's clip-order decoder reads it

    def __post_init__(self):
        super().__init__()

    @property
    def dim(self) -> int:
        return ORDERS

    @torch.no_grad()
    def forward(self, clip_order: torch.Tensor, **aux) -> torch.Tensor:
        if clip_order.dtype.is_floating_point or clip_order.dim() != 2:
            raise InputError("clip_order", f"expected (B, H'·W') integer orders, got {clip_order.dtype} "
                             f"{tuple(clip_order.shape)}")
        if reads_freely(clip_order):  # a batch's orders on a GPU were checked on the host (check_batch)
            self.check_batch({"clip_order": clip_order})
        return clip_order.long()

    def check_batch(self, batch: dict) -> None:
        orders = batch.get("clip_order")
        if isinstance(orders, torch.Tensor) and orders.numel() and (int(orders.min()) < 0
                                                                    or int(orders.max()) >= ORDERS):
            raise InputError("clip_order", f"orders must be in [0, {ORDERS}), got [{int(orders.min())}, "
                             f"{int(orders.max())}]")
