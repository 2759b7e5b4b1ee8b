"""The token-input backbone of VIMPAC (App. A.1): [PAD] for frames past a short clip's end, the factorized position
table (eq. 8), the LayerNorm after embedding + position (eq. 7) and the halved attention width of the large-half
model (App. C.1)."""

from __future__ import annotations

import pytest
import torch

from maskvid.constants import PAD_TOKEN
from maskvid.errors import ConfigError, InputError
from maskvid.models import VideoViT, ViTConfig

VOCAB = 12


def token_encoder(attention: str, **kw) -> VideoViT:
    kw = {"heads": 4, "width": 32, **kw}
    config = ViTConfig.preset("micro", num_frames=4, size=24, patch=(1, 8, 8), stem="token", vocab_size=VOCAB,
                              attention=attention, cls_token=True, hide="replace", **kw)
    return VideoViT(config).eval()


@pytest.mark.parametrize("attention", ["joint", "divided", "t_hw", "thw_split"])
def test_pad_tokens_are_never_attended_to(attention):
    torch.manual_seed(0)
    enc = token_encoder(attention, heads=6, width=48)
    ids = torch.randint(VOCAB, (2, 4, 3, 3))
    ids[0, 2:] = PAD_TOKEN  # the first clip's video ended after 2 frames
    mask = torch.zeros(2, 36, dtype=torch.bool)
    mask[:, 4] = True
    tokens, layout, cls = enc(ids, mask, return_prefix=True)
    assert layout.valid is not None and int((~layout.valid).sum()) == 18
    with torch.no_grad():  # what [PAD] embeds as cannot change what a real token or the [CLS] sees
        enc.patch_embed.weight[enc.patch_embed.pad_id].normal_(std=5.0)
    tokens2, _, cls2 = enc(ids, mask, return_prefix=True)
    real = layout.valid
    torch.testing.assert_close(tokens2[real], tokens[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls2, cls, atol=1e-5, rtol=1e-5)
    # the second clip has no [PAD]: it is the same as encoding it alone
    alone, _, cls_alone = enc(ids[1:], mask[1:], return_prefix=True)
    torch.testing.assert_close(alone, tokens[1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls_alone, cls[1:], atol=1e-5, rtol=1e-5)


def test_pad_is_embedded_by_its_own_row_and_never_becomes_mask():
    enc = token_encoder("t_hw")
    stem = enc.patch_embed
    assert stem.weight.shape[0] == VOCAB + 2 and (stem.mask_id, stem.pad_id) == (VOCAB, VOCAB + 1)
    ids = torch.tensor([[3, PAD_TOKEN, VOCAB]])
    torch.testing.assert_close(stem._embed(ids)[0], stem.weight[[3, VOCAB + 1, VOCAB]])
    grid = torch.full((1, 4, 3, 3), PAD_TOKEN)
    grid[0, 0] = 1
    mask = torch.ones(1, 36, dtype=torch.bool)
    embedded = enc._embed_all(grid, mask)  # every position masked: the real ones become [MASK], [PAD] stays
    torch.testing.assert_close(embedded[0, :9], stem.weight[VOCAB].expand(9, -1))
    torch.testing.assert_close(embedded[0, 9:], stem.weight[VOCAB + 1].expand(27, -1))
    with pytest.raises(InputError, match="-1 = \\[PAD\\]"):
        stem._embed(torch.tensor([[-2]]))


def test_dropping_encoders_leave_pad_out_like_a_hidden_token():
    config = ViTConfig.preset("micro", num_frames=4, size=24, patch=(1, 8, 8), stem="token", vocab_size=VOCAB)
    enc = VideoViT(config)
    ids = torch.randint(VOCAB, (1, 4, 3, 3))
    ids[0, 3] = PAD_TOKEN
    mask = torch.zeros(1, 36, dtype=torch.bool)
    mask[0, :5] = True
    tokens, layout = enc(ids, mask)
    assert tokens.shape[1] == 36 - 5 - 9 and int(layout.ids.max()) < 27


def test_factorized_positions_are_time_plus_height_plus_width_and_interpolate():
    torch.manual_seed(0)
    enc = token_encoder("t_hw", pos_embed="factorized")
    pos = enc.pos_embed
    table = pos.table((4, 3, 3)).view(4, 3, 3, -1)
    expected = pos.pos_embed_time[2] + pos.pos_embed_height[1] + pos.pos_embed_width[0]
    torch.testing.assert_close(table[2, 1, 0], expected)
    assert {n for n, _ in pos.named_parameters()} == {"pos_embed_time", "pos_embed_height", "pos_embed_width"}
    bigger = pos.table((8, 6, 5))  # fine-tuning at more frames and a larger size (App. C.1)
    assert bigger.shape == (8 * 6 * 5, 32)
    ids = torch.randint(VOCAB, (1, 8, 6, 5))
    assert enc(ids)[0].shape == (1, 240, 32)


def test_embed_norm_normalizes_embedding_plus_position_before_the_first_block():
    enc = token_encoder("t_hw", pos_embed="factorized", embed_norm=True)
    seen = {}
    enc.blocks[0].register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
    ids = torch.randint(VOCAB, (2, 4, 3, 3))
    enc(ids)
    h0 = enc.embed_norm(enc.patch_embed(ids) + enc.pos_embed.table((4, 3, 3)))  # eq. 7
    torch.testing.assert_close(seen["x"][:, 1:], h0)
    torch.testing.assert_close(seen["x"][:, :1], enc.embed_norm(enc.cls_token).expand(2, -1, -1))


def test_halved_attention_width():
    enc = token_encoder("t_hw", attn_ratio=0.5, mlp_ratio=2.0)
    block = enc.blocks[0]
    assert block.attn[0][0].qkv.out_features == 3 * 16  # time: half of 32
    assert [a.qkv.out_features for a in block.attn[1]] == [3 * 8, 3 * 8]  # rows | columns: a quarter each
    assert block.proj[0].in_features == 16 and block.mlp.fc1.out_features == 64
    assert enc(torch.randint(VOCAB, (1, 4, 3, 3)))[0].shape == (1, 36, 32)
    with pytest.raises(ConfigError, match="model.attn_ratio"):
        ViTConfig.preset("micro", attn_ratio=0.5)  # joint attention has no width of its own
    with pytest.raises(ConfigError, match="model.attn_ratio"):
        token_encoder("t_hw", attn_ratio=0.3)  # 9.6 channels over 4 heads
