"""MaskOrder: the order of a mask made on the host (in the loader's workers) gives every method the result it gets
by ordering the mask itself, and a forward handed it reads nothing back from the device — it traces to one graph,
where ordering the mask in the forward breaks the graph (on a GPU, each break is a wait for the device)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskvid import targets
from maskvid.bench.workloads import build_workload
from maskvid.config import Mam2Config
from maskvid.constants import PAD_TOKEN
from maskvid.data.datasets import collate
from maskvid.errors import InputError
from maskvid.methods.base import prepare_mask_order
from maskvid.methods.mae import MAE
from maskvid.models import DecoderConfig, MaskOrder, ViTConfig, order_ids
from test_mam2 import tiny_mam2
from test_vimpac import batch as vimpac_batch
from test_vimpac import tiny_vimpac

ENCODER = ViTConfig.preset("micro", num_frames=4, size=64)  # 2x4x4 = 32 tokens
N = 32


def uneven_mask(batch: int = 3, seed: int = 0) -> torch.Tensor:
    """Samples hiding different numbers of tokens (the padded path), each keeping and hiding at least one."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, N, generator=g) < torch.linspace(0.5, 0.9, batch)[:, None]
    mask[:, 0], mask[:, -1] = True, False
    return mask


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.data())
def test_the_order_is_order_ids_of_both_sides_of_the_mask(batch, n, data):
    bits = data.draw(st.lists(st.booleans(), min_size=batch * n, max_size=batch * n))
    mask = torch.tensor(bits).view(batch, n)
    order = MaskOrder.of(mask)
    for (ids, valid), expected in ((order[:2], order_ids(~mask)), (order.masked, order_ids(mask))):
        assert torch.equal(ids, expected[0])
        assert (valid is None) == (expected[1] is None) and (valid is None or torch.equal(valid, expected[1]))
    assert order.visible_everywhere == bool((~mask).any(1).all())
    assert order.masked_everywhere == bool(mask.any(1).all())
    inverse = order.inverse()
    assert torch.equal(inverse.visible_ids, order.masked_ids) and inverse.inverse() == order
    assert inverse.visible_everywhere == order.masked_everywhere


def test_collate_orders_a_training_mask_and_leaves_views_alone():
    mask = uneven_mask(2)
    samples = [{"video": torch.zeros(3, 4, 64, 64), "mask": m.view(2, 4, 4)} for m in mask]
    batch = collate(samples)
    assert torch.equal(batch["mask"], mask)
    assert torch.equal(batch["mask_order"].masked_ids, order_ids(mask)[0])
    views = collate([{"mask": torch.zeros(3, 2, 4, 4, dtype=torch.bool)} for _ in range(2)])  # (B, V, N)
    assert views["mask"].shape == (2, 3, N) and "mask_order" not in views


def test_prepare_takes_the_loaders_order_or_makes_one_from_a_host_mask():
    mask = uneven_mask()
    made = prepare_mask_order({"mask": mask}, torch.device("cpu"))
    assert torch.equal(made.visible_ids, order_ids(~mask)[0])
    loaders = MaskOrder.of(mask)
    assert prepare_mask_order({"mask": mask, "mask_order": loaders}, torch.device("cpu")) == loaders
    # a mask already on an accelerator is not read back here: the forward orders it; views are not trained on
    assert prepare_mask_order({"mask": mask.to("meta")}, torch.device("cpu")) is None
    assert prepare_mask_order({"mask": mask[:, None]}, torch.device("cpu")) is None
    with pytest.raises(InputError, match="bool \\(B, N\\) mask"):
        MaskOrder.of(mask.float())


def _mae():
    torch.manual_seed(0)
    return MAE(ENCODER, DecoderConfig(width=64, depth=1, heads=2), targets.build("norm_pixels"))


def _mar():
    torch.manual_seed(0)
    model, _ = build_workload("mar50", "micro", 2)
    return model


def _pretraining_batch(mask):
    return {"video": torch.randn(mask.shape[0], 3, 4, 64, 64, generator=torch.Generator().manual_seed(1)),
            "mask": mask}


CASES = {  # name: (method, batch)
    "mae": (_mae, lambda: _pretraining_batch(uneven_mask())),
    "mam2": (lambda: tiny_mam2(), lambda: {"video": torch.randn(2, 3, 4, 32, 32), "mask": uneven_mask(2).repeat(1, 2)}),
    "mar": (_mar, lambda: {"video": torch.randn(2, 3, 8, 64, 64), "label": torch.tensor([3, 7]),
                           "mask": torch.stack([torch.arange(64) % 2 == k for k in (0, 1)])}),
}


