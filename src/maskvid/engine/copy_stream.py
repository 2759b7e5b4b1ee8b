"""The next batch's host-to-device copies on a stream of their own, so they overlap the step still computing.

A CUDA stream runs its work in order. Copied on the default stream, batch k+1 waits behind step k's optimizer
update and step k+1's forward waits behind the copy: a 64-clip uint8 batch of 16×224² clips is 154 MB, some 4–6 ms
of PCIe a step. The loop queues that copy (and whatever ``prepare`` does on the device: normalizing uint8 clips,
mixup) while the GPU is still busy with step k, so on a side stream the copy engine does it meanwhile. Before the
step uses the batch, the default stream waits for the side stream (an event on the device; the host does not wait),
and every tensor of the batch is marked as used on the default stream, so the caching allocator does not hand its
memory to the next copy while the step still reads it (``Tensor.record_stream``).

Off CUDA there is one stream and nothing to overlap: the copies run where they always did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class CopyStream:
    """``with copies.queue(): inputs = prepare(batch)`` then ``inputs = copies.hand_over(inputs)`` before use."""

    def __init__(self, device: torch.device, enabled: bool = True):
        self.device = device
        self.stream = torch.cuda.Stream(device) if enabled and device.type == "cuda" else None

    @contextlib.contextmanager
    def queue(self) -> Iterator[None]:
        """Device work queued inside goes to the side stream (CUDA), else where it would anyway."""
        if self.stream is None:
            yield
            return
        with torch.cuda.stream(self.stream):
            yield

    def hand_over(self, inputs):
        """``inputs`` (any nesting of dicts, lists, tuples) made ready for the default stream: it waits for the
        side stream's work, and each CUDA tensor is recorded as in use there."""
        if self.stream is None:
            return inputs
        main = torch.cuda.current_stream(self.device)
        main.wait_stream(self.stream)
        for tensor in tensors_on(inputs, "cuda"):
            tensor.record_stream(main)
        return inputs


def tensors_on(value, device_type: str) -> Iterator[torch.Tensor]:
    """Every tensor on a ``device_type`` device in ``value``: a tensor, or dicts, lists and tuples (named ones,
    such as :class:`~maskvid.models.MaskOrder`, too) of them; anything else is passed over."""
    if isinstance(value, torch.Tensor):
        if value.device.type == device_type:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_on(item, device_type)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_on(item, device_type)
