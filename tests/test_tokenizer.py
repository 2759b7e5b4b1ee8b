"""The trainable VQ-VAE tokenizer (MAM², VIMPAC): the EMA codebook by hand, dead-code restarts, reconstruction
that improves with training, codebook usage, and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import moving_square_frames
from maskvid import targets
from maskvid.config import load_config
from maskvid.engine.logging import read_metrics
from maskvid.errors import CheckpointError, ConfigError, InputError
from maskvid.methods.vqvae import VQVAETraining
from maskvid.models.tokenizer import VQVAE, EMAQuantizer, VQVAEConfig
from maskvid.models.tokenizers import load_tokenizer, save_tokenizer
from maskvid.recipes import build_method, pretrain, train_tokenizer
from maskvid.targets import unnormalize

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs")
CONFIG = os.path.join(ROOT, "tokenizer", "vqvae_micro.yaml")
PRETRAIN = os.path.join(ROOT, "pretrain", "videomae_micro.yaml")


def test_the_ema_codebook_moves_to_the_mean_of_its_assigned_vectors_by_hand():
    config = VQVAEConfig(codebook_size=2, code_dim=2, decay=0.5, dead_threshold=0.0, eps=0.0)
    quantizer = EMAQuantizer(config).train()
    quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    quantizer.sums.copy_(quantizer.codebook)
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]])  # two vectors near code 0, one near code 1
    quantized, ids = quantizer(z.t().reshape(1, 2, 1, 3))
    assert ids.flatten().tolist() == [0, 0, 1]
    torch.testing.assert_close(quantized.reshape(2, 3).t(), torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))
    # counts: 0.5·1 + 0.5·(2, 1) = (1.5, 1.0); sums: 0.5·codebook + 0.5·(Σ assigned) → codebook = sums / counts
    torch.testing.assert_close(quantizer.counts, torch.tensor([1.5, 1.0]))
    expected = torch.stack([(0.5 * torch.tensor([0.0, 0.0]) + 0.5 * torch.tensor([4.0, 2.0])) / 1.5,
                            (0.5 * torch.tensor([10.0, 10.0]) + 0.5 * torch.tensor([9.0, 9.0])) / 1.0])
    torch.testing.assert_close(quantizer.codebook, expected)
    quantizer.eval()
    before = quantizer.codebook.clone()
    quantizer(z.t().reshape(1, 2, 1, 3))
    assert torch.equal(quantizer.codebook, before)  # evaluation never moves the codebook


def test_an_unused_code_is_restarted_on_an_encoder_output():
    config = VQVAEConfig(codebook_size=3, code_dim=2, decay=0.9, dead_threshold=0.5)
    quantizer = EMAQuantizer(config).train()
    quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))  # code 2: far from all data
    quantizer.sums.copy_(quantizer.codebook)
    quantizer.counts.fill_(0.6)
    z = torch.tensor([[0.1, 0.0], [0.9, 1.1], [0.0, 0.2], [1.0, 0.8]])
    quantizer(z.t().reshape(1, 2, 1, 4))  # code 2's count: 0.9·0.6 = 0.54 → still alive
    assert float(quantizer.codebook[2, 0]) > 50
    quantizer(z.t().reshape(1, 2, 1, 4))  # 0.486 < 0.5 → restarted on one of the batch's vectors
    assert any(torch.allclose(quantizer.codebook[2], v) for v in z) and float(quantizer.counts[2]) == 1.0


def test_training_improves_reconstruction_and_reports_codebook_usage():
    torch.manual_seed(0)
    frames = torch.from_numpy(np.stack(moving_square_frames(n=32, size=32))).permute(0, 3, 1, 2).float() / 255
    model = VQVAETraining(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    recon = []
    for _ in range(40):
        step = model(frames=frames[torch.randint(32, (8,), generator=g)])
        optimizer.zero_grad()
        step.loss.backward()
        optimizer.step()
        recon.append(float(step.metrics["recon"]))
    assert np.mean(recon[-5:]) < 0.6 * np.mean(recon[:3])
    usage = model.tokenizer.quantizer.usage(model.tokenizer.encode(frames))
    assert 0 < usage["codes_used"] <= 1 and usage["perplexity"] >= 1
    ids = model.tokenizer.encode(frames[:2])
    assert ids.shape == (2, 4, 4) and ids.dtype == torch.long
    assert model.tokenizer.decode(ids).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("tokenizer", ["vqvae", "dalle"])
def test_channels_last_convolutions_give_the_nchw_ids_and_gradients(tokenizer):
    from maskvid.models.dalle import DALLEConfig, DALLETokenizer

    torch.manual_seed(0)
    if tokenizer == "vqvae":
        model = VQVAE(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16))
    else:
        model = DALLETokenizer(DALLEConfig(n_hid=16, blocks_per_group=1, vocab_size=64))
    assert model.memory_format == torch.channels_last  # the default the benchmark measured
    frames = torch.rand(3, 3, 32, 48)
    nchw = type(model)(model.config)
    nchw.load_state_dict(model.state_dict())
    nchw.memory_format = torch.contiguous_format
    layouts = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) or hasattr(m, "w"))
    first_conv.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    assert torch.equal(model.encode(frames), nchw.encode(frames))
    assert layouts == [True]  # the convolutions did run channels-last
    assert torch.equal(model.encode(frames.contiguous(memory_format=torch.channels_last)), nchw.encode(frames))
    if tokenizer == "vqvae":  # training: the same reconstruction and encoder gradients in either layout
        outputs = []
        for m in (model, nchw):
            torch.manual_seed(1)  # a dead code's restart draws from the global generator
            outputs.append(m.train()(frames))
        for out in outputs:
            out.recon.square().mean().backward()
        torch.testing.assert_close(outputs[0].recon, outputs[1].recon)
        for (name, a), (_, b) in zip(model.named_parameters(), nchw.named_parameters(), strict=True):
            if a.grad is not None:
                torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="tokenizer.factor"):
        VQVAEConfig(factor=6)
    with pytest.raises(ConfigError, match="tokenizer.codebook_size"):
        VQVAEConfig(codebook_size=1)
    vq = VQVAE(VQVAEConfig(codebook_size=16, code_dim=4, width=8))
    with pytest.raises(InputError, match="frames"):
        vq.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(InputError, match="ids"):
        vq.decode(torch.full((1, 2, 2), 16))


def test_train_tokenizer_runs_the_loop_reports_usage_and_writes_a_loadable_tokenizer(synth_motion, tmp_path):
    config = load_config(CONFIG, [f"{k}={v}" for k, v in {
        "output_dir": str(tmp_path / "run"), "data.train_list": os.path.join(synth_motion, "train.csv"),
        "data.size": 32, "train.batch_size": 2, "train.num_workers": 0, "train.max_steps": 6,
        "train.checkpoint_every": 3, "train.log_every": 1, "train.progress": False, "tokenizer.codebook_size": 32,
        "tokenizer.code_dim": 8, "tokenizer.width": 16}.items()])
    report = train_tokenizer(config)
    assert report["status"] == "finished" and report["step"] == 6
    assert 0 < report["codes_used"] <= 1 and report["recon_mse"] > 0
    names = {k for r in read_metrics(report["run_dir"]) for k in r}
    assert {"m_recon", "m_commitment", "m_codes_used", "m_perplexity"} <= names  # logged by name
    tokenizer = load_tokenizer(report["tokenizer"])
    assert tokenizer.vocab_size == 32 and not tokenizer.training
    frames = torch.rand(2, 3, 32, 32)
    assert tokenizer.encode(frames).shape == (2, 4, 4)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(1)}, str(bare))
    with pytest.raises(CheckpointError, match="maskvid_tokenizer"):
        load_tokenizer(str(bare))
    with pytest.raises(ConfigError, match="method"):
        train_tokenizer(load_config(PRETRAIN, [f"output_dir={tmp_path / 'x'}"]))
    with pytest.raises(ConfigError, match="mask"):
        build_method(load_config(PRETRAIN, ["mask=null"]))


def test_a_tokens_target_reads_a_frozen_tokenizer_online_and_pretrains(synth_motion, tmp_path):
    torch.manual_seed(0)
    path = save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=64, code_dim=8, width=16)),
                          str(tmp_path / "tokenizer.safetensors"))
    target = targets.build("tokens", tokenizer=path, patch=(1, 8, 8))
    assert target.inputs == ("video",) and target.dim == 64 and target.kind == "classes"
    video = torch.randn(2, 3, 4, 16, 16)
    frames = (unnormalize(video)).transpose(1, 2).flatten(0, 1)  # (B·T, 3, H, W) in [0, 1]
    expected = load_tokenizer(path).encode(frames).reshape(2, 4 * 2 * 2)
    assert torch.equal(target(video=video), expected)
    with pytest.raises(ConfigError, match="target.tokenizer"):
        targets.build("tokens", tokenizer=path, patch=(2, 8, 8))  # a tubelet spans 2 frames: no single id
    with pytest.raises(ConfigError, match="target.tokenizer"):
        targets.build("tokens", tokenizer=str(tmp_path / "missing.safetensors"), patch=(1, 8, 8))
    config = load_config(PRETRAIN, [f"{k}={v}" for k, v in {
        "output_dir": str(tmp_path / "run"), "data.train_list": os.path.join(synth_motion, "train.csv"),
        "data.num_frames": 4, "data.size": 32, "model.patch": "[1, 8, 8]", "model.attention": "divided",
        "target.name": "tokens", "target.options": f"{{tokenizer: {path}}}", "train.batch_size": 2,
        "train.num_workers": 0, "train.max_steps": 2, "train.progress": False, "train.checkpoint_every": 2}.items()])
    method = build_method(config)
    assert method.heads[0].loss_name == "cross_entropy" and method.heads[0].decoder.head.out_features == 64
    assert pretrain(config).step == 2
    assert not any(k.startswith("heads.0.target") for k in method.state_dict())  # frozen: never checkpointed
