"""Every registered encoder combination — stem × block layout × [CLS] × how masked tokens are hidden — runs forward
and backward with every parameter receiving a gradient; stems embed chosen positions exactly as they embed all."""

from __future__ import annotations

import itertools

import pytest
import torch

from maskvid.errors import ConfigError, InputError
from maskvid.methods.base import MaskedPrediction, PredictionHead
from maskvid.models import LAYOUTS, STEMS, DecoderConfig, VideoViT, ViTConfig, gather_tokens
from maskvid.models.layouts import AXIAL
from maskvid.targets import build as build_target

COMBINATIONS = list(itertools.product(STEMS, LAYOUTS, (False, True), ("drop", "replace")))


def config(stem: str, attention: str = "joint", cls_token: bool = False, hide: str = "drop") -> ViTConfig:
    patch = (1, 8, 8) if stem == "frame" else (2, 8, 8)
    return ViTConfig(width=48, depth=2, heads=6, patch=patch, num_frames=4, size=16, attention=attention,
                     pos_embed="learned", stem=stem, vocab_size=12 if stem == "token" else None, cls_token=cls_token,
                     hide=hide, drop_path=0.1)


def encoder_input(c: ViTConfig, b: int, g: torch.Generator) -> torch.Tensor:
    if c.stem == "token":
        return torch.randint(c.vocab_size, (b, *c.grid), generator=g)
    return torch.randn(b, 3, c.num_frames, c.size, c.size, generator=g)


def uneven_mask(c: ViTConfig, b: int) -> torch.Tensor:
    """Samples hide different counts (the encoder pads), and sample 1 hides a whole temporal slice."""
    n = c.grid[0] * c.grid[1] * c.grid[2]
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[0, ::3] = True
    mask[1, : c.grid[1] * c.grid[2]] = True
    return mask


def test_every_registered_combination_is_covered():
    assert set(STEMS) == {"tubelet", "frame", "token"}
    assert set(LAYOUTS) == {"joint", "divided", "t_hw", "thw_split"}
    assert len(COMBINATIONS) == 48


@pytest.mark.parametrize(("stem", "attention", "cls_token", "hide"), COMBINATIONS)
def test_forward_backward_reaches_every_parameter(stem, attention, cls_token, hide):
    torch.manual_seed(0)
    if attention in AXIAL and hide == "drop":
        with pytest.raises(ConfigError, match="model.hide"):  # axial attention needs the whole grid
            config(stem, attention, cls_token, hide)
        return
    c = config(stem, attention, cls_token, hide)
    encoder = VideoViT(c).train()
    g = torch.Generator().manual_seed(1)
    x, mask = encoder_input(c, 2, g), uneven_mask(c, 2)
    tokens, layout, prefix = encoder(x, mask, return_prefix=True)
    n = c.grid[0] * c.grid[1] * c.grid[2]
    expected = n if hide == "replace" else int((~mask).sum(1).max())
    assert tokens.shape == (2, expected, c.width) and (prefix is not None) == cls_token
    loss = tokens.square().mean() + (prefix.square().mean() if prefix is not None else 0)
    loss.backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


@pytest.mark.parametrize("stem", list(STEMS))
def test_stems_embed_chosen_positions_as_they_embed_all(stem):
    c = config(stem)
    stem_module = VideoViT(c).patch_embed
    x = encoder_input(c, 2, torch.Generator().manual_seed(2))
    ids = torch.tensor([[0, 3, 5], [1, 2, 7]])
    torch.testing.assert_close(stem_module.embed_at(x, ids), gather_tokens(stem_module(x), ids))



@pytest.mark.parametrize("stem", list(STEMS))
def test_the_token_stream_is_contiguous_from_the_stem_through_the_blocks(stem):
    """A residual add keeps its first operand's strides: a stem's transposed view would make every block of a
    full-token encoder copy and add strided (measured on an H100: 30 ms of copies in a 142 ms ViT-B step)."""
    c = config(stem, hide="replace")
    encoder = VideoViT(c)
    x = encoder_input(c, 2, torch.Generator().manual_seed(3))
    assert encoder.patch_embed(x).is_contiguous()
    seen = []
    hooks = [blk.register_forward_hook(lambda m, i, out: seen.append(out.is_contiguous())) for blk in encoder.blocks]
    encoder(x)
    for hook in hooks:
        hook.remove()
    assert seen == [True] * c.depth

def test_replace_hides_masked_tokens_and_leaves_visible_inputs_in_place():
    torch.manual_seed(0)
    c = config("tubelet", hide="replace")
    encoder = VideoViT(c).eval()
    video = torch.randn(1, 3, 4, 16, 16)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 3] = True
    other = video.clone()
    other[:, :, :2, 8:, 8:] = 5.0  # token 3 = (t 0, h 1, w 1): changing a hidden token's pixels changes nothing
    torch.testing.assert_close(encoder(video, mask)[0], encoder(other, mask)[0])
    assert not torch.allclose(encoder(video)[0], encoder(other)[0])
    tokens = VideoViT(config("token", hide="replace")).eval()
    ids = torch.randint(12, (1, 2, 2, 2))
    changed = ids.clone()
    changed.view(1, -1)[0, 3] = (int(ids.view(-1)[3]) + 1) % 12
    torch.testing.assert_close(tokens(ids, mask)[0], tokens(changed, mask)[0])


def test_a_token_stem_method_with_replace_and_cls_trains_every_parameter():
    """VIMPAC's shape: token ids in, [MASK] in place of the hidden ones, a [CLS] prefix, a class-id head."""
    torch.manual_seed(0)
    c = config("token", "divided", cls_token=True, hide="replace")
    method = MaskedPrediction(c, [PredictionHead("tokens", c, DecoderConfig(width=16, depth=1, heads=2),
                                                 build_target("tokens", vocab_size=12))])
    assert method.inputs == ("tokens", "mask")
    ids = torch.randint(12, (2, *c.grid))
    out = method(ids, uneven_mask(c, 2))
    out.loss.backward()
    assert [n for n, p in method.named_parameters() if p.grad is None] == []
    assert "heads.0.mask_token" not in dict(method.named_parameters())  # the encoder returns all N tokens


def test_bad_encoder_configs_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="model.stem"):
        ViTConfig(stem="voxel")
    with pytest.raises(ConfigError, match="model.patch"):
        ViTConfig(stem="frame", patch=(2, 16, 16))
    with pytest.raises(ConfigError, match="model.vocab_size"):
        ViTConfig(stem="token")
    with pytest.raises(ConfigError, match="model.hide"):
        ViTConfig(hide="blur")
    encoder = VideoViT(config("token"))
    with pytest.raises(InputError, match="tokens"):
        encoder(torch.randn(1, 2, 2, 2))
    with pytest.raises(InputError, match="tokens"):
        encoder(torch.full((1, 2, 2, 2), 13))
