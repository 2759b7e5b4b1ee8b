"""MAM²: the alignment target carries no gradient, the decoders see only the masked tokens, and every Table 2
switch builds and trains."""

from __future__ import annotations

import os

import pytest
import torch

from maskvid import targets
from maskvid.config import Mam2Config, load_config
from maskvid.engine.logging import read_metrics
from maskvid.errors import ConfigError, InputError
from maskvid.methods.mam2 import MAM2, MAM2Head
from maskvid.models import ViTConfig
from maskvid.models.tokenizer import VQVAE, VQVAEConfig
from maskvid.models.tokenizers import save_tokenizer
from maskvid.models.tokens import order_ids
from maskvid.recipes import build_method, pretrain

PRETRAIN = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "videomae_micro.yaml")
ENCODER = ViTConfig.preset("micro", patch=(1, 8, 8), num_frames=4, size=32, attention="divided",
                           pos_embed="separable", stem="frame")


def tiny_mam2(**options) -> MAM2:
    torch.manual_seed(0)
    heads = [MAM2Head("appearance", targets.build("pixels", patch=(1, 8, 8)), depth=2),
             MAM2Head("motion", targets.build("rgb_diff", patch=(1, 8, 8)), depth=1)]
    return MAM2(ENCODER, heads, Mam2Config(**options))


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, torch.randperm(64, generator=g)[:48]] = True  # 75% hidden
    return torch.randn(2, 3, 4, 32, 32, generator=g), mask


def test_the_alignment_target_carries_no_gradient_to_the_encoder():
    method = tiny_mam2()
    video, mask = batch()
    method.latents(video, mask)[3]["loss_alignment"].backward()
    through_method = {n: p.grad.clone() for n, p in method.encoder.named_parameters() if p.grad is not None}
    method.zero_grad()
    # the same term with the target computed apart and detached by hand
    visible, layout = method.encoder(video, mask)
    masked_ids, _ = order_ids(mask)
    positions = method._positions(layout.grid, visible)
    regressed = method.regressor(method.mask_query + positions[masked_ids], method.proj(visible), layout.valid)
    truth = method.proj(method.encoder(video, ~mask)[0]).detach()
    torch.nn.functional.mse_loss(regressed, truth).backward()
    by_hand = {n: p.grad for n, p in method.encoder.named_parameters() if p.grad is not None}
    assert through_method.keys() == by_hand.keys() and through_method
    for name, grad in through_method.items():
        torch.testing.assert_close(grad, by_hand[name], atol=1e-6, rtol=1e-5)


def test_the_decoders_receive_exactly_the_masked_tokens():
    method = tiny_mam2().eval()
    video, mask = batch()
    seen = []
    method.decoders[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    reference = method(video, mask).preds
    decoder_in, _, gather, _ = method.latents(video, mask)
    assert not gather and seen[0].shape == (2, 48, ENCODER.width) and torch.equal(seen[0], decoder_in)
    # the visible tokens changed once the regressor has read them: nothing reaches the decoders
    def change_visible(module, args, out):
        args[1].add_(100.0)  # in place, after the regressor has used them; the hook returns None: output kept

    handle = method.regressor.register_forward_hook(change_visible)
    changed = method(video, mask).preds
    handle.remove()
    for name in reference:
        torch.testing.assert_close(changed[name], reference[name])


@pytest.mark.parametrize("switch", ["default", "coupled", "no_regressor", "no_alignment", "no_appearance",
                                    "no_motion", "narrow", "clip_order"])
def test_every_table2_switch_builds_and_trains(switch, synth_motion, tmp_path):
    tokenizer = save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16)),
                               str(tmp_path / "tokenizer.safetensors"))
    appearance = f"{{target: tokens, options: {{tokenizer: {tokenizer}}}, decoder_depth: 2, name: appearance}}"
    motion = "{target: rgb_diff, decoder_depth: 1, name: motion}"
    order = "{target: clip_order, decoder_depth: 1, name: motion}"  # Tab. 1f's clip-order motion target
    heads = {"no_appearance": f"[{motion}]", "no_motion": f"[{appearance}]",
             "clip_order": f"[{appearance}, {order}]"}.get(switch, f"[{appearance}, {motion}]")
    mam2 = {"coupled": {"mam2.coupled": "true"}, "no_regressor": {"mam2.regressor": "false"},
            "no_alignment": {"mam2.alignment": "false"}, "narrow": {"mam2.width": 64, "mam2.heads": 4}}.get(switch, {})
    overrides = {"output_dir": str(tmp_path / "run"), "method": "mam2", "data.train_list":
                 os.path.join(synth_motion, "train.csv"), "data.num_frames": 4, "data.size": 32,
                 "model.patch": "[1, 8, 8]", "model.attention": "divided", "model.pos_embed": "separable",
                 "model.stem": "frame", "mask.strategy": "tube", "mask.ratio": 0.75, "heads": heads,
                 "train.batch_size": 2,
                 "train.num_workers": 0, "train.max_steps": 2, "train.log_every": 1, "train.progress": False,
                 "train.checkpoint_every": 2, **mam2}
    config = load_config(PRETRAIN, [f"{k}={v}" for k, v in overrides.items()] + ["target=null"])
    assert pretrain(config).step == 2
    logged = {k for r in read_metrics(str(tmp_path / "run")) for k in r}
    expected = {"appearance": "no_appearance", "motion": "no_motion"}
    for name, absent in expected.items():
        assert (f"m_loss_{name}" in logged) == (switch != absent)
    assert ("m_loss_alignment" in logged) == (switch not in ("no_regressor", "no_alignment"))
    assert ("m_acc_motion" in logged) == (switch == "clip_order")


