"""The video ViT, the MAE decoder and classifier: forward + backward on tiny configs, every parameter trained,
variable mask counts equal to one-by-one runs, attention layouts, position-embedding interpolation, bad input."""

from __future__ import annotations

import pytest
import torch

from maskvid import targets
from maskvid.errors import ConfigError, InputError
from maskvid.methods.mae import MAE
from maskvid.models import PRESETS, DecoderConfig, VideoClassifier, VideoViT, ViTConfig

GRID_INPUT = (2, 3, 4, 32, 32)  # (B, C, T, H, W) → grid (2, 4, 4), N = 32 with tubelet (2, 8, 8)


def tiny(**kw) -> ViTConfig:
    return ViTConfig.preset("micro", patch=(2, 8, 8), num_frames=4, size=32, **kw)


def tiny_mae(target="pixels", **kw) -> MAE:
    enc = tiny(**kw)
    return MAE(enc, DecoderConfig(width=32, depth=1, heads=2), targets.build(target, patch=enc.patch))


def random_mask(b: int, n: int, masked: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, m in enumerate(masked):
        mask[i, torch.randperm(n, generator=g)[:m]] = True
    return mask


@pytest.mark.parametrize("attention", ["joint", "divided"])
@pytest.mark.parametrize("pos_embed", ["sincos", "learned", "separable"])
def test_mae_forward_backward_trains_every_parameter(attention, pos_embed):
    torch.manual_seed(0)
    mae = tiny_mae(attention=attention, pos_embed=pos_embed, drop_path=0.1, layer_scale=0.1)
    video = torch.randn(*GRID_INPUT)
    out = mae(video, random_mask(2, 32, [24, 24]))
    assert out.pred.shape == (2, 24, 8 * 8 * 2 * 3) and out.pred_valid is None
    out.loss.backward()
    missing = [n for n, p in mae.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(float(p.grad.abs().sum()) > 0 for n, p in mae.named_parameters() if "mask_token" not in n)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_builds_with_its_width(preset):
    config = ViTConfig.preset(preset)
    assert (config.width, config.depth, config.heads) == PRESETS[preset]
    if preset == "micro":
        enc = VideoViT(ViTConfig.preset("micro", num_frames=4, size=32, patch=(2, 16, 16)))
        tokens, _ = enc(torch.randn(1, 3, 4, 32, 32))
        tokens.sum().backward()
        assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize("attention", ["joint", "divided"])
def test_variable_mask_counts_match_one_by_one(attention):
    torch.manual_seed(0)
    mae = tiny_mae(attention=attention).eval()
    video = torch.randn(3, 3, 4, 32, 32)
    mask = random_mask(3, 32, [20, 28, 12], seed=1)
    with torch.no_grad():
        batch = mae(video, mask)
        assert batch.pred_valid is not None and batch.pred_valid.sum(1).tolist() == [20, 28, 12]
        losses = []
        for i in range(3):
            single = mae(video[i : i + 1], mask[i : i + 1])
            m = int(mask[i].sum())
            torch.testing.assert_close(batch.pred[i, :m], single.pred[0], atol=1e-5, rtol=1e-5)
            losses.append((float(single.loss), m))
    # the batch loss weighs every masked token alike
    expected = sum(loss * m for loss, m in losses) / sum(m for _, m in losses)
    assert float(batch.loss) == pytest.approx(expected, rel=1e-5)


def test_encoder_fast_path_equals_padded_path():
    torch.manual_seed(0)
    enc = VideoViT(tiny()).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    mask = random_mask(2, 32, [16, 16])
    with torch.no_grad():
        fast, layout = enc(video, mask)
        assert layout.valid is None
        uneven = mask.clone()
        uneven[1, (~mask[1]).nonzero()[0]] = True  # one more masked in sample 1 → padded path
        padded, layout2 = enc(video, uneven)
    assert layout2.valid is not None
    torch.testing.assert_close(fast[0], padded[0], atol=1e-5, rtol=1e-5)


def test_divided_equals_joint_structure_without_mask_and_runs_on_new_grid():
    torch.manual_seed(0)
    enc = VideoViT(tiny(attention="divided", pos_embed="learned")).eval()
    with torch.no_grad():
        tokens, layout = enc(torch.randn(1, 3, 8, 48, 32))  # longer and taller than trained: tables interpolated
    assert tokens.shape == (1, 4 * 6 * 4, 96) and layout.grid == (4, 6, 4)


def test_attention_matches_the_textbook_formula():
    torch.manual_seed(0)
    from maskvid.models import Attention

    attn = Attention(16, 2)
    torch.nn.init.normal_(attn.q_bias)
    torch.nn.init.normal_(attn.v_bias)
    x = torch.randn(2, 5, 16)
    q, k, v = (x @ attn.qkv.weight.T).chunk(3, -1)
    q, v = q + attn.q_bias, v + attn.v_bias
    heads = lambda t: t.view(2, 5, 2, 8).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 8**0.5, -1)
    expected = attn.proj((weights @ heads(v)).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_classifier_logits_and_gradients():
    clf = VideoClassifier(tiny(final_norm=False), num_classes=5)
    logits = clf(torch.randn(2, 3, 4, 32, 32))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(p.grad is not None for p in clf.parameters())


def test_bad_input_is_refused_with_the_key():
    with pytest.raises(ConfigError, match="model.patch"):
        ViTConfig(num_frames=15)
    with pytest.raises(ConfigError, match="model.attention.*t_hw"):
        ViTConfig(attention="t_h_w")  # the error lists what exists
    with pytest.raises(ConfigError, match="model.preset"):
        ViTConfig.preset("gigantic")
    with pytest.raises(ConfigError, match="model.heads"):
        ViTConfig(width=100, heads=3)
    enc = VideoViT(tiny())
    with pytest.raises(InputError, match="video"):
        enc(torch.randn(2, 3, 5, 32, 32))
    with pytest.raises(InputError, match="mask"):
        enc(torch.randn(2, 3, 4, 32, 32), torch.zeros(2, 31, dtype=torch.bool))
    with pytest.raises(InputError, match="every token masked"):
        enc(torch.randn(1, 3, 4, 32, 32), torch.ones(1, 32, dtype=torch.bool))


def test_gradient_checkpointing_recomputes_encoder_and_decoder_blocks_with_the_same_gradients():
    """The decoder sees all N tokens, so in MAE pretraining it holds most activations: checkpointing only the
    encoder left a ViT-B batch of 506 where 395 fit without (H100, 80 GB)."""
    g = torch.Generator().manual_seed(0)
    video = torch.randn(*GRID_INPUT, generator=g)
    mask = torch.rand(2, 32, generator=g) < 0.75
    grads, calls = [], []
    for recompute in (False, True):
        torch.manual_seed(0)
        enc = tiny(grad_checkpointing=recompute)
        model = MAE(enc, DecoderConfig(width=32, depth=1, heads=2, grad_checkpointing=recompute),
                    targets.build("pixels", patch=enc.patch)).train()
        count = []
        for block in (model.encoder.blocks[0], model.heads[0].decoder.blocks[0]):  # (recomputation runs no hooks)
            block.forward = _counted(block.forward, count)
        model(video, mask).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
        calls.append(len(count))
    assert calls == [2, 4]  # each block runs again in backward
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def _counted(forward, calls: list):
    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    return counted


def test_order_ids_pads_to_the_largest_count_and_marks_the_padding():
    from maskvid.models.tokens import order_ids

    selected = torch.tensor([[False, True, True, False], [True, False, False, False]])
    ids, valid = order_ids(selected)
    assert ids[0].tolist() == [1, 2] and ids[1, 0] == 0 and valid.tolist() == [[True, True], [True, False]]
    ids, valid = order_ids(torch.tensor([[True, False, True], [False, True, True]]))
    assert ids.tolist() == [[0, 2], [1, 2]] and valid is None  # equal counts: the fast path
