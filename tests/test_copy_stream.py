"""The side-stream copy of the next batch: what it hands over, and that off CUDA it changes nothing."""

from __future__ import annotations

import torch

from maskvid.engine.copy_stream import CopyStream, tensors_on
from maskvid.methods.base import prepare_mask_order
from maskvid.models import MaskOrder


def test_every_tensor_of_a_methods_inputs_is_found_for_the_allocator():
    """A tensor the walk missed could have its memory handed to the next copy while the step still reads it."""
    mask = torch.rand(2, 8) < 0.5
    mask[:, 0], mask[:, 1] = True, False
    order = prepare_mask_order({"mask": mask}, torch.device("cpu"))
    assert isinstance(order, MaskOrder)
    hidden = (torch.zeros(2, 3, dtype=torch.long), None)
    inputs = {"video": torch.zeros(2, 3), "mask": mask, "mask_order": order, "hidden_order": hidden,
              "padded": False, "views": [torch.ones(1), {"deep": torch.ones(2)}]}
    found = list(tensors_on(inputs, "cpu"))
    expected = [inputs["video"], mask, *(t for t in order if isinstance(t, torch.Tensor)), hidden[0],
                inputs["views"][0], inputs["views"][1]["deep"]]
    assert len(found) == len(expected) and all(any(f is e for f in found) for e in expected)
    assert not list(tensors_on(inputs, "cuda"))


def test_off_cuda_the_copies_run_where_they_always_did():
    copies = CopyStream(torch.device("cpu"))
    assert copies.stream is None
    inputs = {"video": torch.ones(2)}
    with copies.queue():
        inputs["video"] = inputs["video"] * 2
    assert copies.hand_over(inputs) is inputs and torch.equal(inputs["video"], torch.full((2,), 2.0))
    assert CopyStream(torch.device("cpu"), enabled=False).stream is None
