"""Targets that read their values to check them (token ids, clip orders) do it on the host, in the method's
``prepare``, before the batch is sent; given a device tensor they read nothing (a read would make the host wait for
the GPU in every step). A ``meta`` tensor stands in for the device here: any read of it raises."""

from __future__ import annotations

import pytest
import torch

from maskvid import targets
from maskvid.constants import PAD_TOKEN
from maskvid.errors import InputError
from maskvid.methods.base import MaskedPrediction, PredictionHead
from maskvid.models import DecoderConfig, ViTConfig
from maskvid.targets.clip_order import ClipOrder
from test_vimpac import batch as vimpac_batch
from test_vimpac import tiny_vimpac

ENCODER = ViTConfig.preset("micro", num_frames=4, size=16, patch=(2, 8, 8))  # 2x2x2 = 8 tokens


def test_on_a_device_tensor_the_targets_read_nothing():
    tokens = targets.build("tokens", vocab_size=16)
    ids = torch.full((2, 8), 3, device="meta")
    assert tokens(tokens=ids).device.type == "meta"
    valid = tokens.validity(tokens=ids)  # not None: learning that no id is [PAD] would be a read
    assert valid is not None and valid.device.type == "meta" and valid.shape == (2, 8)
    assert ClipOrder()(clip_order=torch.zeros(2, 4, dtype=torch.long, device="meta")).device.type == "meta"
    # on the host the same calls read freely: the checks and the no-[PAD] fast path
    assert tokens.validity(tokens=torch.full((2, 8), 3)) is None
    padded = torch.full((2, 8), 3)
    padded[1, -1] = PAD_TOKEN
    assert tokens.validity(tokens=padded).sum() == 15
    with pytest.raises(InputError, match="tokens"):
        tokens(tokens=torch.full((2, 8), 16))
    with pytest.raises(InputError, match="clip_order"):
        ClipOrder()(clip_order=torch.full((2, 4), 2))


def test_a_token_id_out_of_range_is_refused_by_prepare_before_the_batch_is_sent():
    torch.manual_seed(0)
    head = PredictionHead("ids", ENCODER, DecoderConfig(width=32, depth=1, heads=2),
                          targets.build("tokens", vocab_size=16))
    method = MaskedPrediction(ENCODER, [head])
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :4] = True
    batch = {"video": torch.randn(2, 3, 4, 16, 16), "mask": mask, "tokens": torch.randint(16, (2, 2, 2, 2))}
    assert set(method.prepare(batch, torch.device("meta"))) == {"video", "mask", "tokens", "mask_order"}
    batch["tokens"][1, 0, 0, 0] = 16
    with pytest.raises(InputError, match=r"tokens.*\[0, 16\)"):
        method.prepare(batch, torch.device("meta"))


def test_clip_orders_and_both_clips_ids_are_checked_on_the_host():
    with pytest.raises(InputError, match="clip_order"):
        ClipOrder().check_batch({"clip_order": torch.tensor([[0, 2]])})
    ClipOrder().check_batch({"clip_order": torch.tensor([[0, 1]])})
    method = tiny_vimpac()
    batch = vimpac_batch()
    method.prepare(batch, torch.device("cpu"))
    batch["tokens2"][0, 0, 0, 0] = -5
    with pytest.raises(InputError, match="tokens2"):
        method.prepare(batch, torch.device("cpu"))
