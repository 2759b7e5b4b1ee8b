"""``maskvid extract tokens`` and ``data.tokens_cache``: token ids per frame and fixed view, sharded and resumable,
stale entries rebuilt, bad videos reported; a batch's tokens are the ids of its own pixels (checked against the
tokenizer run online on the batch's video), and a run reads them."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from maskvid import targets
from maskvid.cli import main
from maskvid.config import load_config
from maskvid.data.token_cache import TokenCache, TokenView, token_views
from maskvid.errors import ConfigError
from maskvid.extract import TokenOptions, extract_tokens
from maskvid.models.tokenizer import VQVAE, VQVAEConfig
from maskvid.models.tokenizers import save_tokenizer
from maskvid.recipes import build_dataset, build_method, pretrain

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs")
PRETRAIN = os.path.join(ROOT, "pretrain", "videomae_micro.yaml")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.safetensors"
    return save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=64, code_dim=8, width=16)), str(path))


def run_config(synth_motion: str, tmp_path, cache: str, tokenizer: str | None = None, **extra):
    options = f"{{tokenizer: {tokenizer}}}" if tokenizer else "{}"
    values = {"output_dir": str(tmp_path / "run"), "data.train_list": os.path.join(synth_motion, "train.csv"),
              "data.num_frames": 4, "data.size": 32, "model.patch": "[1, 8, 8]", "model.attention": "divided",
              "data.tokens_cache": cache, "target.name": "tokens", "target.options": options,
              "train.batch_size": 2, "train.num_workers": 0, "train.max_steps": 2, "train.progress": False,
              "train.checkpoint_every": 2, **extra}
    return load_config(PRETRAIN, [f"{k}={v}" for k, v in values.items()])


def test_extract_tokens_is_sharded_resumable_and_reports_bad_videos(synth_motion, tokenizer, tmp_path):
    listing = tmp_path / "list.csv"
    with open(os.path.join(synth_motion, "train.csv")) as f:
        lines = [os.path.join(synth_motion, line) for line in f.read().splitlines()]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    listing.write_text("\n".join(lines + [f"{bad} 0"]) + "\n")
    options = TokenOptions(tokenizer, size=32, patch=8, scales=(1.0, 1.25), positions=("center", "top_left"),
                           flip=True)
    out = str(tmp_path / "cache")
    first = extract_tokens(str(listing), out, options, shard=(0, 2))
    second = extract_tokens(str(listing), out, options, shard=(1, 2))
    assert first["built"] + second["built"] == len(lines) and first["views"] == 8
    assert [p for p, _ in first["bad"] + second["bad"]] == [str(bad)]
    again = extract_tokens(str(listing), out, options)
    assert again["built"] == 0 and again["already_valid"] == len(lines)  # resumed: nothing redone
    with pytest.raises(ConfigError, match="--out"):  # the same directory with other views would mix meanings
        extract_tokens(str(listing), out, TokenOptions(tokenizer, size=32, patch=8))
    cache = TokenCache(out)
    video = lines[0].split()[0]
    ids = cache.load(video, [0, 5, 23], view=3)
    assert ids.shape == (3, 4, 4) and ids.dtype == torch.long and int(ids.min()) >= 0 and int(ids.max()) < 64
    os.utime(video, ns=(0, 0))  # the file changed: the entry is stale, rebuilt and served
    assert cache.check(video).startswith("stale")
    assert torch.equal(cache.load(video, [0, 5, 23], view=3), ids) and cache.problems


def test_a_batch_carries_the_ids_of_its_own_pixels(synth_motion, tokenizer, tmp_path):
    out = str(tmp_path / "cache")
    extract_tokens(os.path.join(synth_motion, "train.csv"), out,
                   TokenOptions(tokenizer, size=32, patch=8, positions=("center", "bottom_right"), flip=True),
                   root=synth_motion)
    config = run_config(synth_motion, tmp_path, out)
    dataset = build_dataset(config, "train", build_method(config))
    online = targets.build("tokens", tokenizer=tokenizer, patch=(1, 8, 8))  # the tokenizer on the batch's pixels
    agree = total = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["tokens"].shape == (4, 4, 4)
        ids = online(video=sample["video"][None])[0]
        agree += int((ids == sample["tokens"].flatten()).sum())
        total += ids.numel()
    assert agree / total > 0.97  # equal up to float rounding at near-ties between codes


def test_a_run_reads_the_cache_and_refuses_one_that_does_not_fit(synth_motion, tokenizer, tmp_path, capsys):
    out = str(tmp_path / "cache")
    assert main(["extract", "tokens", "--list", os.path.join(synth_motion, "train.csv"), "--out", out,
                 "--tokenizer", tokenizer, "--size", "32", "--patch", "8", "--root", synth_motion]) == 0
    assert "built" in capsys.readouterr().out
    assert pretrain(run_config(synth_motion, tmp_path, out)).step == 2
    with pytest.raises(ConfigError, match="data.tokens_cache"):
        build_dataset(run_config(synth_motion, tmp_path, out, **{"data.size": 64}), "train")
    with pytest.raises(ConfigError, match="data.tokens_cache"):  # tokens read from the batch, none made
        config = run_config(synth_motion, tmp_path, "null")
        build_dataset(config, "train", build_method(config))
    shutil.rmtree(out)
    with pytest.raises(ConfigError, match="data.tokens_cache"):
        build_dataset(run_config(synth_motion, tmp_path, out), "train")


def test_views_place_their_crops():
    assert len(token_views((1.0, 1.25), ("center", "top_left", "bottom_right"), flip=True)) == 12  # VIMPAC's
    assert TokenView(1.0, "center").geometry(40, 60, 32).box == (0.0, 10.0, 40.0, 40.0)
    assert TokenView(1.25, "bottom_right").geometry(40, 60, 32).box == (8.0, 28.0, 32.0, 32.0)
    with pytest.raises(ConfigError, match="--crops"):
        TokenView(1.0, "middle")
