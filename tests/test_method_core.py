"""The method core every seed plugs into: heads configured from YAML, targets with per-sample validity, class-id
targets under masked cross-entropy, losses against hand computation, frozen parts kept out of training."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from maskvid import targets
from maskvid.config import load_config
from maskvid.engine.logging import read_metrics
from maskvid.errors import CheckpointError, ConfigError, InputError
from maskvid.methods.base import MaskedPrediction, PredictionHead
from maskvid.methods.losses import info_nce, masked_cross_entropy, masked_mse
from maskvid.models import DecoderConfig, Frozen, ViTConfig
from maskvid.recipes import METHODS, build_method, pretrain
from maskvid.targets import Target

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "videomae_micro.yaml")
ENCODER = ViTConfig(width=32, depth=1, heads=2, patch=(2, 8, 8), num_frames=4, size=16)  # grid (2, 2, 2): N = 8
DECODER = DecoderConfig(width=16, depth=1, heads=2)


def test_two_heads_from_yaml_train_and_log_each_term_by_name(synth_motion, tmp_path):
    heads = tmp_path / "two_heads.yaml"
    heads.write_text(Path(CONFIG).read_text().replace("target:\n  name: pixels\n", (
        "heads:\n"
        "  - {target: norm_pixels, weight: 1.0}\n"
        "  - {target: hog, weight: 0.5, options: {bins: 9}, decoder_depth: 1}\n")))
    run = tmp_path / "run"
    config = load_config(heads, [
        f"output_dir={run}", f"data.train_list={os.path.join(synth_motion, 'train.csv')}", "data.num_frames=4",
        "data.size=32", "model.patch=[2, 8, 8]", "train.batch_size=2", "train.num_workers=0", "train.max_steps=4",
        "train.log_every=1", "train.checkpoint_every=4", "train.progress=false", "optim.warmup_steps=1"])
    method = build_method(config)
    assert [(h.name, h.weight) for h in method.heads] == [("norm_pixels", 1.0), ("hog", 0.5)]
    decoders = [h.decoder.head.weight for h in method.heads]
    before = [w.detach().clone() for w in decoders]
    batch = _batch(method, 2)
    out = method(**batch)
    torch.testing.assert_close(out.loss, out.metrics["loss_norm_pixels"] + 0.5 * out.metrics["loss_hog"])
    out.loss.backward()
    assert all(w.grad is not None and float(w.grad.abs().sum()) > 0 for w in decoders)
    result = pretrain(config)
    assert result.status == "finished" and result.step == 4
    rows = [r for r in read_metrics(str(run)) if "loss" in r]
    assert rows and all({"m_loss_norm_pixels", "m_loss_hog"} <= set(r) for r in rows)
    weights = load_file(run / "checkpoints" / "step_0000004" / "model.safetensors")
    for i, w in enumerate(before):  # both decoders were trained
        assert not torch.equal(weights[f"heads.{i}.decoder.head.weight"], w)


def _batch(method, b: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = method.encoder.config
    video = torch.randn(b, 3, c.num_frames, c.size, c.size, generator=g)
    n = c.grid[0] * c.grid[1] * c.grid[2]
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[:, ::2] = True
    return {"video": video, "mask": mask}


class _HalfValid(Target):
    """A regression target whose validity leaves out token 1 of sample 0 only (like a trajectory leaving the
    frame in one clip and not in the other)."""

    name = "half_valid"

    @property
    def dim(self):
        return 2

    def forward(self, video, **aux):
        b = video.shape[0]
        return torch.arange(b * 8 * 2, dtype=torch.float32).view(b, 8, 2) / 10

    def validity(self, video, **aux):
        valid = torch.ones(video.shape[0], 8, dtype=torch.bool)
        valid[0, 1] = False
        return valid


def test_per_sample_validity_leaves_a_token_out_of_one_sample_and_the_loss_is_the_hand_computed_one():
    torch.manual_seed(0)
    head = PredictionHead("half_valid", ENCODER, DECODER, _HalfValid())
    method = MaskedPrediction(ENCODER, [head])
    video = torch.randn(2, 3, 4, 16, 16)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, [1, 2, 5]] = True  # both samples mask tokens 1, 2, 5
    out = method(video, mask)
    target = _HalfValid()(video)
    pred = out.pred.detach()  # (2, 3, 2): masked tokens 1, 2, 5 of each sample
    errors = [((pred[b, k] - target[b, token]) ** 2).mean() for b in range(2) for k, token in enumerate([1, 2, 5])
              if (b, token) != (0, 1)]  # sample 0's token 1 is invalid; sample 1's counts
    assert len(errors) == 5
    torch.testing.assert_close(out.loss.detach(), torch.stack(errors).mean())


class _RandomIds(Target):
    """Class ids the test fixes per sample: a ``tokens`` input of a vocabulary of 16."""

    name = "random_ids"
    inputs = ("tokens",)
    kind = "classes"

    @property
    def dim(self):
        return 16

    def forward(self, tokens, **aux):
        return tokens.flatten(1)


def test_class_id_target_trains_with_masked_cross_entropy_through_the_same_method():
    torch.manual_seed(0)
    method = MaskedPrediction(ENCODER, [PredictionHead("ids", ENCODER, DECODER, targets.build("tokens",
                                                                                                vocab_size=16))])
    assert method.inputs == ("video", "mask", "tokens") and method.heads[0].loss_name == "cross_entropy"
    g = torch.Generator().manual_seed(1)
    batch = {"video": torch.randn(4, 3, 4, 16, 16, generator=g), "tokens": torch.randint(16, (4, 2, 2, 2),
                                                                                        generator=g),
             "mask": torch.rand(4, 8, generator=g) < 0.5, "label": torch.zeros(4)}
    batch["mask"][:, 0] = True
    batch["mask"][:, 7] = False
    inputs = method.prepare(batch, torch.device("cpu"))
    # exactly what the encoder, mask and target declare, and the mask's order made on the host
    assert set(inputs) == {"video", "mask", "tokens", "mask_order"}
    optimizer = torch.optim.AdamW(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = method(**inputs)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    first = torch.log(torch.tensor(16.0))  # chance level
    assert abs(losses[0] - float(first)) < 0.6 and losses[-1] < 0.2 * losses[0]
    # the same loss by hand: CE of the masked tokens' logits against their ids
    ids = batch["tokens"].flatten(1)
    masked = [(b, n) for b in range(4) for n in range(8) if batch["mask"][b, n]]
    with torch.no_grad():
        out = method(**inputs)
        logits = torch.cat([out.pred[b, : int(batch["mask"][b].sum())] for b in range(4)])
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor([int(ids[b, n]) for b, n in masked]))
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(InputError, match="tokens"):
        method.prepare({"video": batch["video"], "mask": batch["mask"]}, torch.device("cpu"))
    with pytest.raises(InputError, match="tokens"):
        targets.build("tokens", vocab_size=16)(torch.full((1, 8), 16))


def test_masked_losses_equal_their_definitions():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    torch.testing.assert_close(masked_mse(pred, target), ((pred - target) ** 2).mean())
    tokens = torch.tensor([[True, False, True], [True, True, True]])
    per_token = ((pred - target) ** 2).mean(-1)
    torch.testing.assert_close(masked_mse(pred, target, tokens), per_token[tokens].mean())
    entries = torch.ones(2, 3, 4, dtype=torch.bool)
    entries[0, 0, :2] = False
    entries[1, 2] = False  # a token with no valid entry leaves the mean
    err = (pred - target) ** 2
    by_hand = torch.stack([err[0, 0, 2:].mean(), err[0, 1].mean(), err[0, 2].mean(), err[1, 0].mean(),
                           err[1, 1].mean()]).mean()
    torch.testing.assert_close(masked_mse(pred, target, entries), by_hand)
    assert float(masked_mse(pred, target, torch.zeros(2, 3, dtype=torch.bool))) == 0.0
    nothing = torch.zeros(2, 0, 4, requires_grad=True)  # no masked token at all: 0 with a gradient, not NaN
    empty = masked_mse(nothing, torch.zeros(2, 0, 4))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    logits, ids = torch.randn(2, 3, 5, generator=g), torch.tensor([[1, -100, 4], [0, 2, 3]])
    valid = torch.tensor([[True, True, True], [True, False, True]])
    keep = [(0, 0), (0, 2), (1, 0), (1, 2)]  # -100 is ignored, (1, 1) is invalid
    expected = torch.nn.functional.cross_entropy(torch.stack([logits[b, n] for b, n in keep]),
                                                 torch.stack([ids[b, n] for b, n in keep]))
    torch.testing.assert_close(masked_cross_entropy(logits, ids, valid), expected)
    with pytest.raises(InputError):
        masked_mse(pred, target[:, :2])


def test_info_nce_is_symmetric_cross_entropy_over_cosine_similarities():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    an, bn = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    labels = torch.arange(4)
    one_way = torch.nn.functional.cross_entropy(an @ bn.T / 0.1, labels)
    other = torch.nn.functional.cross_entropy(bn @ an.T / 0.1, labels)
    torch.testing.assert_close(info_nce(a, b, temperature=0.1, symmetric=False), one_way)
    torch.testing.assert_close(info_nce(a, b, temperature=0.1), (one_way + other) / 2)
    assert float(info_nce(a, a * 3, temperature=0.05)) < float(info_nce(a, b, temperature=0.05))


class _TokenizerTarget(Target):
    """A target computed by a frozen module (a stand-in for a VQ tokenizer): its weights are not the method's."""

    name = "tokenized"

    def __init__(self, tokenizer: Frozen):
        super().__init__()
        self.tokenizer = tokenizer

    @property
    def dim(self):
        return 4

    def forward(self, video, **aux):
        return self.tokenizer(video).flatten(2).transpose(1, 2)  # (B, N, 4)


