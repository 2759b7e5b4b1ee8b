"""The decoder's locality prior (model.decoder_locality, models/locality.py): its bias, where it is refused, and the
saddle it removes — on smooth textures a neighbour predicts well, the micro MAE's loss leaves its trivial value
within 100 steps with it and not without."""

import pytest
import torch

from maskvid.config import load_config
from maskvid.engine.optim import no_decay_names
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


@pytest.mark.parametrize("locality", [None, 2.0])
def test_with_the_prior_the_micro_mae_leaves_the_trivial_loss_within_100_steps(locality):
    """``maskvid check-routing --content smooth``: static smoothed noise under tube masks, nothing to copy from
    another frame, but a masked patch's neighbours predict much of it."""
    from maskvid.routing_check import check_routing

    torch.set_num_threads(1)
    config = load_config(MICRO, [] if locality is None else [f"model.decoder_locality={locality}"])
    report = check_routing(config, steps=100, lr=1e-3, log_every=20, content="smooth")
    last = report.losses[-1][1]  # the mean over steps 81-100
    if locality is None:
        assert last > 0.98 * report.trivial and report.left_at is None  # the saddle: not left yet
    else:
        assert last < 0.93 * report.trivial and report.left_at is not None


def test_the_bias_follows_bf16_autocast():
    """SDPA takes a float mask in the query's dtype: under autocast the bias must come along (CPU bf16 here)."""
    torch.manual_seed(0)
    decoder = MAEDecoder(DecoderConfig(width=32, depth=1, heads=2, locality=1.0), out_dim=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = decoder(torch.randn(2, 16, 32), (1, 4, 4))
    out.float().square().mean().backward()
    assert out.dtype == torch.bfloat16 and decoder.locality.slopes.grad.abs().sum() > 0
