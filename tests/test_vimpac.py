"""VIMPAC as a method: the loss of eq. 6 with [PAD] never predicted, BERT's noise on the encoder's input, the config
checks, the clip pair with [PAD] from the token cache, and a real tiny pretraining from the recipe."""

from __future__ import annotations

import json
import os

import pytest
import torch

from maskvid.config import VimpacConfig, load_config
from maskvid.constants import PAD_TOKEN
from maskvid.errors import ConfigError
from maskvid.methods.losses import vimpac_info_nce
from maskvid.methods.vimpac import VIMPAC
from maskvid.models import ViTConfig
from maskvid.models.tokenizer import VQVAE, VQVAEConfig
from maskvid.models.tokenizers import save_tokenizer
from maskvid.recipes import build_dataset, build_method, pretrain
from maskvid.targets.tokens import TokenIds

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
RECIPE = os.path.join(CONFIGS, "pretrain", "vimpac_micro.yaml")
FINETUNE = os.path.join(CONFIGS, "finetune", "vimpac_micro.yaml")
VOCAB = 16


def tiny_vimpac(**options) -> VIMPAC:
    torch.manual_seed(0)
    encoder = ViTConfig(width=32, depth=2, heads=4, num_frames=4, size=24, patch=(1, 8, 8), stem="token",
                        vocab_size=VOCAB, attention="t_hw", pos_embed="factorized", cls_token=True, hide="replace",
                        embed_norm=True, final_norm=False)
    o = VimpacConfig(**{"proj_hidden": 32, "proj_dim": 8, **options})
    return VIMPAC(encoder, TokenIds(vocab_size=VOCAB, patch=(1, 8, 8)), o)


def batch(b: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    tokens, tokens2 = torch.randint(VOCAB, (b, 4, 3, 3), generator=g), torch.randint(VOCAB, (b, 4, 3, 3), generator=g)
    tokens2[0, 3] = PAD_TOKEN  # the first video ran out: its second clip's last frame is [PAD]
    mask, mask2 = torch.zeros(b, 36, dtype=torch.bool), torch.zeros(b, 36, dtype=torch.bool)
    mask[:, 9:14] = True
    mask2[:, 25:36] = True  # the masked block covers the [PAD] frame of clip 0
    return {"tokens": tokens, "mask": mask, "tokens2": tokens2, "mask2": mask2}


def test_the_loss_is_masked_ce_on_real_tokens_plus_alpha_gamma_infonce():
    method = tiny_vimpac(noise=(1.0, 0.0, 0.0), alpha=0.5, temperature=0.3).train()
    inputs = batch()
    out = method(**inputs)
    # the same computation by hand: [MASK] at the masked real tokens, [PAD] kept, both clips in one batch
    ids = torch.cat([inputs["tokens"], inputs["tokens2"]]).flatten(1)
    hidden = torch.cat([inputs["mask"], inputs["mask2"]]) & (ids != PAD_TOKEN)
    assert int(hidden.sum()) == 4 * 5 + 2 + 3 * 11  # clip 0's second view: 9 of its 11 masked tokens are [PAD]
    torch.manual_seed(0)
    noisy = ids.masked_fill(hidden, VOCAB)
    tokens, _, cls = method.encoder(noisy.view(8, 4, 3, 3), None, return_prefix=True)
    logits = method.token_head(tokens)[hidden]
    ce = torch.nn.functional.cross_entropy(logits, ids[hidden])
    f = method.contrastive_head(cls[:, 0])
    cl = vimpac_info_nce(f[:4], f[4:], 0.3)
    torch.testing.assert_close(out.metrics["loss_tokens"], ce)
    torch.testing.assert_close(out.metrics["loss_contrastive"], 0.3 * cl)
    torch.testing.assert_close(out.loss, ce + 0.5 * 0.3 * cl)
    out.loss.backward()
    stem = method.encoder.patch_embed
    assert stem.weight.grad[stem.pad_id].abs().sum() == 0  # [PAD] is neither attended to nor predicted
    assert all(p.grad is not None for p in method.parameters())


def test_bert_noise_replaces_masked_tokens_before_the_stem():
    inputs = batch()
    ids = torch.cat([inputs["tokens"], inputs["tokens2"]]).flatten(1)
    hidden = torch.cat([inputs["mask"], inputs["mask2"]]) & (ids != PAD_TOKEN)
    seen = {}
    for noise, check in [((1.0, 0.0, 0.0), lambda seen: (seen[hidden] == VOCAB).all()),
                         ((0.0, 0.0, 1.0), lambda seen: (seen == ids).all()),
                         ((0.0, 1.0, 0.0), lambda seen: (seen[hidden] < VOCAB).all()
                          and (seen[hidden] != ids[hidden]).any())]:
        method = tiny_vimpac(noise=noise)
        seen.clear()
        method.encoder.register_forward_pre_hook(lambda module, args: seen.update(ids=args[0].flatten(1)))
        method(**inputs)
        assert check(seen["ids"]), noise
        assert (seen["ids"][~hidden] == ids[~hidden]).all()  # unmasked and [PAD] never change
    torch.manual_seed(3)
    method = tiny_vimpac()
    method.encoder.register_forward_pre_hook(lambda module, args: seen.update(ids=args[0].flatten(1)))
    big = {k: v.repeat(50, *[1] * (v.dim() - 1)) for k, v in inputs.items()}
    method(**big)
    ids = torch.cat([big["tokens"], big["tokens2"]]).flatten(1)
    hidden = torch.cat([big["mask"], big["mask2"]]) & (ids != PAD_TOKEN)
    became_mask = float((seen["ids"][hidden] == VOCAB).float().mean())
    kept = float((seen["ids"][hidden] == ids[hidden]).float().mean())
    assert abs(became_mask - 0.8) < 0.03 and abs(kept - 0.1 - 0.1 / VOCAB) < 0.03  # 80/10/10


def test_what_vimpac_refuses():
    tokens = TokenIds(vocab_size=VOCAB, patch=(1, 8, 8))
    good = {"width": 32, "depth": 1, "heads": 4, "num_frames": 4, "size": 24, "patch": (1, 8, 8), "stem": "token",
            "vocab_size": VOCAB, "attention": "t_hw", "cls_token": True, "hide": "replace"}
    for change, key in [({"stem": "frame", "vocab_size": None}, "model.stem"),
                        ({"attention": "joint", "hide": "drop"}, "model.hide"),
                        ({"vocab_size": VOCAB + 1}, "model.vocab_size"),
                        ({"cls_token": False}, "model.cls_token")]:
        with pytest.raises(ConfigError, match=key):
            VIMPAC(ViTConfig(**{**good, **change}), tokens)
    with pytest.raises(ConfigError, match="data.sampling"):
        VIMPAC(ViTConfig(**good), tokens, pair=False)
    single = VIMPAC(ViTConfig(**good), tokens, VimpacConfig(alpha=0.0), pair=False)  # mask-then-predict alone
    assert single.contrastive_head is None and single.inputs == ("tokens", "mask")
    out = single(tokens=batch()["tokens"], mask=batch()["mask"])
    assert "loss_contrastive" not in out.metrics and out.metrics["acc_tokens"] >= 0
    with pytest.raises(ConfigError, match="vimpac.noise"):
        VimpacConfig(noise=(0.5, 0.1, 0.1))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.safetensors"
    return save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=32, code_dim=8, width=16)), str(path))