def test_frozen_parts_are_never_optimized_nor_checkpointed_and_move_with_the_method(tmp_path):
    conv = torch.nn.Conv3d(3, 4, kernel_size=(2, 8, 8), stride=(2, 8, 8))
    save_file(conv.state_dict(), tmp_path / "tokenizer.safetensors")
    frozen = Frozen.load(torch.nn.Conv3d(3, 4, kernel_size=(2, 8, 8), stride=(2, 8, 8)),
                         tmp_path / "tokenizer.safetensors")
    assert torch.equal(frozen.module.weight, conv.weight) and not frozen.module.training
    method = MaskedPrediction(ENCODER, [PredictionHead("tokenized", ENCODER, DECODER, _TokenizerTarget(frozen))])
    assert not any(p is frozen.module.weight for p in method.parameters())
    assert not any("tokenizer" in k for k in method.state_dict())
    method.train()
    assert not frozen.module.training  # stays in eval mode
    out = method(**_batch(method, 2))
    out.loss.backward()
    assert frozen.module.weight.grad is None
    method.to(torch.float64)
    assert frozen.module.weight.dtype == torch.float64  # moved with the method
    with pytest.raises(CheckpointError, match="no such file"):
        Frozen.load(conv, tmp_path / "missing.safetensors")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="wrong.pt"):
        Frozen.load(conv, tmp_path / "wrong.pt")