@pytest.mark.parametrize("name", CASES)
def test_the_host_order_gives_the_loss_and_gradients_of_ordering_in_the_forward(name):
    build, make_batch = CASES[name]
    method = build().train()
    torch.manual_seed(2)
    batch = make_batch()
    inputs = method.prepare(batch, torch.device("cpu"))
    assert isinstance(inputs.pop("mask_order"), MaskOrder)  # prepare made it from the host mask
    results = []
    for order in (None, MaskOrder.of(batch["mask"])):
        torch.manual_seed(3)  # the same dropout / drop path draws
        loss = method(**inputs, mask_order=order).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}))
        method.zero_grad(set_to_none=True)
    (loss, grads), (host_loss, host_grads) = results
    assert torch.equal(loss, host_loss) and grads.keys() == host_grads.keys() and grads
    for key, grad in grads.items():
        torch.testing.assert_close(host_grads[key], grad, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["mae", "mar"])
def test_a_forward_handed_the_order_traces_to_one_graph(name):
    """``fullgraph=True`` refuses any graph break: a forward that read the mask's counts back could not trace."""
    build, make_batch = CASES[name]
    method = build().train()
    one_graph_only_with(method, method.prepare(make_batch(), torch.device("cpu")), "mask_order")


def one_graph_only_with(method, inputs: dict, key: str) -> None:
    """The forward traces to one graph with ``inputs``; without ``inputs[key]`` (made on the host) it must read the
    device, and cannot."""
    torch._dynamo.reset()
    try:
        assert torch.compile(method, backend="eager", fullgraph=True)(**inputs).loss.requires_grad
        torch._dynamo.reset()
        with pytest.raises(Exception, match="data-dependent|Data dependent|item"):
            torch.compile(method, backend="eager", fullgraph=True)(**{k: v for k, v in inputs.items() if k != key})
    finally:
        torch._dynamo.reset()


def test_a_sample_with_every_token_masked_is_refused_from_the_order_alone():
    mask = uneven_mask(2)
    mask[1] = True
    method = _mae()
    with pytest.raises(InputError, match="every token masked"):
        method(torch.randn(2, 3, 4, 64, 64), mask, mask_order=MaskOrder.of(mask))


@pytest.mark.parametrize("with_pad", [True, False])
def test_vimpac_learns_on_the_host_what_it_would_read_and_traces_to_one_graph(with_pad):
    """The order of the tokens to predict and whether any id is [PAD] come from the host batch: the same loss and
    gradients as working them out on the device, and a forward with no read left in it."""
    method = tiny_vimpac().train()
    batch = vimpac_batch()
    if not with_pad:
        batch["tokens2"][batch["tokens2"] == PAD_TOKEN] = 1
    inputs = method.prepare(batch, torch.device("cpu"))
    host = {"hidden_order": inputs.pop("hidden_order"), "padded": inputs.pop("padded")}
    assert host["padded"] == with_pad and host["hidden_order"][1] is not None  # the clips hide 5 and 11: padded ids
    results = []
    for extra in ({}, host):
        torch.manual_seed(3)  # the same BERT noise
        loss = method(**inputs, **extra).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}))
        method.zero_grad(set_to_none=True)
    assert torch.equal(results[0][0], results[1][0])
    for key, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][key], grad, atol=0, rtol=0)
    torch._dynamo.reset()
    assert torch.compile(method, backend="eager", fullgraph=True)(**inputs, **host).loss.requires_grad
    torch._dynamo.reset()


def _clip_order_mam2(regressor: bool):
    from maskvid.methods.mam2 import MAM2, MAM2Head
    from test_mam2 import ENCODER as MAM2_ENCODER

    torch.manual_seed(0)
    heads = [MAM2Head("appearance", targets.build("pixels", patch=(1, 8, 8)), depth=1),
             MAM2Head("order", targets.build("clip_order"), depth=1)]
    return MAM2(MAM2_ENCODER, heads, Mam2Config(regressor=regressor)).train()


@pytest.mark.parametrize("regressor", [True, False])
@pytest.mark.parametrize("even", [True, False])
def test_mam2_orders_its_masked_tubes_on_the_host_and_traces_to_one_graph(regressor, even):
    """MAM²'s clip order: the masked tubes picked with the host's ``tube_order`` give the loss of picking them by
    a boolean index (the mean cross-entropy over every masked tube of the batch, by hand), the same with uneven
    tube counts (padded slots weigh nothing), and the forward reads nothing back."""
    method = _clip_order_mam2(regressor)
    g = torch.Generator().manual_seed(4)
    tube = torch.stack([torch.randperm(16, generator=g) < 12 for _ in range(2)])  # 12 masked tubes each
    if not even:
        tube[1, tube[1].nonzero()[:3]] = False  # 9 in the second sample
    batch = {"video": torch.randn(2, 3, 4, 32, 32, generator=g), "mask": tube.repeat(1, 4),
             "clip_order": torch.randint(2, (2, 16), generator=g)}
    inputs = method.prepare(batch, torch.device("cpu"))
    ids, valid = inputs["tube_order"]
    assert (valid is None) == even and ids.shape[1] == int(tube.sum(1).max())
    torch.manual_seed(3)
    out = method(**inputs)
    logits = out.preds["order"].view(2, -1, 2)
    by_index = torch.cat([logits[b, : int(tube[b].sum())] for b in range(2)])  # each sample's tubes, in order
    expected = torch.nn.functional.cross_entropy(by_index, batch["clip_order"][tube])
    torch.testing.assert_close(out.metrics["loss_order"], expected)
    torch.manual_seed(3)
    assert torch.equal(method(**{k: v for k, v in inputs.items() if k != "tube_order"}).loss, out.loss)
    one_graph_only_with(method, inputs, "tube_order")


