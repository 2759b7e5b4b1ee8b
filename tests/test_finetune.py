"""Fine-tuning, linear probing, MAR and multi-view evaluation, end to end on synthetic video:
synth → tiny pretrain → fine-tune → evaluate, with the metrics file complete; MAR's visible-token encoder and
reconstruction branch; the probe's frozen encoder; pretrained weights from every source; domain-adaptation maps."""

from __future__ import annotations

import json
import os

import pytest
import torch

from maskvid.config import FinetuneConfig, load_config
from maskvid.engine.logging import read_metrics
from maskvid.errors import CheckpointError, ConfigError, InputError
from maskvid.finetune_recipes import build_finetune_method, evaluate_checkpoint, finetune
from maskvid.methods.mar import MARNet
from maskvid.recipes import build_dataset, pretrain

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def small(data_dir: str, out: str, **extra) -> list[str]:
    values = {
        "output_dir": out, "data.train_list": os.path.join(data_dir, "train.csv"),
        "data.val_list": os.path.join(data_dir, "val.csv"), "data.classes": os.path.join(data_dir, "classes.txt"),
        "data.num_frames": 4, "data.size": 32, "data.test_views": "[2, 2]", "train.batch_size": 2,
        "train.num_workers": 0, "train.log_every": 1, "train.checkpoint_every": 100, "train.epochs": 2,
        "train.progress": False, "model.patch": "[2, 8, 8]", "optim.warmup_steps": 1, **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def pretrained_run(synth_motion, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("pre") / "run")
    config = load_config(os.path.join(CONFIGS, "pretrain", "mgm_micro.yaml"), [
        f"output_dir={out}", f"data.train_list={os.path.join(synth_motion, 'train.csv')}", "data.num_frames=4",
        "data.size=32", "train.batch_size=2", "train.num_workers=0", "train.max_steps=4", "train.progress=False",
        "model.patch=[2, 8, 8]"])
    assert pretrain(config).status == "finished"
    return out


def test_synth_pretrain_finetune_evaluate(synth_motion, pretrained_run, tmp_path):
    config = load_config(os.path.join(CONFIGS, "finetune", "videomae_micro.yaml"),
                         small(synth_motion, str(tmp_path / "ft"), init=pretrained_run), kind=FinetuneConfig)
    report = finetune(config)
    assert report["train"]["status"] == "finished" and report["train"]["step"] == 6  # 6 videos / batch 2, 2 epochs
    assert report["init"]["loaded"] > 10 and "net.head.weight" in report["init"]["fresh"]
    assert "net.encoder.blocks.0.attn.qkv.weight" not in report["init"]["fresh"]
    ev = report["eval"]
    assert ev["videos"] == 3 and ev["views_per_video"] == 4 and 0 <= ev["top1"] <= ev["top5"] <= 1
    assert len(ev["confusion"]) == 3 and sum(map(sum, ev["confusion"])) == 3 and len(ev["per_class"]) == 3
    assert os.path.exists(ev["confusion_png"])
    assert json.loads((tmp_path / "ft" / "eval.json").read_text())["top1"] == ev["top1"]
    rows = [r for r in read_metrics(str(tmp_path / "ft")) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all({"loss", "lr", "grad_norm", "clips_per_s", "m_ce", "m_acc"} <= set(r) for r in rows)
    again = evaluate_checkpoint(config, str(tmp_path / "ft"))
    assert again["top1"] == ev["top1"] and again["confusion"] == ev["confusion"]  # evaluation is deterministic


def test_mar_sees_only_visible_tokens_and_trains_its_reconstruction_branch(synth_motion, pretrained_run, tmp_path):
    config = load_config(os.path.join(CONFIGS, "finetune", "mar_micro.yaml"),
                         small(synth_motion, str(tmp_path / "mar"), init=pretrained_run), kind=FinetuneConfig)
    report = finetune(config)
    assert report["train"]["status"] == "finished"
    assert not any(k.startswith("net.mae.decoder.") for k in report["init"]["fresh"])  # decoder from pretraining
    rows = [r for r in read_metrics(str(tmp_path / "mar")) if "loss" in r]
    assert all("m_recon" in r for r in rows)
    assert report["eval"]["views_per_video"] == 4
    train_set = build_dataset(config, "train")
    method = build_finetune_method(config, 3)
    assert isinstance(method.net, MARNet)
    sample = train_set[0]
    assert sample["mask"].float().mean() == 0.5  # running cell, 50%
    seen = {}
    def record(module, inputs, output):
        seen["shape"] = output.shape

    hook = method.net.mae.encoder.blocks[0].register_forward_hook(record)
    method.eval()
    probs = method.predict(sample["video"][None], sample["mask"].flatten()[None])
    hook.remove()
    grid_tokens = 2 * 4 * 4
    assert seen["shape"][1] == grid_tokens // 2 and probs.shape == (1, 3)


def test_linear_probe_freezes_the_encoder(synth_motion, pretrained_run, tmp_path):
    config = load_config(os.path.join(CONFIGS, "finetune", "linear_probe_micro.yaml"),
                         small(synth_motion, str(tmp_path / "probe"), init=pretrained_run, **{"train.batch_size": 3}),
                         kind=FinetuneConfig)
    from safetensors.torch import load_file

    before = load_file(os.path.join(pretrained_run, "checkpoints", "step_0000004", "model.safetensors"))
    report = finetune(config)
    after = load_file(os.path.join(report["train"]["checkpoint"], "model.safetensors"))
    assert torch.equal(after["net.encoder.blocks.0.mlp.fc1.weight"], before["encoder.blocks.0.mlp.fc1.weight"])
    assert torch.equal(after["net.encoder.norm.weight"], before["encoder.norm.weight"])  # the probe keeps the norm
    assert "net.head.bn.running_mean" in after


def test_class_map_evaluates_a_subset_mapped_onto_the_model(synth_motion, pretrained_run, tmp_path):
    mapping = tmp_path / "map.txt"
    with open(os.path.join(synth_motion, "classes.txt")) as f:
        names = f.read().split()
    mapping.write_text(f"# val class -> model class\n{names[0]} {names[0]}\n2 2\n")
    config = load_config(os.path.join(CONFIGS, "finetune", "videomae_micro.yaml"),
                         small(synth_motion, str(tmp_path / "da"), init=pretrained_run,
                               **{"data.class_map": str(mapping), "train.epochs": 1}), kind=FinetuneConfig)
    report = finetune(config)
    assert report["eval"]["videos"] == 2  # val has one video per class; class 1 is not in the map
    mapping.write_text("nonsense_class 0\n")
    with pytest.raises(ConfigError, match="data.class_map"):
        evaluate_checkpoint(config, str(tmp_path / "da"))


def test_finetune_config_errors(synth_motion, tmp_path):
    path = os.path.join(CONFIGS, "finetune", "videomae_micro.yaml")
    with pytest.raises(ConfigError, match="head.kind"):
        load_config(path, ["head.kind=mlp"], kind=FinetuneConfig)
    with pytest.raises(ConfigError, match="optim.layer_decay"):
        load_config(path, ["optim.layer_decay=1.5"], kind=FinetuneConfig)
    config = load_config(path, small(synth_motion, str(tmp_path / "x"), **{"head.kind": "bridging"}),
                         kind=FinetuneConfig)
    with pytest.raises(ConfigError, match="head.kind"):
        build_finetune_method(config, 3)
    config = load_config(path, small(synth_motion, str(tmp_path / "x"), init=str(tmp_path / "nothing")),
                         kind=FinetuneConfig)
    with pytest.raises(CheckpointError, match="nothing"):
        finetune(config)
    wrong = load_config(path, small(synth_motion, str(tmp_path / "y"), init=str(tmp_path),
                                    **{"model.preset": "small"}), kind=FinetuneConfig)
    with pytest.raises(CheckpointError):
        finetune(wrong)


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(CONFIGS, "finetune"))))
def test_every_shipped_finetune_config_loads_and_builds(name, tmp_path, monkeypatch):
    """A tokenizer a recipe reads (a run's output) is stood in for by a random one at the same relative path."""
    import yaml

    from maskvid.models.tokenizer import VQVAE, VQVAEConfig
    from maskvid.models.tokenizers import save_tokenizer

    path = os.path.join(os.path.abspath(CONFIGS), "finetune", name)
    with open(path) as f:
        values = yaml.safe_load(f)
    monkeypatch.chdir(tmp_path)
    if values.get("tokenizer"):
        codes, factor = values["model"]["vocab_size"], values["model"]["patch"][1]
        tokenizer = VQVAE(VQVAEConfig(factor=factor, codebook_size=codes, code_dim=8, width=16))
        save_tokenizer(tokenizer, values["tokenizer"])
    config = load_config(path, kind=FinetuneConfig)
    method = build_finetune_method(config, 10)
    assert method.encoder.config.width == {"micro": 96, "base": 768}[config.model.preset]