def recipe(synth_motion: str, tmp_path, tokenizer: str, **extra):
    values = {"output_dir": str(tmp_path / "run"), "data.train_list": os.path.join(synth_motion, "train.csv"),
              "data.size": 32, "model.vocab_size": 32, "vimpac.tokenizer": tokenizer, "vimpac.proj_hidden": 64,
              "train.batch_size": 4, "train.num_workers": 0, "train.max_steps": 3, "train.progress": False,
              "train.checkpoint_every": 3, "train.log_every": 1, **extra}
    return load_config(RECIPE, [f"{k}={v}" for k, v in values.items()])


def test_the_micro_recipe_pretrains_with_tokens_from_the_tokenizer(synth_motion, tokenizer, tmp_path):
    knn = {"train.knn_every": 2, "data.knn_train_list": os.path.join(synth_motion, "train.csv"),
           "data.knn_val_list": os.path.join(synth_motion, "val.csv")}
    config = recipe(synth_motion, tmp_path, tokenizer, **knn)
    method = build_method(config)
    assert method.inputs == ("video", "mask", "video2", "mask2")
    result = pretrain(config)
    assert result.status == "finished" and result.step == 3
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    trained = [r for r in records if "m_acc_tokens" in r]
    assert {"m_loss_tokens", "m_acc_tokens", "m_loss_contrastive"} <= set(trained[-1])
    monitored = [r for r in records if "knn_top1" in r]
    assert [r["step"] for r in monitored] == [2, 3] and all(0 <= r["knn_top1"] <= r["knn_top5"] <= 1
                                                            for r in monitored)
    with pytest.raises(ConfigError, match="train.knn_every"):
        recipe(synth_motion, tmp_path, tokenizer, **{"train.knn_every": 2})
    with pytest.raises(ConfigError, match="model.vocab_size"):
        build_method(recipe(synth_motion, tmp_path, tokenizer, **{"model.vocab_size": 64}))
    with pytest.raises(ConfigError, match="vimpac.tokenizer"):
        build_method(recipe(synth_motion, tmp_path, str(tmp_path / "missing.safetensors")))


