"""The pretraining engine end to end on synthetic video: the loss falls, SIGKILL + --resume is bit-identical,
non-finite losses stop cleanly, unsafe checkpoints are refused, configs are validated before data is read."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maskvid.config import load_config
from maskvid.engine.checkpoint import latest_checkpoint, list_checkpoints, load_state, save_checkpoint
from maskvid.engine.logging import read_metrics
from maskvid.engine.train import train
from maskvid.errors import CheckpointError, ConfigError, DataError
from maskvid.recipes import build_dataset, build_method, pretrain

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "videomae_micro.yaml")


def tiny_overrides(data_dir: str, out: str, **extra) -> list[str]:
    values = {
        "output_dir": out, "data.train_list": os.path.join(data_dir, "train.csv"), "data.num_frames": 4,
        "data.size": 32, "train.batch_size": 2, "train.num_workers": 0, "train.log_every": 1,
        "train.checkpoint_every": 2, "train.max_steps": 12, "train.progress": False, "model.patch": "[2, 8, 8]",
        "optim.warmup_steps": 2, **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_micro_pretraining_loss_falls(synth_motion, tmp_path):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "train.max_steps": 40, "target.name": "pixels", "train.num_workers": 1, "optim.lr": 3e-3}))
    result = pretrain(config)
    assert result.status == "finished" and result.step == 40
    losses = [r["loss"] for r in read_metrics(result.run_dir) if "loss" in r]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and any((run / "tensorboard").iterdir())
    assert [os.path.basename(p) for p in list_checkpoints(str(run))] == ["step_0000038", "step_0000040"]
    assert set(load_file(run / "checkpoints" / "step_0000040" / "model.safetensors")) == set(
        build_method(config).state_dict())


def _pretrain_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "maskvid.cli", "pretrain", *args]


def test_sigkill_then_resume_is_bit_identical(synth_motion, tmp_path):
    def sets(out):
        return [a for s in tiny_overrides(synth_motion, out, **{"train.max_steps": 60, "model.drop_path": 0.1,
                                                                   "train.checkpoint_every": 4})
                for a in ("--set", s)]

    straight = str(tmp_path / "straight")
    done = subprocess.run(_pretrain_cmd(["--config", CONFIG, *sets(straight)]), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(_pretrain_cmd(["--config", CONFIG, *sets(killed)]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    def saved_step() -> int:
        path = latest_checkpoint(killed)
        return int(os.path.basename(path).split("_")[1]) if path else 0

    deadline = time.time() + 120
    while saved_step() < 8:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = int(os.path.basename(latest_checkpoint(killed)).split("_")[1])
    assert interrupted_at < 60
    resumed = subprocess.run(_pretrain_cmd(["--resume", killed, "--json"]), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["step"] == 60
    a = load_file(os.path.join(straight, "checkpoints", "step_0000060", "model.safetensors"))
    b = load_file(os.path.join(killed, "checkpoints", "step_0000060", "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(killed) if "loss" in r]
    assert steps == list(range(1, 61))  # the dead run's records past its checkpoint were dropped


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = torch.nn.Linear(2, 2)
    path = save_checkpoint(str(tmp_path / "run"), 1, model, {"optimizer": {}})
    torch.save({"step": 1, "payload": _RunsCode()}, os.path.join(path, "state.pt"))
    with pytest.raises(CheckpointError, match="could run code"):
        load_state(path)
    assert not (tmp_path / "pwned").exists()


def test_a_half_written_checkpoint_is_ignored(tmp_path):
    model = torch.nn.Linear(2, 2)
    save_checkpoint(str(tmp_path), 3, model, {})
    (tmp_path / "checkpoints" / ".tmp-abc").mkdir()
    (tmp_path / "checkpoints" / "step_0000005").mkdir()  # no state.pt: the rename never happened
    assert latest_checkpoint(str(tmp_path)).endswith("step_0000003")


def test_config_errors_name_the_key_before_any_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(CONFIG, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="mask.ratio"):
        load_config(CONFIG, ["mask.ratio=1.5"])
    with pytest.raises(ConfigError, match="mask.strategy"):
        load_config(CONFIG, ["mask.strategy=zebra"])
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(CONFIG, ["train.precision=fp8"])
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "nope.yaml")
    config = load_config(CONFIG, ["data.train_list=" + str(tmp_path / "missing.csv")])
    with pytest.raises(ConfigError, match="data.train_list"):
        build_dataset(config, "train")
    with pytest.raises(ConfigError, match="target.name"):
        build_method(load_config(CONFIG, ["target.name=sound"]))


def test_resume_without_a_checkpoint_says_so(synth_motion, tmp_path):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run")))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        pretrain(config, resume=True)


def test_torchrun_two_ranks_equal_one_process_with_the_double_batch(synth_motion, tmp_path):
    """DDP on CPU (gloo): 2 ranks x 2 clips take the same steps as 1 process x 4 clips (same clips, same lr). A
    checkpoint (rank 0's alone) falls on a step without a log record, where the ranks must still agree on when
    they read the weights' check."""
    def sets(out, batch):
        return [a for s in tiny_overrides(synth_motion, out, **{"train.max_steps": 3, "train.batch_size": batch,
                                                                  "train.log_every": 3})
                for a in ("--set", s)]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = str(tmp_path / "two")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "maskvid.cli",
           "pretrain",
           "--config", CONFIG, *sets(two, 2), "--json"]
    ran = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert len([line for line in ran.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 reports alone
    one = str(tmp_path / "one")
    ran = subprocess.run(_pretrain_cmd(["--config", CONFIG, *sets(one, 4)]), capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    a = load_file(os.path.join(two, "checkpoints", "step_0000003", "model.safetensors"))
    b = load_file(os.path.join(one, "checkpoints", "step_0000003", "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4)
    assert read_metrics(two)[0]["world"] == 2


def test_accumulating_two_micro_batches_equals_one_double_batch(synth_motion, tmp_path):
    def run(out, batch, accumulate):
        config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / out), **{
            "train.max_steps": 2, "train.batch_size": batch, "optim.accumulate": accumulate}))
        return pretrain(config)

    a, b = run("accumulated", 2, 2), run("double", 4, 1)
    wa = load_file(os.path.join(a.checkpoint, "model.safetensors"))
    wb = load_file(os.path.join(b.checkpoint, "model.safetensors"))
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=2e-5, rtol=1e-4)


def test_bf16_autocast_and_gradient_checkpointing_run_on_cpu(synth_motion, tmp_path):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "train.max_steps": 2, "train.precision": "bf16", "model.grad_checkpointing": True, "optim.clip_grad": 1.0}))
    assert build_method(config).heads[0].decoder.grad_checkpointing  # the decoder recomputes too
    result = pretrain(config)
    assert result.status == "finished" and result.last_loss is not None
    assert read_metrics(str(tmp_path / "run"))[-2]["grad_norm"] > 0


