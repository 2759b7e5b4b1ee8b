"""Hugging Face VideoMAE interop: same loss and predictions (atol 1e-5) for the same frames and mask, both bias
layouts, classification logits, to_hf round trips through transformers, the original VideoMAE .pth layout."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from maskvid.errors import CheckpointError
from maskvid.hf import from_hf, from_hf_layout, to_hf
from maskvid.methods.mae import MAE
from maskvid.models import VideoClassifier

transformers = pytest.importorskip("transformers", reason="the hf extra (pip install maskvid[hf]) is in .[dev]")
from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEForVideoClassification  # noqa: E402

SMALL = dict(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=48, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=96, decoder_hidden_size=32, decoder_num_hidden_layers=2,
             decoder_num_attention_heads=4, decoder_intermediate_size=64)


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random (HF initialises biases and norms to 0/1, which would hide mapping mistakes)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model.eval()


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(2, 4, 3, 32, 32, generator=g)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, torch.randperm(8, generator=g)[:5]] = True  # HF needs equal counts per sample
    return pixel_values, mask


@pytest.mark.parametrize("norm_pix_loss", [True, False])
@pytest.mark.parametrize("use_mean_pooling", [False, True])
def test_pretraining_same_loss_and_predictions(tmp_path, norm_pix_loss, use_mean_pooling):
    hf = randomized(VideoMAEForPreTraining(VideoMAEConfig(**SMALL, norm_pix_loss=norm_pix_loss,
                                                          use_mean_pooling=use_mean_pooling)))
    hf.save_pretrained(tmp_path)
    ours = from_hf(tmp_path).eval()
    assert isinstance(ours, MAE)
    pixel_values, mask = inputs()
    with torch.no_grad():
        theirs, mine = hf(pixel_values, bool_masked_pos=mask), ours(from_hf_layout(pixel_values), mask)
    torch.testing.assert_close(mine.pred, theirs.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.loss, theirs.loss, atol=1e-5, rtol=1e-5)


def test_older_q_bias_layout_loads_the_same(tmp_path):
    hf = randomized(VideoMAEForPreTraining(VideoMAEConfig(**SMALL)))
    hf.save_pretrained(tmp_path / "new")
    state = load_file(tmp_path / "new" / "model.safetensors")
    old = {}
    for key, value in state.items():
        key = key.replace("attention.attention.query.bias", "attention.attention.q_bias")
        key = key.replace("attention.attention.value.bias", "attention.attention.v_bias")
        old[key] = value
    assert any(k.endswith("q_bias") for k in old)
    (tmp_path / "old").mkdir()
    save_file(old, tmp_path / "old" / "model.safetensors")
    (tmp_path / "old" / "config.json").write_text((tmp_path / "new" / "config.json").read_text())
    pixel_values, mask = inputs()
    with torch.no_grad():
        a = from_hf(tmp_path / "new").eval()(from_hf_layout(pixel_values), mask)
        b = from_hf(tmp_path / "old").eval()(from_hf_layout(pixel_values), mask)
    torch.testing.assert_close(a.pred, b.pred, atol=0, rtol=0)


def test_to_hf_round_trips_through_transformers(tmp_path):
    hf = randomized(VideoMAEForPreTraining(VideoMAEConfig(**SMALL, use_mean_pooling=False)))
    hf.save_pretrained(tmp_path / "a")
    ours = from_hf(tmp_path / "a")
    to_hf(ours, tmp_path / "b")
    back = VideoMAEForPreTraining.from_pretrained(tmp_path / "b").eval()
    pixel_values, mask = inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values, bool_masked_pos=mask).logits,
                                   hf(pixel_values, bool_masked_pos=mask).logits, atol=1e-6, rtol=1e-6)
    again = from_hf(tmp_path / "b")
    for (name, p), (_, q) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("use_mean_pooling", [True, False])
def test_classification_logits(tmp_path, use_mean_pooling):
    config = VideoMAEConfig(**SMALL, use_mean_pooling=use_mean_pooling, num_labels=5)
    hf = randomized(VideoMAEForVideoClassification(config))
    hf.save_pretrained(tmp_path / "a")
    ours = from_hf(tmp_path / "a").eval()
    assert isinstance(ours, VideoClassifier)
    pixel_values, _ = inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(from_hf_layout(pixel_values)), hf(pixel_values).logits, atol=1e-5, rtol=1e-5)
    to_hf(ours, tmp_path / "b")
    back = VideoMAEForVideoClassification.from_pretrained(tmp_path / "b").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values).logits, hf(pixel_values).logits, atol=1e-6, rtol=1e-6)


def test_original_videomae_pth_layout(tmp_path):
    """The original repo's checkpoint: fused qkv, q_bias/v_bias, under a "model" key, saved with torch.save."""
    hf = randomized(VideoMAEForPreTraining(VideoMAEConfig(**SMALL, use_mean_pooling=False)))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    original = {}
    for key, value in ours.state_dict().items():
        if key.startswith("target."):
            continue
        key = key.replace("encoder.patch_embed.", "encoder.patch_embed.proj.").removeprefix("heads.0.")
        original[key] = value
    torch.save({"model": original, "epoch": 799}, tmp_path / "checkpoint.pth")
    loaded = from_hf(tmp_path / "checkpoint.pth", num_frames=4, size=32, heads=4, decoder_heads=4).eval()
    pixel_values, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(from_hf_layout(pixel_values), mask).pred,
                                   hf(pixel_values, bool_masked_pos=mask).logits, atol=1e-4, rtol=1e-4)


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        from_hf(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        from_hf(tmp_path / "empty")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        from_hf(tmp_path / "junk.pth")
