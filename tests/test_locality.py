"""The decoder's locality prior (model.decoder_locality, models/locality.py): its bias, where it is refused, and the
saddle it removes — on smooth textures a neighbour predicts well, the micro MAE's loss leaves its trivial value
within 100 steps with it and not without."""

import pytest
import torch

from maskvid import targets
from maskvid.config import load_config
from maskvid.config.runs import encoder_config
from maskvid.engine.optim import build_optimizer, no_decay_names
from maskvid.errors import CheckpointError, ConfigError
from maskvid.models import DecoderConfig, MAEDecoder
from maskvid.models.locality import LocalityBias, grid_distances

MICRO = "configs/pretrain/videomae_micro.yaml"


def test_the_bias_starts_alibi_like_one_slope_per_head_halving():
    bias = LocalityBias(depth=2, heads=3, slope=2.0)(1, (2, 3, 4), torch.zeros(1))
    assert bias.shape == (3, 24, 24)
    distance = grid_distances((2, 3, 4), torch.device("cpu")).sum(-1)  # |Δt| + |Δh| + |Δw| in patches
    for head, slope in enumerate((2.0, 1.0, 0.5)):
        torch.testing.assert_close(bias[head], -slope * distance)
    # token 0 is (0, 0, 0); token 1 is (0, 0, 1), one patch to the right; token 23 is (1, 2, 3), 6 patches away
    assert bias[0, 0, 1] == -2.0 and bias[0, 0, 23] == -12.0 and bias[0, 0, 0] == 0.0


def test_the_decoder_uses_it_trains_it_and_keeps_it_out_of_weight_decay():
    torch.manual_seed(0)
    config = DecoderConfig(width=32, depth=2, heads=2, locality=1.0)
    decoder = MAEDecoder(config, out_dim=5)
    plain = MAEDecoder(DecoderConfig(width=32, depth=2, heads=2), out_dim=5)
    plain.load_state_dict({k: v for k, v in decoder.state_dict().items() if "locality" not in k})
    x = torch.randn(2, 16, 32)
    out = decoder(x, (1, 4, 4))
    assert not torch.allclose(out, plain(x, (1, 4, 4)))  # the bias changes what each token reads
    out.square().mean().backward()
    assert decoder.locality.slopes.grad.abs().sum() > 0
    assert "locality.slopes" in no_decay_names(decoder)
    assert "locality" not in dict(plain.named_parameters())


def test_bad_values_and_the_methods_without_a_place_for_it_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.decoder_locality"):
        load_config(MICRO, ["model.decoder_locality=-1"])
    with pytest.raises(ConfigError, match="model.decoder_locality"):
        load_config(MICRO, ["method=mam2", "model.decoder_locality=1"])
    from maskvid.hf import to_hf
    from maskvid.recipes import build_method

    model = build_method(load_config(MICRO, ["model.decoder_locality=1"]))
    with pytest.raises(CheckpointError, match="locality"):
        to_hf(model, tmp_path / "hf")


def _smooth_clips(batch: int, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Static Gaussian-smoothed noise, correlation ~2 patches: a masked patch is well predicted by its neighbours."""
    noise = torch.randn(batch, 3, size, size, generator=generator)
    k = torch.fft.fftfreq(size)
    blur = torch.exp(-2 * (torch.pi * 8) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    field = torch.fft.ifft2(torch.fft.fft2(noise) * blur).real
    field = field / field.flatten(1).std(1)[:, None, None, None]
    return (0.7 * field)[:, :, None].expand(batch, 3, frames, size, size).contiguous()


@pytest.mark.parametrize("locality", [None, 2.0])
def test_with_the_prior_the_micro_mae_leaves_the_trivial_loss_within_100_steps(locality):
    from maskvid.methods.base import MaskedPrediction, PredictionHead

    torch.set_num_threads(1)
    config = load_config(MICRO, [] if locality is None else [f"model.decoder_locality={locality}"])
    encoder, m = encoder_config(config), config.model
    decoder = DecoderConfig(width=m.decoder_width, depth=m.decoder_depth, heads=m.decoder_heads, eps=encoder.eps,
                            head_eps=encoder.eps, locality=m.decoder_locality)
    torch.manual_seed(0)
    target = targets.build("norm_pixels", patch=encoder.patch)
    method = MaskedPrediction(encoder, [PredictionHead("norm_pixels", encoder, decoder, target)])
    optimizer = build_optimizer(method, config.optim, 1e-3)
    g = torch.Generator().manual_seed(0)
    t, h, w = encoder.grid
    late = []
    for step in range(100):
        video = _smooth_clips(16, encoder.num_frames, encoder.size, g)
        space = torch.rand(16, h * w, generator=g).argsort(1) < round(0.75 * h * w)  # tube masks 75%
        loss = method(video, space[:, None, :].expand(16, t, h * w).reshape(16, -1)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 80:
            late.append(float(loss.detach()))
    trivial = (2 * 64 - 1) / (2 * 64)  # predicting zero for a per-patch normalized 2×8×8 tubelet channel
    mean = sum(late) / len(late)
    if locality is None:
        assert mean > 0.98 * trivial  # the saddle: the plain decoder has not left it yet
    else:
        assert mean < 0.93 * trivial