def test_heads_and_methods_are_checked_by_key():
    assert "mae" in METHODS
    with pytest.raises(ConfigError, match="^config key 'method'"):
        build_method(load_config(CONFIG, ["method=mam3"]))
    with pytest.raises(ConfigError, match=r"heads\[1\]\.target"):
        load_config(CONFIG, ["target=null", "heads=[{target: pixels}, {target: sound}]"])
    with pytest.raises(ConfigError, match=r"heads\[0\]\.loss"):
        load_config(CONFIG, ["target=null", "heads=[{target: pixels, loss: l1}]"])
    with pytest.raises(ConfigError, match="heads.loss"):  # a loss that does not fit the target's kind
        build_method(load_config(CONFIG, ["target=null", "heads=[{target: pixels, loss: cross_entropy}]"]))
    with pytest.raises(ConfigError, match="target"):
        load_config(CONFIG, ["heads=[{target: pixels}]"])  # the shorthand and the list together
    with pytest.raises(ConfigError, match="mask.options.source"):
        load_config(CONFIG, ["mask.strategy=mgm", "mask.options={source: flow}"])


def _contrastive(name: str):
    from maskvid.methods.losses import vimpac_info_nce

    return {"info_nce": info_nce, "vimpac_info_nce": vimpac_info_nce}[name]