def test_cached_tokens_pair_up_and_pad_past_a_short_videos_end(synth_motion, tokenizer, tmp_path):
    from maskvid.data.datasets import collate
    from maskvid.extract import TokenOptions, extract_tokens

    cache = str(tmp_path / "tokens")
    extract_tokens(os.path.join(synth_motion, "train.csv"), cache,
                   TokenOptions(tokenizer, size=32, patch=8))
    # 24-frame videos, 5 frames at stride 8 span 33: every clip runs past the end
    config = recipe(synth_motion, tmp_path, "null", **{"data.tokens_cache": cache, "data.stride": 8})
    method = build_method(config)
    assert method.inputs == ("tokens", "mask", "tokens2", "mask2")
    dataset = build_dataset(config, "train", method)
    sample = collate([dataset[0], dataset[1]])
    for key in ("tokens", "tokens2"):
        assert sample[key].shape == (2, 5, 4, 4)
        assert (sample[key][:, 3:] == PAD_TOKEN).all() and (sample[key][:, :3] >= 0).all()
    out = method(**method.prepare(sample, torch.device("cpu")))
    assert torch.isfinite(out.loss)
    with pytest.raises(ConfigError, match="data.tokens_cache"):  # ids of 32 codes, a model of 64
        build_dataset(recipe(synth_motion, tmp_path, "null", **{"data.tokens_cache": cache,
                                                                  "model.vocab_size": 64}), "train", method)


def test_knn_accuracy_is_the_weighted_vote_of_the_nearest_bank_clips():
    from maskvid.engine.knn import knn_accuracy

    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0], [-1.0, 0.1], [0.6, 0.8]])
    truth = torch.tensor([0, 1, 2, 0])
    top1, top5 = knn_accuracy(bank, labels, queries, truth, num_classes=3, k=2)
    assert top1 == 0.75 and top5 == 1.0  # the last query's two nearest are class 1
    # with k = all and a hot temperature every class gets nearly equal votes: the nearest still wins
    assert knn_accuracy(bank, labels, queries[:3], truth[:3], 3, k=5, temperature=0.01)[0] == 1.0


def test_fine_tuning_reads_the_cls_token_through_a_zero_initialized_layer(synth_motion, tokenizer, tmp_path):
    from maskvid.config import FinetuneConfig
    from maskvid.finetune_recipes import finetune

    pretrain(recipe(synth_motion, tmp_path, tokenizer, **{"train.max_steps": 1, "train.checkpoint_every": 1}))
    values = {"output_dir": str(tmp_path / "ft"), "init": str(tmp_path / "run"), "tokenizer": tokenizer,
              "data.train_list": os.path.join(synth_motion, "train.csv"),
              "data.val_list": os.path.join(synth_motion, "val.csv"), "data.size": 32, "data.num_frames": 8,
              "data.classes": os.path.join(synth_motion, "classes.txt"),
              "data.test_views": "[2, 2]", "model.vocab_size": 32, "train.batch_size": 4, "train.num_workers": 0,
              "train.max_steps": 2, "train.progress": False, "train.checkpoint_every": 2}
    config = load_config(FINETUNE, [f"{k}={v}" for k, v in values.items()], kind=FinetuneConfig)
    from maskvid.finetune_recipes import build_finetune_method, init_from_pretrained

    method = build_finetune_method(config, 3)
    head = method.net.head
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    loaded = init_from_pretrained(method, config)
    assert loaded["fresh"] == ["net.head.bias", "net.head.weight"]  # 5 frames → 8: the time table interpolated
    assert method.encoder.pos_embed.pos_embed_time.shape[0] == 8
    video = torch.randn(2, 3, 8, 32, 32)
    method.eval()  # no dropout
    tokens, _, cls = method.encoder(method.encoder_input(video), None, return_prefix=True)
    torch.testing.assert_close(method.net.features(method.encoder_input(video)), cls[:, 0])  # [CLS], no norm on top
    report = finetune(config)
    assert report["train"]["status"] == "finished" and 0 <= report["eval"]["top1"] <= 1
    with pytest.raises(ConfigError, match="tokenizer"):
        load_config(FINETUNE, [f"{k}={v}" for k, v in values.items()] + ["tokenizer=null"], kind=FinetuneConfig)


def test_resume_is_exact_with_the_noise_drawn_in_forward(synth_motion, tokenizer, tmp_path):
    """The 80/10/10 noise comes from torch's generator, saved with each checkpoint: 2 + 2 steps = 4 steps."""
    from safetensors.torch import load_file

    def run(out, steps):
        return recipe(synth_motion, tmp_path, tokenizer, **{"output_dir": str(tmp_path / out),
                                                            "train.max_steps": steps, "train.checkpoint_every": 2,
                                                            "train.schedule_steps": 4})

    straight = pretrain(run("straight", 4))
    pretrain(run("split", 2))
    resumed = pretrain(run("split", 4), resume=True)
    assert straight.step == resumed.step == 4
    a = load_file(os.path.join(straight.checkpoint, "model.safetensors"))
    b = load_file(os.path.join(resumed.checkpoint, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