def test_no_weight_decay_on_norms_biases_position_tables_and_mask_token():
    from maskvid.config import OptimConfig
    from maskvid.engine.optim import build_optimizer, build_scheduler, scaled_lr

    config = load_config(CONFIG, ["model.pos_embed=learned"])
    method = build_method(config)
    optimizer = build_optimizer(method, OptimConfig(), lr=1e-3)
    names = {id(p): n for n, p in method.named_parameters()}
    undecayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert optimizer.defaults["fused"]  # CPU too: the loop skips a bad step on the device through the fused kernel
    assert "heads.0.mask_token" in undecayed and "encoder.pos_embed.pos_embed" in undecayed
    assert all(n.endswith(("bias", "weight")) or "pos_embed" in n or n == "heads.0.mask_token"
               for n in undecayed if "norm" in n or n.endswith("bias"))
    assert "encoder.blocks.0.attn.qkv.weight" not in undecayed and "encoder.blocks.0.attn.q_bias" in undecayed
    assert scaled_lr(OptimConfig(base_lr=1.5e-4), 512) == pytest.approx(3e-4)
    scheduler = build_scheduler(optimizer, OptimConfig(warmup_steps=10, min_lr=1e-5), total_steps=110,
                                steps_per_epoch=10)
    lrs = []
    for step in (0, 5, 10, 60, 110):
        scheduler.step_update(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == 0 and lrs[1] == pytest.approx(5e-4) and lrs[2] == pytest.approx(1e-3)
    assert lrs[3] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3) and lrs[4] == pytest.approx(1e-5)


