"""VIMPAC's T,H|W layer (App. A.1, eq. 9–15) against a slow reference that loops over time, rows and columns
token by token, with the block's own weights; the [CLS] averaging likewise; and the layer inside an encoder."""

from __future__ import annotations

import math

import pytest
import torch

from maskvid.errors import ConfigError, InputError
from maskvid.models import TokenLayout, VideoViT, ViTConfig
from maskvid.models.axial import AxialBlock

GRID = (2, 3, 4)
DIM, HEADS = 8, 2


def attend(attn, query, context):
    """eq. 9 for one query vector over a list of context vectors, head by head, with ``attn``'s projections."""
    a = attn.qkv.out_features // 3
    w, bias = attn.qkv.weight, attn.qkv.bias
    q = w[:a] @ query + bias[:a]
    outs = []
    for head in range(attn.heads):
        part = slice(head * a // attn.heads, (head + 1) * a // attn.heads)
        scores = torch.stack([(q[part] @ (w[a:2 * a][part] @ c + bias[a:2 * a][part])) for c in context])
        weights = torch.softmax(scores / math.sqrt(part.stop - part.start), 0)
        values = torch.stack([w[2 * a:][part] @ c + bias[2 * a:][part] for c in context])
        outs.append(weights @ values)
    return torch.cat(outs)


def lines_along(axis: int) -> list[list[tuple[int, int, int]]]:
    """Every line of the grid along ``axis``, as lists of (t, i, j) positions, in order."""
    others = [a for a in range(3) if a != axis]
    lines = []
    for a in range(GRID[others[0]]):
        for b in range(GRID[others[1]]):
            line = []
            for k in range(GRID[axis]):
                index = [0, 0, 0]
                index[others[0]], index[others[1]], index[axis] = a, b, k
                line.append(tuple(index))
            lines.append(line)
    return lines


def reference(block: AxialBlock, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cls`` (D,), ``x`` (T, H, W, D) → the block's output, one token at a time: per attention block, each axis
    attends along its line with the [CLS] first (eq. 9), the axes' outputs are concatenated (eq. 11) and the
    [CLS]'s averaged over lines (eq. 15), then projected, added and LayerNorm-ed (eq. 10); then the MLP (eq. 14)."""
    for attns, proj, norm in zip(block.attn, block.proj, block.norms, strict=True):
        token_parts: dict[tuple[int, int, int], list[torch.Tensor]] = {}
        cls_parts = []
        for attn in attns:
            lines = lines_along(attn.axis)
            cls_parts.append(torch.stack([attend(attn, cls, [cls] + [x[i] for i in line]) for line in lines]).mean(0))
            for line in lines:
                for i in line:
                    token_parts.setdefault(i, []).append(attend(attn, x[i], [cls] + [x[j] for j in line]))
        new = torch.empty_like(x)
        for i, parts in token_parts.items():
            new[i] = norm(x[i] + proj(torch.cat(parts)))
        cls, x = norm(cls + proj(torch.cat(cls_parts))), new
    return block.norm_mlp(cls + block.mlp(cls)), block.norm_mlp(x + block.mlp(x))


@pytest.mark.parametrize("layout", ["t,h|w", "t,h,w", "h|w,t"])
def test_the_axial_layer_equals_a_token_by_token_reference(layout):
    torch.manual_seed(0)
    block = AxialBlock(DIM, HEADS, layout=layout).eval()
    for p in block.parameters():  # LayerNorms away from identity: the reference must use them right
        p.data.normal_(0, 0.3)
    cls, x = torch.randn(DIM), torch.randn(*GRID, DIM)
    with torch.no_grad():
        out = block(torch.cat([cls[None], x.reshape(-1, DIM)])[None], TokenLayout(GRID, prefix=1))[0]
        cls_ref, x_ref = reference(block, cls, x)
    torch.testing.assert_close(out[0], cls_ref, atol=1e-5, rtol=1e-5)  # [CLS]: the mean over lines (eq. 15)
    torch.testing.assert_close(out[1:], x_ref.reshape(-1, DIM), atol=1e-5, rtol=1e-5)


def test_without_a_cls_a_token_reaches_only_its_tube_then_its_rows_and_columns():
    torch.manual_seed(0)
    block = AxialBlock(DIM, HEADS).eval()  # T,H|W
    x = torch.randn(1, *GRID, DIM)
    with torch.no_grad():
        out = block(x.view(1, -1, DIM), TokenLayout(GRID)).view(*GRID, DIM)
        x[0, 0, 0, 0] += 1.0  # one token changes: time carries it along its tube, space along row 0 and column 0
        again = block(x.view(1, -1, DIM), TokenLayout(GRID)).view(*GRID, DIM)
    changed = (again - out).abs().amax(-1) > 1e-6  # (T, H, W)
    assert changed[:, 0, :].all() and changed[:, :, 0].all()
    assert not changed[:, 1:, 1:].any()


def test_t_hw_encoders_build_train_and_refuse_what_they_cannot_do():
    config = ViTConfig.preset("micro", num_frames=4, size=32, patch=(1, 8, 8), stem="frame", attention="t_hw",
                              cls_token=True, hide="replace", heads=4, width=96)
    enc = VideoViT(config)
    video, mask = torch.randn(2, 3, 4, 32, 32), torch.rand(2, 64) < 0.15
    tokens, layout, cls = enc(video, mask, return_prefix=True)
    assert tokens.shape == (2, 64, 96) and cls.shape == (2, 1, 96)
    (tokens.sum() + cls.sum()).backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert VideoViT(ViTConfig.preset("micro", num_frames=4, size=32, patch=(2, 8, 8), attention="thw_split",
                                     hide="replace"))
    with pytest.raises(ConfigError, match="model.heads"):
        AxialBlock(96, 4, layout="t|h|w")  # 4 heads do not split three ways
    with pytest.raises(ConfigError, match="model.attention"):
        AxialBlock(96, 3, layout="t,h")
    with pytest.raises(ConfigError, match="model.layer_scale"):
        AxialBlock(96, 4, layer_scale=0.1)
    with pytest.raises(ConfigError, match="model.hide"):  # hidden tokens dropped: no grid left to attend along
        ViTConfig.preset("micro", num_frames=4, size=32, patch=(2, 8, 8), attention="t_hw", heads=4)
    block = AxialBlock(96, 4)
    with pytest.raises(InputError, match="replace"):
        block(torch.randn(1, 3, 96), TokenLayout((2, 2, 2), ids=torch.tensor([[0, 3, 5]])))


def test_the_token_head_is_tied_to_the_embedding_and_never_predicts_special_ids():
    from maskvid.methods.losses import masked_cross_entropy
    from maskvid.models.heads import TokenHead
    from maskvid.models.stems import TokenStem

    torch.manual_seed(0)
    stem = TokenStem(3, 16, (1, 1, 1), vocab_size=10)  # 10 codes + [MASK]
    head = TokenHead(stem, vocab_size=10)
    assert head.weight.data_ptr() == stem.weight.data_ptr()  # the same storage, not a copy
    assert not any(p is stem.weight for p in head.parameters())  # trained, moved and saved once, by the stem
    hidden = torch.randn(2, 5, 16)
    logits = head(hidden)
    assert logits.shape == (2, 5, 10)  # [MASK] (id 10) is not a class
    pad = -100  # positions of [PAD] frames carry the ignored id: they never enter the CE
    ids = torch.tensor([[1, 2, 3, pad, pad], [4, 5, 6, 7, 8]])
    loss = masked_cross_entropy(logits, ids)
    kept = torch.nn.functional.cross_entropy(logits.reshape(-1, 10)[ids.flatten() != pad],
                                             ids.flatten()[ids.flatten() != pad])
    torch.testing.assert_close(loss, kept)
    loss.backward()
    assert stem.weight.grad is not None and stem.weight.grad[10].abs().sum() == 0  # [MASK]'s row untouched


def test_the_contrastive_head_is_moco_v3s_projector():
    from maskvid.models.heads import ContrastiveHead

    head = ContrastiveHead(96)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [(96, 4096), (4096, 4096), (4096, 256)]
    assert len(norms) == 3 and norms[-1].affine is False and norms[0].affine
    out = head(torch.randn(4, 96))
    assert out.shape == (4, 256)
    out.square().mean().backward()
    assert all(p.grad is not None for p in head.parameters())