def tube_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tube = torch.zeros(2, 16, dtype=torch.bool)
    tube[:, torch.randperm(16, generator=g)[:12]] = True
    return torch.randn(2, 3, 4, 32, 32, generator=g), tube.repeat(1, 4), torch.randint(2, (2, 16), generator=g)


@pytest.mark.parametrize("regressor", [True, False])
def test_clip_order_shuffles_each_masked_tube_by_its_label(regressor):
    from maskvid.models.decoders import ClipOrderDecoder

    tubes = torch.arange(2 * 4 * 1.0).reshape(2, 4, 1)
    shuffled = ClipOrderDecoder.shuffled(tubes, torch.tensor([0, 1]))
    assert shuffled[0, :, 0].tolist() == [0, 1, 2, 3] and shuffled[1, :, 0].tolist() == [6, 7, 4, 5]
    torch.manual_seed(0)
    heads = [MAM2Head("appearance", targets.build("pixels", patch=(1, 8, 8)), depth=1),
             MAM2Head("order", targets.build("clip_order"), depth=1)]
    method = MAM2(ENCODER, heads, Mam2Config(regressor=regressor))
    video, mask, order = tube_batch()
    out = method(video, mask, clip_order=order)
    assert out.preds["order"].shape == (2 * 12, 2)  # one prediction per masked tube
    assert 0 <= float(out.metrics["acc_order"]) <= 1
    out.loss.backward()
    assert all(p.grad is not None for p in method.order_decoders.parameters())
    flipped = method(video, mask, clip_order=1 - order).preds["order"]
    assert not torch.allclose(flipped, out.preds["order"])  # the decoder reads the shuffled tubes


def test_clip_order_configs_that_cannot_work_are_refused():
    heads = [MAM2Head("order", targets.build("clip_order"), depth=1)]
    with pytest.raises(ConfigError, match="mam2.coupled"):
        MAM2(ENCODER, heads, Mam2Config(coupled=True))
    with pytest.raises(ConfigError, match="temporal"):
        MAM2(ViTConfig.preset("micro", patch=(4, 8, 8), num_frames=4, size=32), heads)
    base = ["method=mam2", "target=null", "heads=[{target: clip_order}]", "model.patch=[1, 16, 16]", "model.stem=frame"]
    with pytest.raises(ConfigError, match="mask.strategy"):
        build_method(load_config(PRETRAIN, base + ["mask.strategy=random"]))
    with pytest.raises(ConfigError, match="method: mam2"):
        build_method(load_config(PRETRAIN, ["target=null", "heads=[{target: clip_order}]"]))


def test_bad_mam2_configs_are_refused():
    with pytest.raises(ConfigError, match="mam2.alpha"):
        load_config(PRETRAIN, ["method=mam2", "mam2.alpha=-1"])
    with pytest.raises(ConfigError, match="heads"):
        MAM2(ENCODER, [], Mam2Config())
    video, mask = batch()
    with pytest.raises(InputError, match="video"):
        tiny_mam2()(mask=mask)
    with pytest.raises(InputError, match="mask"):
        tiny_mam2()(video, torch.zeros_like(mask))
    with pytest.raises(InputError, match="mask"):  # a training batch's mask is checked on the host, before it is sent
        tiny_mam2().prepare({"video": video, "mask": torch.zeros_like(mask)}, torch.device("cpu"))
    with pytest.raises(ConfigError, match="mask"):
        build_method(load_config(PRETRAIN, ["method=mam2", "mask=null"]))
    with pytest.raises(ConfigError, match="mam2.width"):
        build_method(load_config(PRETRAIN, ["method=mam2", "mam2.width=100", "mam2.heads=3"]))