def test_resume_skips_a_truncated_newest_checkpoint_and_cleans_unfinished_writes(synth_motion, tmp_path):
    run = str(tmp_path / "run")
    overrides = tiny_overrides(synth_motion, run, **{"train.max_steps": 6, "train.keep_checkpoints": 3})
    config = load_config(CONFIG, overrides)
    pretrain(config)
    newest = os.path.join(run, "checkpoints", "step_0000006", "model.safetensors")
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    os.makedirs(os.path.join(run, "checkpoints", ".tmp-killed"))
    result = pretrain(load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 8})), resume=True)
    assert (result.status, result.step) == ("finished", 8)
    assert [r["at_step"] for r in read_metrics(run) if r.get("event") == "resumed"] == [4]
    assert not os.path.exists(os.path.join(run, "checkpoints", ".tmp-killed"))


def test_a_malformed_state_or_a_shape_mismatch_names_the_key(tmp_path):
    from maskvid.engine.checkpoint import restore_model
    from maskvid.engine.resume import resume_run

    model = torch.nn.Linear(2, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    path = save_checkpoint(str(tmp_path / "a"), 1, model, {"optimizer": optimizer.state_dict(),
                                                           "rng_cpu": torch.get_rng_state()})
    with pytest.raises(CheckpointError, match=r"(bias|weight): the checkpoint holds shape \(3(, 2)?,?\), the model "
                                              r"\(4(, 2)?,?\)"):
        restore_model(torch.nn.Linear(2, 4), path)
    state = load_state(path)
    torch.save({**state, "bad_videos": {"skipped": ["a.mp4"]}}, os.path.join(path, "state.pt"))
    with pytest.raises(CheckpointError, match="key 'bad_videos' is not a bad-video tally"):
        resume_run(str(tmp_path / "a"), model, optimizer, "cpu", None)
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(5, 2)
    torch.save(state, os.path.join(path, "state.pt"))
    with pytest.raises(CheckpointError, match=r"optimizer.exp_avg of weight: .*\(5, 2\), the model \(3, 2\)"):
        resume_run(str(tmp_path / "a"), model, optimizer, "cpu", None)
    del state["optimizer"]
    torch.save(state, os.path.join(path, "state.pt"))
    with pytest.raises(CheckpointError, match="key 'optimizer' is missing"):
        resume_run(str(tmp_path / "a"), model, optimizer, "cpu", None)


def test_too_many_bad_videos_end_the_run_with_a_final_event(synth_motion, tmp_path):
    videos = sorted(os.path.join(synth_motion, "videos", f) for f in os.listdir(os.path.join(synth_motion, "videos")))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(videos + [str(tmp_path / f"gone{i}.mp4") for i in range(12)]) + "\n")
    run = str(tmp_path / "run")
    config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"data.train_list": str(listing),
                                                                      "data.max_bad_fraction": 0.01}))
    dataset = build_dataset(config, "train")
    from maskvid.data import datasets

    original = datasets.BadVideoLog.__init__
    try:  # judge from the first batches, not after 50 reads
        datasets.BadVideoLog.__init__ = lambda self, max_fraction: original(self, max_fraction, min_attempts=4)
        with pytest.raises(DataError, match="max_bad_fraction"):
            train(build_method(config), dataset, config, run)
    finally:
        datasets.BadVideoLog.__init__ = original
    last = read_metrics(run)[-1]
    assert last["event"] == "data_error" and "max_bad_fraction" in last["error"] and last["bad_videos"]


