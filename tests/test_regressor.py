"""MAM²'s latent regressor: cross-attention by hand, queries independent of each other, padding never attended."""

from __future__ import annotations

import math

import torch

from maskvid.models.regressor import CrossAttention, LatentRegressor


def test_cross_attention_equals_its_definition():
    torch.manual_seed(0)
    attn = CrossAttention(8, heads=2)
    q, ctx = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    out = attn(q, ctx)
    queries = attn.q(q).reshape(1, 3, 2, 4).transpose(1, 2)
    keys, values = attn.kv(ctx).reshape(1, 5, 2, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(queries @ keys.transpose(-1, -2) / math.sqrt(4), -1)
    expected = attn.proj((weights @ values).transpose(1, 2).reshape(1, 3, 8))
    torch.testing.assert_close(out, expected)


def test_each_query_depends_only_on_itself_and_the_visible_tokens_and_padding_is_ignored():
    torch.manual_seed(0)
    regressor = LatentRegressor(width=16, depth=2, heads=4).eval()
    queries, visible = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False
    out = regressor(queries, visible, valid)
    assert out.shape == (2, 4, 16)
    changed = queries.clone()
    changed[:, 0] += 5.0  # another query changes: the others' latents do not
    torch.testing.assert_close(regressor(changed, visible, valid)[:, 1:], out[:, 1:])
    padded = visible.clone()
    padded[1, 4:] = 100.0  # what sits in padding never matters
    torch.testing.assert_close(regressor(queries, padded, valid), out)
    torch.testing.assert_close(regressor(queries[1:], visible[1:, :4]), out[1:], atol=1e-5, rtol=1e-5)
