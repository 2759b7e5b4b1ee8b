"""Published tokenizers in, maskvid safetensors out: the taming-transformers VQGAN (plain and Gumbel VQ, f16/f8,
8192 and 16384 codes) and the DALL-E dVAE encoder, built by their own published packages (taming-transformers
0.0.1's Encoder and VectorQuantizer, DALL-E 0.1's Encoder) with random weights, saved as they are published (a
Lightning checkpoint with non-tensor entries; a whole pickled module), converted, loaded, and compared id for id
with the published model's own forward."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from dall_e.encoder import Encoder as PublishedDALLE
from taming.modules.diffusionmodules.model import Encoder as PublishedVQGANEncoder
from taming.modules.vqvae.quantize import VectorQuantizer

from maskvid import targets
from maskvid.cli import main
from maskvid.errors import CheckpointError, ConfigError
from maskvid.models.tokenizers import load_tokenizer
from maskvid.tokenizer_convert import convert_tokenizer


class TrainingLoopState:
    """Stands for the Lightning/omegaconf objects a published ``last.ckpt`` pickles beside its weights."""

    def __init__(self):
        self.epoch = 7


def published_vqgan(quantizer: str, n_embed: int, ch_mult=(1, 1, 2, 2, 4)):
    """A taming VQGAN's tokenizing half with random weights, its reference ids function and its full state dict
    (decoder and loss keys included, as in a published checkpoint)."""
    torch.manual_seed(0)
    resolution = 32
    encoder = PublishedVQGANEncoder(ch=32, out_ch=3, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=[4],
                                    in_channels=3, resolution=resolution, z_channels=32, double_z=False).eval()
    quant_conv = torch.nn.Conv2d(32, 32, 1)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state |= {f"quant_conv.{k}": v for k, v in quant_conv.state_dict().items()}
    if quantizer == "vq":
        quantize = VectorQuantizer(n_embed, 32, beta=0.25)
        quantize.embedding.weight.data.normal_()
        state |= {f"quantize.{k}": v for k, v in quantize.state_dict().items()}

        def reference(x):
            z = quant_conv(encoder(2 * x - 1))
            return quantize(z)[2][2].reshape(z.shape[0], z.shape[2], z.shape[3])
    else:  # taming's GumbelQuantize(z_channels, embed_dim, n_embed): proj = Conv2d(z, n_embed, 1), embed
        proj_w, proj_b = torch.randn(n_embed, 32, 1, 1), torch.randn(n_embed)
        state |= {"quantize.proj.weight": proj_w, "quantize.proj.bias": proj_b,
                  "quantize.embed.weight": torch.randn(n_embed, 32)}

        def reference(x):
            return F.conv2d(quant_conv(encoder(2 * x - 1)), proj_w, proj_b).argmax(1)
    state |= {"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3), "post_quant_conv.weight": torch.zeros(2, 2, 1, 1),
              "loss.discriminator.main.0.weight": torch.zeros(2)}
    return reference, state


@pytest.mark.parametrize("quantizer,n_embed,ch_mult,factor", [("vq", 16384, (1, 1, 2, 2, 4), 16),
                                                            ("gumbel", 8192, (1, 1, 2, 4), 8),
                                                            ("gumbel", 16384, (1, 1, 2, 2, 4), 16)])
def test_a_published_vqgan_checkpoint_converts_and_tokenizes_as_taming_does(quantizer, n_embed, ch_mult, factor,
                                                                            tmp_path):
    reference, state = published_vqgan(quantizer, n_embed, ch_mult)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "global_step": 10, "loops": TrainingLoopState()}, ckpt)
    out = tmp_path / "vqgan.safetensors"
    with pytest.raises(ConfigError, match="--trust-pickle"):
        convert_tokenizer(str(ckpt), str(out), "vqgan")  # pickled objects: refused without the opt-in
    report = convert_tokenizer(str(ckpt), str(out), "vqgan", trust_pickle=True)
    assert report["factor"] == factor and report["vocab_size"] == n_embed and report["dropped"] == 3
    tokenizer = load_tokenizer(str(out))
    frames = torch.rand(3, 3, 32, 48)
    with torch.no_grad():
        expected = reference(frames)
    ids = tokenizer.encode(frames)
    assert ids.shape == (3, 32 // factor, 48 // factor)
    assert torch.equal(ids, expected)
    assert not tokenizer.can_decode


def test_a_pickled_dalle_encoder_converts_without_dall_e_installed(tmp_path, monkeypatch):
    torch.manual_seed(0)
    published = PublishedDALLE(n_hid=64, n_blk_per_group=1, vocab_size=512, requires_grad=False)
    with torch.no_grad():  # DALL-E initializes biases to 0; random ones check that every b is carried over
        for name, p in published.named_parameters():
            if name.endswith(".b"):
                p.normal_()
    pkl = tmp_path / "encoder.pkl"
    torch.save(published, pkl)  # as OpenAI publishes it: the whole module, pickled
    for name in [n for n in sys.modules if n == "dall_e" or n.startswith("dall_e.")]:
        monkeypatch.setitem(sys.modules, name, None)  # unimportable: the converter must not need the package
    monkeypatch.setitem(sys.modules, "dall_e", None)
    out = tmp_path / "dalle.safetensors"
    report = convert_tokenizer(str(pkl), str(out), "dalle", trust_pickle=True)
    assert report["factor"] == 8 and report["vocab_size"] == 512
    monkeypatch.undo()
    tokenizer = load_tokenizer(str(out))
    frames = torch.rand(2, 3, 32, 24)
    with torch.no_grad():
        expected = published(0.8 * frames + 0.1).argmax(1)  # dall_e.utils.map_pixels, then the logits' argmax
    assert torch.equal(tokenizer.encode(frames), expected)


def test_a_tokens_target_reads_a_converted_tokenizer_one_id_per_patch(tmp_path):
    published = PublishedDALLE(n_hid=64, n_blk_per_group=1, vocab_size=512, requires_grad=False)
    torch.save(published.state_dict(), tmp_path / "encoder_state.pth")  # a bare state dict: no opt-in needed
    out = str(tmp_path / "dalle.safetensors")
    convert_tokenizer(str(tmp_path / "encoder_state.pth"), out, "dalle")
    target = targets.build("tokens", tokenizer=out, patch=(1, 16, 16))  # f8 tokenizer, 16² patches: 2× resize
    assert target.vocab_size == 512
    video = torch.randn(2, 3, 4, 32, 32)
    assert target(video=video).shape == (2, 4 * 2 * 2)


def test_a_wrong_file_names_its_first_missing_key(tmp_path):
    _, state = published_vqgan("vq", 64)
    dalle = PublishedDALLE(n_hid=64, n_blk_per_group=1, vocab_size=512, requires_grad=False)
    torch.save(dalle.state_dict(), tmp_path / "dalle.pth")
    with pytest.raises(CheckpointError, match="'encoder.conv_in.weight'"):
        convert_tokenizer(str(tmp_path / "dalle.pth"), str(tmp_path / "x.safetensors"), "vqgan")
    del state["encoder.down.1.block.0.norm2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="'encoder.down.1.block.0.norm2.weight'"):
        convert_tokenizer(str(tmp_path / "broken.pth"), str(tmp_path / "x.safetensors"), "vqgan")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        convert_tokenizer(str(tmp_path / "junk.ckpt"), str(tmp_path / "x.safetensors"), "vqgan", trust_pickle=True)
    with pytest.raises(ConfigError, match="--format"):
        convert_tokenizer(str(tmp_path / "dalle.pth"), str(tmp_path / "x.safetensors"), "vqvae")
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_tokenizer_cli(tmp_path, capsys):
    dalle = PublishedDALLE(n_hid=64, n_blk_per_group=1, vocab_size=512, requires_grad=False)
    torch.save(dalle, tmp_path / "encoder.pkl")
    command = ["convert-tokenizer", str(tmp_path / "encoder.pkl"), str(tmp_path / "dalle.safetensors"), "--format",
               "dalle"]
    assert main(command) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert main(command + ["--trust-pickle"]) == 0
    printed = capsys.readouterr().out
    assert "512 codes" in printed and "factor 8" in printed


def test_a_remapped_vqgan_numbers_its_ids_by_the_used_list(tmp_path):
    _, state = published_vqgan("gumbel", 64, (1, 1, 2, 4))
    used = torch.tensor([5, 3, 9, 40])
    state["quantize.used"] = used  # taming's remap: only these codes, numbered in this order
    torch.save(state, tmp_path / "remapped.pth")
    report = convert_tokenizer(str(tmp_path / "remapped.pth"), str(tmp_path / "r.safetensors"), "vqgan")
    assert report["vocab_size"] == 4
    tokenizer = load_tokenizer(str(tmp_path / "r.safetensors"))
    frames = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z = tokenizer.quant_conv(tokenizer.encoder(2 * frames - 1))
        logits = F.conv2d(z, state["quantize.proj.weight"], state["quantize.proj.bias"])  # all 64 codes
    assert torch.equal(tokenizer.encode(frames), logits[:, used].argmax(1))