def _info_nce_rank(rank: int, world: int, port: int, a: torch.Tensor, b: torch.Tensor, out: str, name: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    half = a.shape[0] // world
    mine_a = a[rank * half : (rank + 1) * half].clone().requires_grad_()
    mine_b = b[rank * half : (rank + 1) * half].clone().requires_grad_()
    loss = _contrastive(name)(mine_a, mine_b, temperature=0.2)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad_a": mine_a.grad, "grad_b": mine_b.grad}, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["info_nce", "vimpac_info_nce"])
def test_info_nce_under_ddp_takes_negatives_from_every_rank_with_gradients(tmp_path, name):
    """2 ranks x 3 pairs = 1 process x 6 pairs: the mean of the ranks' losses is the full-batch loss, and each
    rank's gradient (summed back through the all-gather; DDP then averages over ranks) is the full-batch one."""
    import socket

    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_info_nce_rank, args=(2, port, a, b, str(tmp_path / "rank"), name), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank.{r}", weights_only=True) for r in range(2)]
    full_a, full_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    full = _contrastive(name)(full_a, full_b, temperature=0.2)
    full.backward()
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, full.detach())
    grad_a = torch.cat([r["grad_a"] for r in ranks]) / 2  # DDP's average over the two ranks
    grad_b = torch.cat([r["grad_b"] for r in ranks]) / 2
    torch.testing.assert_close(grad_a, full_a.grad)
    torch.testing.assert_close(grad_b, full_b.grad)


def test_pair_sampling_and_the_motion_source_reach_the_dataset_from_the_config(synth_motion, tmp_path):
    from maskvid.data import collate
    from maskvid.recipes import build_dataset

    config = load_config(CONFIG, [
        f"output_dir={tmp_path}", f"data.train_list={os.path.join(synth_motion, 'train.csv')}", "data.num_frames=4",
        "data.size=32", "model.patch=[2, 8, 8]", "data.sampling=pair", "data.pair_max_distance=3",
        "data.motion_source=flow", "mask.strategy=mgm", "mask.ratio=0.5"])
    dataset = build_dataset(config, "train", build_method(config))
    assert (dataset.sampling, dataset.pair_distance, dataset.motion_source) == ("pair", 3, "flow")
    batch = collate([dataset[0], dataset[1]])
    assert batch["video2"].shape == batch["video"].shape == (2, 3, 4, 32, 32)
    assert batch["mask2"].shape == batch["mask"].shape == (2, 2 * 4 * 4)
    with pytest.raises(ConfigError, match="data.sampling"):
        load_config(CONFIG, ["data.sampling=sparse"])


def test_vimpac_info_nce_equals_eq_19_and_20_computed_by_hand_on_3_pairs():
    from maskvid.methods.losses import vimpac_info_nce

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    gamma = 0.2
    f = [v / v.norm() for v in a]
    f2 = [v / v.norm() for v in b]

    def e(x, y):
        return math.exp(float(x @ y) / gamma)

    eq19 = [-math.log(e(f[i], f2[i]) / (sum(e(f[i], f[k]) for k in range(3) if k != i)
                                          + sum(e(f[i], f2[k]) for k in range(3)))) for i in range(3)]
    eq20 = [-math.log(e(f2[i], f[i]) / (sum(e(f2[i], f[k]) for k in range(3))
                                          + sum(e(f2[i], f2[k]) for k in range(3) if k != i))) for i in range(3)]
    expected = sum(eq19) / 3 + sum(eq20) / 3  # eq. 5
    assert float(vimpac_info_nce(a, b, temperature=gamma)) == pytest.approx(expected, rel=1e-5)
