"""3D rotary position embedding (``pos_embed: rope``): attention sees only the grid offset between two tokens, the
encoder places dropped-token layouts by their true positions, the MAE decoder rotates too, and the configurations
that cannot carry it are refused."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskvid.errors import CheckpointError, ConfigError
from maskvid.hf import to_hf
from maskvid.methods.base import MaskedPrediction, PredictionHead
from maskvid.models import DecoderConfig, VideoViT, ViTConfig
from maskvid.models.rope import axis_pairs, rotate, rotations
from maskvid.targets import build as build_target
from maskvid.targets.patchify import frames_of

GRID = (3, 4, 5)


def flat(t: int, h: int, w: int, grid=GRID) -> int:
    return (t * grid[1] + h) * grid[2] + w


@settings(max_examples=40, deadline=None)
@given(st.tuples(*(st.integers(0, g - 1) for g in GRID)), st.tuples(*(st.integers(0, g - 1) for g in GRID)),
       st.tuples(*(st.integers(-g + 1, g - 1) for g in GRID)), st.integers(0, 2**31 - 1))
def test_a_query_key_product_depends_only_on_the_grid_offset(a, b, shift, seed):
    moved = [tuple(p + s for p, s in zip(point, shift, strict=True)) for point in (a, b)]
    if any(not 0 <= c < g for point in moved for c, g in zip(point, GRID, strict=True)):
        return  # the shifted pair leaves the grid
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 1, 1, 12, generator=g), torch.randn(1, 1, 1, 12, generator=g)
    ids = torch.tensor([[flat(*a), flat(*b), flat(*moved[0]), flat(*moved[1])]])
    cos, sin = rotations(GRID, 12, ids, 0, torch.device("cpu"))
    turned_q = rotate(q.expand(1, 1, 4, 12), cos, sin)[0, 0]
    turned_k = rotate(k.expand(1, 1, 4, 12), cos, sin)[0, 0]
    torch.testing.assert_close(turned_q[0] @ turned_k[1], turned_q[2] @ turned_k[3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(turned_q.norm(dim=-1), q.norm().expand(4))  # a rotation keeps lengths


def test_rotations_gather_the_grid_table_and_leave_prefix_tokens_unturned():
    full_cos, full_sin = rotations(GRID, 12, None, 0, torch.device("cpu"))  # (1, 1, N, 6)
    ids = torch.tensor([[7, 0, 59], [3, 3, 11]])
    cos, sin = rotations(GRID, 12, ids, 1, torch.device("cpu"))  # one [CLS] first
    assert cos.shape == (2, 1, 4, 6)
    torch.testing.assert_close(cos[:, 0, 0], torch.ones(2, 6))
    torch.testing.assert_close(sin[:, 0, 0], torch.zeros(2, 6))
    torch.testing.assert_close(cos[1, 0, 1:], full_cos[0, 0, ids[1]])
    torch.testing.assert_close(sin[0, 0, 1:], full_sin[0, 0, ids[0]])
    assert axis_pairs(12) == (2, 2, 2) and axis_pairs(32) == (5, 5, 6)


def rope_config(**overrides) -> ViTConfig:
    values = {"width": 48, "depth": 2, "heads": 4, "patch": (2, 8, 8), "num_frames": 4, "size": 24,
              "pos_embed": "rope", **overrides}
    return ViTConfig(**values)


def test_the_encoder_sees_kept_tokens_at_their_true_places():
    """Two visible tokens give the same outputs wherever the pair sits, as long as their offset and contents are
    the same: only relative position reaches attention, and each kept token is rotated by its own grid place."""
    c = rope_config()
    torch.manual_seed(0)
    encoder = VideoViT(c).eval()
    grid = c.grid  # (2, 3, 3)
    n = grid[0] * grid[1] * grid[2]
    contents = torch.randn(2, 2 * 8 * 8 * 3)
    outputs = []
    for first, second in ((flat(0, 0, 0, grid), flat(1, 1, 2, grid)), (flat(0, 1, 0, grid), flat(1, 2, 2, grid))):
        values = torch.zeros(n, contents.shape[1])
        values[first], values[second] = contents[0], contents[1]
        video = frames_of(values, grid, c.patch).permute(1, 0, 2, 3)[None]  # (1, C, T, H, W)
        mask = torch.ones(1, n, dtype=torch.bool)
        mask[0, [first, second]] = False
        tokens, layout = encoder(video, mask)
        assert layout.ids.tolist() == [[first, second]]
        outputs.append(tokens)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
    sincos = VideoViT(rope_config(pos_embed="sincos")).eval()  # a table breaks the symmetry: the test can fail
    sincos.load_state_dict(encoder.state_dict())
    assert not torch.allclose(sincos(video, mask)[0], outputs[1], atol=1e-3)


def test_a_rope_mae_trains_every_parameter_and_its_decoder_rotates():
    c = rope_config()
    decoder = DecoderConfig(width=24, depth=1, heads=2)
    head = PredictionHead("norm_pixels", c, decoder, build_target("norm_pixels", patch=c.patch))
    method = MaskedPrediction(c, [head])
    assert all(block.rope for block in method.encoder.blocks) and all(block.rope for block in head.decoder.blocks)
    assert not head.decoder_pos_embed.adds and not any("pos_embed" in name for name, _ in method.named_parameters())
    video = torch.randn(2, 3, 4, 24, 24)
    mask = torch.zeros(2, 18, dtype=torch.bool)
    mask[:, ::2] = True
    method(video, mask).loss.backward()
    missing = [name for name, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_configurations_that_cannot_carry_rope_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="joint attention"):
        rope_config(attention="divided")
    with pytest.raises(ConfigError, match="model.heads"):
        rope_config(heads=12)  # 4 channels a head: fewer than one pair per axis
    with pytest.raises(ConfigError, match="model.decoder_heads"):
        PredictionHead("pixels", rope_config(), DecoderConfig(width=24, depth=1, heads=6),
                       build_target("pixels", patch=(2, 8, 8)))
    with pytest.raises(ConfigError, match="no position table"):
        VideoViT(rope_config()).pos_embed.table((2, 3, 3))
    head = PredictionHead("pixels", rope_config(), DecoderConfig(width=24, depth=1, heads=2),
                          build_target("pixels", patch=(2, 8, 8)))
    with pytest.raises(CheckpointError, match="pos_embed 'rope'"):
        to_hf(MaskedPrediction(rope_config(), [head]), tmp_path / "hf")


def test_a_rope_checkpoint_fine_tunes_at_another_grid(tmp_path):
    """Nothing to interpolate: the classifier at a longer, larger clip reads every pretrained weight and runs."""
    from maskvid.engine.checkpoint import save_checkpoint
    from maskvid.methods.finetune import Classification
    from maskvid.models import VideoClassifier
    from maskvid.pretrained import load_pretrained

    torch.manual_seed(0)
    c = rope_config()
    head = PredictionHead("pixels", c, DecoderConfig(width=24, depth=1, heads=2), build_target("pixels", patch=c.patch))
    save_checkpoint(str(tmp_path / "run"), 3, MaskedPrediction(c, [head]), {})
    longer = rope_config(num_frames=8, size=32, final_norm=False)
    clf = Classification(VideoClassifier(longer, 5), 5)
    report = load_pretrained(clf, tmp_path / "run", "net.", longer, skip=("encoder.norm.",))
    assert not [name for name in report["fresh"] if name.startswith("net.encoder.")]
    logits = clf.net(torch.randn(2, 3, 8, 32, 32))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def test_mam2_refuses_rope_before_building():
    from maskvid.config import load_config
    from maskvid.recipes import build_method

    config = load_config("configs/pretrain/mam2_micro.yaml", ["model.attention=joint", "model.pos_embed=rope",
                                                           "heads=[{target: pixels}]"])
    with pytest.raises(ConfigError, match="MAM² shares the encoder's position table"):
        build_method(config)