@pytest.mark.parametrize(("name", "local_rank", "expected"), [
    ("auto", 0, "cuda:0"), ("auto", 3, "cuda:3"), ("cuda", 2, "cuda:2"), ("cuda:1", 3, "cuda:1"), ("cpu", 3, "cpu")])
def test_each_torchrun_rank_takes_the_gpu_of_its_local_rank(monkeypatch, name, local_rank, expected):
    from maskvid.engine.distributed import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    assert pick_device(name) == torch.device(expected)


def test_a_gpu_that_is_not_there_is_a_config_error(monkeypatch):
    from maskvid.engine.distributed import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match="train.device.*cuda:2 does not exist: 2 CUDA device"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="train.device.*no CUDA device"):
        pick_device("cuda:0")


class _Hooked(torch.utils.data.Dataset):
    """A training set that calls ``hook(key)`` before making each sample (in whichever process makes it)."""

    def __init__(self, dataset, hook):
        self.dataset, self.hook = dataset, hook

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        self.hook(key)
        return self.dataset[key]


def _log_key(log: str, key) -> None:
    with open(log, "a") as f:
        f.write(json.dumps([os.getpid(), *key]) + "\n")


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_each_record_says_what_share_of_the_time_the_step_waited_for_data(synth_motion, tmp_path, delay):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "train.max_steps": 4, "train.log_every": 2}))
    dataset = _Hooked(build_dataset(config), lambda key: time.sleep(delay))  # a loader slower than the model
    train(build_method(config), dataset, config, str(tmp_path / "run"))
    waits = [r["data_wait"] for r in read_metrics(str(tmp_path / "run")) if "loss" in r]
    assert len(waits) == 2 and all(0 <= w <= 1 for w in waits)
    if delay:  # 0.4 s of loading a step against a micro model's few milliseconds
        assert min(waits) > 0.6
    else:
        assert max(waits) < 0.9


def test_clips_normalized_on_the_device_train_exactly_as_clips_normalized_in_the_workers(synth_motion, tmp_path):
    """``maskvid pretrain`` ships uint8 clips through the loader (a quarter of the bytes, no float work in the
    workers) and normalizes them in the loop: the same losses, to the bit, as float clips from the workers."""
    losses = []
    for on_device in (False, True):
        run = str(tmp_path / f"run_{on_device}")
        config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 3,
                                                                          "train.num_workers": 1}))
        dataset = build_dataset(config, normalize_on_device=on_device)
        assert dataset[0]["video"].dtype == (torch.uint8 if on_device else torch.float32)
        torch.manual_seed(0)
        train(build_method(config), dataset, config, run)
        losses.append([r["loss"] for r in read_metrics(run) if "loss" in r])
    assert len(losses[0]) == 3 and losses[0] == losses[1]


def test_one_loader_serves_every_epoch_in_each_epochs_order(synth_motion, tmp_path):
    """The loader's workers outlive an epoch (a loader per epoch made the GPU wait for new workers and their
    first batch every epoch), and each epoch is still its own permutation, taken in whole steps."""
    from maskvid.engine.distributed import Dist, ShardedResumableSampler

    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{"train.num_workers": 1}))
    dataset = build_dataset(config)
    steps_per_epoch = len(dataset) // 2  # batch 2
    per_epoch = 2 * steps_per_epoch
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "train.num_workers": 1, "train.max_steps": 2 * steps_per_epoch + 1}))  # two epochs, a step of the third
    log = str(tmp_path / "keys.jsonl")
    train(build_method(config), _Hooked(dataset, functools.partial(_log_key, log)), config, str(tmp_path / "run"))
    seen = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert len({pid for pid, _, _ in seen}) == 1 and seen[0][0] != os.getpid()  # one worker, all run long
    sampler = ShardedResumableSampler(len(dataset), config.seed, Dist(rank=0, world=1, local_rank=0), per_epoch)
    expected = []
    for epoch in (0, 1):
        sampler.set_position(epoch, 0)
        expected += [[epoch, index] for index in sampler]
    assert [key for _, *key in seen[: 2 * per_epoch]] == expected