def test_a_token_classifier_tells_its_encoder_that_tokenizer_ids_hold_no_pad(tmp_path):
    """VIMPAC fine-tuning: ids made by the frozen tokenizer are never [PAD], so the encoder is not left to look
    (a read of the device, and a graph break)."""
    from maskvid.methods.finetune import Classification
    from maskvid.models import VideoClassifier
    from maskvid.models.tokenizer import VQVAE, VQVAEConfig
    from maskvid.models.tokenizers import save_tokenizer
    from maskvid.targets.tokens import TokenIds

    torch.manual_seed(0)
    path = save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16)),
                          str(tmp_path / "tokenizer.safetensors"))
    encoder = ViTConfig(width=32, depth=1, heads=4, num_frames=4, size=32, patch=(1, 8, 8), stem="token",
                        vocab_size=32, attention="t_hw", pos_embed="factorized", cls_token=True, hide="replace",
                        embed_norm=True)
    method = Classification(VideoClassifier(encoder, 3, pool="cls"), 3,
                            tokens=TokenIds(vocab_size=32, tokenizer=path, patch=(1, 8, 8))).train()
    inputs = method.prepare({"video": torch.randn(2, 3, 4, 32, 32), "label": torch.tensor([0, 2])},
                            torch.device("cpu"))
    torch._dynamo.reset()
    assert torch.compile(method, backend="eager", fullgraph=True)(**inputs).loss.requires_grad
    torch._dynamo.reset()


@pytest.mark.parametrize("with_pad", [True, False])
def test_vimpac_knn_features_learn_pad_from_the_host_ids(with_pad):
    method = tiny_vimpac().eval()
    tokens = vimpac_batch()["tokens2"]  # its first clip ends in a [PAD] frame
    if not with_pad:
        tokens[tokens == PAD_TOKEN] = 1
    batch = {"tokens": tokens}
    _, _, cls = method.encoder(tokens, None, return_prefix=True)  # [PAD] found on the device
    told, forward = [], method.encoder.forward
    method.encoder.forward = lambda *a, **kw: told.append(kw.get("padded")) or forward(*a, **kw)
    torch.testing.assert_close(method.features(batch, torch.device("cpu")), cls[:, 0], atol=0, rtol=0)
    assert told == [with_pad]  # known from the host ids: the encoder on a GPU need not read its ids back


def test_mam2_leaves_a_mask_of_the_wrong_shape_to_the_forward_to_name():
    method = _clip_order_mam2(regressor=True)
    batch = {"video": torch.randn(2, 3, 4, 32, 32), "mask": torch.ones(2, 60, dtype=torch.bool),
             "clip_order": torch.zeros(2, 16, dtype=torch.long)}
    inputs = method.prepare(batch, torch.device("cpu"))
    assert "tube_order" not in inputs
    with pytest.raises(InputError, match="mask"):
        method(**inputs)


def test_a_custom_token_net_without_padded_is_not_handed_it(tmp_path):
    from maskvid.methods.finetune import Classification
    from maskvid.models import VideoClassifier
    from maskvid.models.tokenizer import VQVAE, VQVAEConfig
    from maskvid.models.tokenizers import save_tokenizer
    from maskvid.registry import takes_keyword
    from maskvid.targets.tokens import TokenIds

    class OlderNet(VideoClassifier):  # written to the protocol before ``padded``: net(video, mask, order)
        def forward(self, video, mask=None, order=None):
            return super().forward(video, mask, order)

    encoder = ViTConfig(width=32, depth=1, heads=4, num_frames=4, size=32, patch=(1, 8, 8), stem="token",
                        vocab_size=32, attention="t_hw", pos_embed="factorized", cls_token=True, hide="replace")
    net = OlderNet(encoder, 3, pool="cls")
    assert not takes_keyword(net.forward, "padded") and takes_keyword(VideoClassifier(encoder, 3).forward, "padded")
    assert takes_keyword(lambda x, **kw: x, "padded") and not takes_keyword(lambda x, *args: x, "padded")
    path = save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16)),
                          str(tmp_path / "tokenizer.safetensors"))
    method = Classification(net, 3, tokens=TokenIds(vocab_size=32, tokenizer=path, patch=(1, 8, 8)))
    video, label = torch.randn(2, 3, 4, 32, 32), torch.tensor([0, 2])
    assert method(video, target=label, label=label).loss.requires_grad
    assert method.predict(video).shape == (2, 3)
