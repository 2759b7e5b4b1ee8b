"""Every shipped recipe's training step, on a batch from its real loader, traces to one graph (``fullgraph=True``
refuses any break): nothing in the forward reads a value back from the device, which on a GPU would be a wait in
every step. How each host-made input earns that is tested in test_mask_order.py."""

from __future__ import annotations

import os

import pytest
import torch

from maskvid.config import FinetuneConfig, load_config
from maskvid.data.datasets import collate
from maskvid.finetune_recipes import build_finetune_method
from maskvid.recipes import build_dataset, build_method

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def _overrides(synth_motion: str, **extra) -> list[str]:
    values = {"data.train_list": os.path.join(synth_motion, "train.csv"), "data.num_frames": 4, "data.size": 32,
              "model.patch": "[2, 8, 8]", "train.num_workers": 0, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def _traces(method, dataset) -> None:
    method.train()
    inputs = method.prepare(collate([dataset[0], dataset[1]]), torch.device("cpu"))
    torch._dynamo.reset()
    try:
        assert torch.compile(method, backend="eager", fullgraph=True)(**inputs).loss.requires_grad
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("name", ["videomae_micro", "mgm_micro", "mme_micro"])
def test_a_pretraining_step_traces_to_one_graph(synth_motion, name):
    config = load_config(os.path.join(CONFIGS, "pretrain", f"{name}.yaml"), _overrides(synth_motion))
    method = build_method(config)
    _traces(method, build_dataset(config, "train", method, normalize_on_device=False))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    """A random VQ-VAE standing in for the one a recipe's tokenizer run would write (ids of 8×8 patches, 256)."""
    from maskvid.models.tokenizer import VQVAE, VQVAEConfig
    from maskvid.models.tokenizers import save_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.safetensors"
    return save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=256, code_dim=8, width=16)), str(path))


@pytest.mark.parametrize("order", [False, True])
def test_mam2s_step_traces_to_one_graph_with_vq_tokens_and_clip_order(synth_motion, tokenizer, order):
    second = "{name: order, target: clip_order, decoder_depth: 1}" if order else \
        "{name: motion, target: rgb_diff, decoder_depth: 1}"
    heads = f"[{{name: appearance, target: tokens, options: {{tokenizer: {tokenizer}}}, decoder_depth: 1}}, {second}]"
    config = load_config(os.path.join(CONFIGS, "pretrain", "mam2_micro.yaml"),
                         _overrides(synth_motion, **{"model.patch": "[1, 8, 8]", "heads": heads}))
    method = build_method(config)
    _traces(method, build_dataset(config, "train", method))


def test_vimpacs_step_traces_to_one_graph_with_ids_from_its_tokenizer(synth_motion, tokenizer):
    config = load_config(os.path.join(CONFIGS, "pretrain", "vimpac_micro.yaml"), _overrides(
        synth_motion, **{"model.patch": "[1, 8, 8]", "data.num_frames": 5, "vimpac.tokenizer": tokenizer}))
    method = build_method(config)
    _traces(method, build_dataset(config, "train", method))


@pytest.mark.parametrize("name", ["videomae_micro", "mar_micro", "linear_probe_micro"])
def test_a_fine_tuning_step_traces_to_one_graph(synth_motion, name):
    config = load_config(os.path.join(CONFIGS, "finetune", f"{name}.yaml"), _overrides(
        synth_motion, init="null", **{"data.classes": os.path.join(synth_motion, "classes.txt")}),
        kind=FinetuneConfig)
    _traces(build_finetune_method(config, 3), build_dataset(config, "train"))


def test_vimpacs_fine_tuning_step_traces_to_one_graph_with_ids_from_its_tokenizer(synth_motion, tokenizer):
    config = load_config(os.path.join(CONFIGS, "finetune", "vimpac_micro.yaml"), _overrides(
        synth_motion, init="null", tokenizer=tokenizer, **{"model.patch": "[1, 8, 8]", "data.num_frames": 5,
                                                           "data.classes": os.path.join(synth_motion, "classes.txt")}),
        kind=FinetuneConfig)
    _traces(build_finetune_method(config, 3), build_dataset(config, "train"))