def test_an_online_raft_flow_target_runs_on_the_clip_between_consecutive_frames(tmp_path):
    from torchvision.models.optical_flow import raft_small

    from maskvid.motion.raft import RaftFlow
    from maskvid.targets.patchify import patchify

    torch.manual_seed(0)
    weights = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)  # random weights in torchvision's layout
    target = targets.build("flow", patch=(1, 16, 16), stride=4, flow="raft_small", raft_weights=str(weights),
                           online=True)
    assert target.inputs == ("video",) and target.dim == 16 * 16 * 2
    frames = torch.randint(0, 256, (3, 32, 48, 3), dtype=torch.uint8)  # (T, H, W, C)
    mean, std = torch.tensor(targets.IMAGENET_MEAN), torch.tensor(targets.IMAGENET_STD)
    video = ((frames.float() / 255 - mean) / std).permute(3, 0, 1, 2)[None]  # (1, C, T, H, W) normalized
    values = target(video=video)
    assert values.shape == (1, 3 * 2 * 3, 512)
    by_pair = RaftFlow("raft_small", str(weights))  # the per-pair path the data workers use, on uint8 frames
    expected = torch.stack([torch.from_numpy(by_pair(frames[t].numpy(), frames[t + 1].numpy())).permute(2, 0, 1)
                            for t in range(2)] + [torch.zeros(2, 32, 48)])  # (T, 2, H, W), the last frame 0
    expected = patchify(expected.permute(1, 0, 2, 3)[None], (1, 16, 16)).flatten(2)  # (1, N, p·p·2), (t p q c)
    torch.testing.assert_close(values, expected, atol=1e-4, rtol=1e-4)
    valid = target.validity(video=video)
    assert valid[0, :12].all() and not valid[0, 12:].any()  # the last frame has no successor
    method = MAM2(ENCODER, [MAM2Head("motion", targets.build(
        "flow", patch=(1, 8, 8), flow="raft_small", raft_weights=str(weights), online=True), depth=1)])
    video, mask = batch()
    assert torch.isfinite(method(video, mask).loss)
    assert not any("raft" in k or "target" in k for k in method.state_dict())  # frozen: never checkpointed
    with pytest.raises(ConfigError, match="target.online"):
        targets.build("flow", patch=(1, 16, 16), online=True)  # DIS runs in the workers, not on the device


def test_visualize_mam2_draws_predicted_tokens_and_motion_of_a_run(synth_motion, tmp_path, capsys):
    import json

    from maskvid.cli import main

    tokenizer = save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16)),
                               str(tmp_path / "tokenizer.safetensors"))
    heads = (f"[{{target: tokens, options: {{tokenizer: {tokenizer}}}, decoder_depth: 1, name: appearance}}, "
             "{target: rgb_diff, decoder_depth: 1, name: motion}]")
    overrides = {"output_dir": str(tmp_path / "run"), "method": "mam2", "data.train_list":
                 os.path.join(synth_motion, "train.csv"), "data.num_frames": 4, "data.size": 32,
                 "model.patch": "[1, 8, 8]", "model.attention": "divided", "model.pos_embed": "separable",
                 "model.stem": "frame", "mask.strategy": "tube", "mask.ratio": 0.75, "heads": heads,
                 "train.batch_size": 2, "train.num_workers": 0, "train.max_steps": 2, "train.progress": False,
                 "train.checkpoint_every": 2}
    pretrain(load_config(PRETRAIN, [f"{k}={v}" for k, v in overrides.items()] + ["target=null"]))
    video = os.path.join(synth_motion, "videos", "val_00000.mp4")
    out = tmp_path / "mam2.png"
    assert main(["visualize", "mam2", video, "--checkpoint", str(tmp_path / "run"), "--out", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.stat().st_size > 0 and report["picture"] == str(out)
    assert 0 <= report["appearance token accuracy"] <= 1
    assert report["motion MSE"] > 0 and report["motion MSE predicting no motion"] > 0
    assert main(["visualize", "mam2", video]) == 2  # a MAM² picture needs a trained run


def test_frames_of_inverts_patchify():
    from maskvid.models.tokens import token_grid
    from maskvid.targets.patchify import frames_of, patchify

    video = torch.randn(1, 3, 4, 16, 24)
    for patch in ((2, 8, 8), (1, 8, 8)):
        tokens = patchify(video, patch)[0].flatten(1)  # (N, t·p·p·C)
        torch.testing.assert_close(frames_of(tokens, token_grid(patch, 4, 16, 24), patch), video[0].transpose(0, 1))