def test_finetune_resume_is_exact_with_mixup_and_ema(synth_motion, pretrained_run, tmp_path):
    """Mixup draws from numpy's global generator and EMA keeps its own weights: both come back on resume."""
    from safetensors.torch import load_file

    def config(out, **extra):
        return load_config(os.path.join(CONFIGS, "finetune", "videomae_micro.yaml"), small(
            synth_motion, str(tmp_path / out), init=pretrained_run,
            **{"train.checkpoint_every": 3, "train.ema": 0.9, "model.drop_path": 0.1, **extra}), kind=FinetuneConfig)

    straight = finetune(config("straight"))
    first = finetune(config("split", **{"train.max_steps": 3}))
    assert first["train"]["step"] == 3
    resumed = finetune(config("split"), resume=True)
    assert resumed["train"]["step"] == straight["train"]["step"] == 6
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(os.path.join(straight["train"]["checkpoint"], name))
        b = load_file(os.path.join(resumed["train"]["checkpoint"], name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert straight["eval"]["checkpoint"].endswith("step_0000006")
    assert resumed["eval"]["confusion"] == straight["eval"]["confusion"]


def test_mar_net_trains_every_parameter_and_drops_its_branch_at_inference():
    from maskvid import masking, targets
    from maskvid.methods.finetune import Classification
    from maskvid.methods.mae import MAE
    from maskvid.models import DecoderConfig, ViTConfig

    torch.manual_seed(0)
    enc = ViTConfig.preset("micro", patch=(2, 8, 8), num_frames=4, size=32)
    mae = MAE(enc, DecoderConfig(width=32, depth=1, heads=2), targets.build("norm_pixels", patch=enc.patch))
    method = Classification(MARNet(mae, 5, bridge={"width": 32, "depth": 1, "heads": 2}), 5)
    gen = masking.build("running_cell", ratio=0.5)
    mask = torch.stack([gen((2, 4, 4), torch.Generator().manual_seed(i)) for i in range(2)]).flatten(1)
    video, label = torch.randn(2, 3, 4, 32, 32), torch.tensor([1, 3])
    out = method(video, target=label, label=label, mask=mask)
    assert "recon" in out.metrics
    out.loss.backward()
    assert [n for n, p in method.named_parameters() if p.grad is None] == []
    method.eval()
    assert torch.allclose(method.predict(video, mask).sum(-1), torch.ones(2))
    assert not isinstance(method.net(video, mask), tuple)  # no reconstruction at inference
    with pytest.raises(InputError, match="mask"):
        method.net(video, None)


def test_pretrained_weights_from_a_checkpoint_with_another_grid_and_from_an_hf_directory(tmp_path):
    from maskvid import targets
    from maskvid.engine.checkpoint import save_checkpoint
    from maskvid.hf import to_hf
    from maskvid.methods.finetune import Classification
    from maskvid.methods.mae import MAE
    from maskvid.models import DecoderConfig, VideoClassifier, ViTConfig
    from maskvid.pretrained import load_pretrained

    torch.manual_seed(0)
    enc = ViTConfig.preset("micro", patch=(2, 8, 8), num_frames=4, size=32, pos_embed="learned")
    mae = MAE(enc, DecoderConfig(width=32, depth=1, heads=2), targets.build("pixels", patch=enc.patch))
    save_checkpoint(str(tmp_path / "run"), 7, mae, {})
    longer = ViTConfig.preset("micro", patch=(2, 8, 8), num_frames=8, size=48, pos_embed="learned", final_norm=False)
    clf = Classification(VideoClassifier(longer, 4), 4)
    report = load_pretrained(clf, tmp_path / "run", "net.", longer, skip=("encoder.norm.",))
    assert "net.encoder.pos_embed.pos_embed" not in report["fresh"]
    assert clf.encoder.pos_embed.pos_embed.shape == (4 * 6 * 6, 96)
    torch.testing.assert_close(clf.encoder.blocks[1].mlp.fc2.weight, mae.encoder.blocks[1].mlp.fc2.weight)

    sincos = ViTConfig.preset("micro", patch=(2, 8, 8), num_frames=4, size=32)
    hf_mae = MAE(sincos, DecoderConfig(width=32, depth=1, heads=2), targets.build("norm_pixels", patch=enc.patch))
    to_hf(hf_mae, tmp_path / "hf")
    clf = Classification(VideoClassifier(dataclasses_replace(sincos, final_norm=False), 4), 4)
    report = load_pretrained(clf, tmp_path / "hf", "net.", sincos, skip=("encoder.norm.",))
    torch.testing.assert_close(clf.encoder.blocks[0].attn.qkv.weight, hf_mae.encoder.blocks[0].attn.qkv.weight)


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_finetune_on_two_ranks_shares_its_evaluation_and_reports_the_one_process_figures(synth_motion, tmp_path):
    """Under torchrun the ranks stay joined after training and each scores every other video; rank 0 reports and
    writes eval.json, with every video counted once — the report of one process evaluating the same checkpoint."""
    import subprocess
    import sys

    sets = small(synth_motion, str(tmp_path / "ft"), init="null", **{"train.epochs": 1})
    path = os.path.join(CONFIGS, "finetune", "videomae_micro.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "maskvid.cli",
           "finetune", "--config", path, "--json", *[a for s in sets for a in ("--set", s)]]
    ran = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    reports = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # rank 0 alone reports
    shared = reports[0]["eval"]
    alone = evaluate_checkpoint(load_config(path, sets, kind=FinetuneConfig), str(tmp_path / "ft"))
    assert shared["videos"] == 3 and sum(map(sum, shared["confusion"])) == 3
    assert (shared["ranks"], alone["ranks"]) == (2, 1)
    timing = ("seconds", "clips_per_s", "ranks")
    assert {k: v for k, v in shared.items() if k not in timing} == {k: v for k, v in alone.items() if k not in timing}
    assert json.loads((tmp_path / "ft" / "eval.json").read_text())["confusion"] == shared["confusion"]
