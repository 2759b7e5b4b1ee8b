"""Across processes: the sampler's shards, a resume with another world size, and the bad-video report merged over
ranks — torchrun with gloo on CPU (the equal-steps test of 2 ranks vs 1 process is in test_engine.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import torch

from maskvid import rng
from maskvid.config import load_config
from maskvid.engine.checkpoint import load_state
from maskvid.engine.distributed import Dist, ShardedResumableSampler
from maskvid.engine.logging import read_metrics
from maskvid.engine.train import _plan, resumed_step
from test_engine import CONFIG, tiny_overrides


def drawn(size: int, world: int, per_rank: int, start: int = 0, epoch: int = 0) -> list[list[int]]:
    shards = []
    for rank in range(world):
        sampler = ShardedResumableSampler(size, seed=0, info=Dist(rank, world), per_rank=per_rank)
        sampler.set_position(epoch, start)
        shards.append(list(sampler))
    return shards


def test_ranks_draw_the_epochs_order_from_its_start_whatever_the_world():
    order = torch.randperm(24, generator=rng.generator(0, 0)).tolist()
    two = drawn(24, 2, per_rank=12)
    assert sorted(two[0] + two[1]) == list(range(24))
    first_steps = [i for step in range(3) for rank in range(2) for i in two[rank][2 * step:2 * step + 2]]
    assert sorted(first_steps) == sorted(order[:12])  # 3 steps of 2 per rank: the order's first 12
    rest = drawn(24, 1, per_rank=24, start=12)[0]  # resumed on one rank after those 12
    assert rest == order[12:]
    three = drawn(24, 3, per_rank=8, start=12)  # or on three: 4 each, together the same rest
    assert sorted(sum(three, [])) == sorted(order[12:]) and all(len(s) == 4 for s in three)
    same = drawn(24, 2, per_rank=12, start=8)  # an exact resume on the same world: each rank's shard goes on
    assert same == [two[0][4:], two[1][4:]]


def test_resumed_step_converts_the_position_in_the_epoch():
    def plan(world: int, batch: int = 2):
        config = load_config(CONFIG, [f"train.batch_size={batch}", "train.max_steps=100"])
        return _plan(config, 12, world), world

    assert resumed_step(2, 4, 12, *plan(2)) == 2  # same global batch: exact
    assert resumed_step(2, None, 12, *plan(1)) == 2  # a checkpoint that does not say: as it was
    assert resumed_step(2, 4, 12, *plan(1)) == 4  # 8 samples of epoch 0 drawn: 4 steps of 2
    assert resumed_step(4, 4, 12, *plan(1)) == 6 + 2  # epoch 1 (3 steps of 4 each), 4 samples into it
    assert resumed_step(5, 2, 12, *plan(2)) == 2  # 10 samples: 2 whole steps of 4, 2 samples drawn again
    assert resumed_step(3, 4, 12, *plan(3)) == 2  # epoch 0 was done: epoch 1 starts, at step 2 (2 steps of 6)


def test_two_ranks_merge_their_bad_videos_and_a_resume_on_one_goes_on(synth_motion, tmp_path):
    videos = sorted(os.path.join(synth_motion, "videos", f) for f in os.listdir(os.path.join(synth_motion, "videos")))
    missing = [str(tmp_path / f"missing_{i}.mp4") for i in range(4)]
    entries = videos[:8] + missing  # indices 8..11 are bad
    (tmp_path / "list.txt").write_text("\n".join(entries) + "\n")
    seed = load_config(CONFIG, []).seed
    order = torch.randperm(12, generator=rng.generator(seed, 0)).tolist()
    assert all(set(order[r:8:2]) & {8, 9, 10, 11} for r in (0, 1)), "each rank must meet a bad video by step 2"

    run = str(tmp_path / "run")
    sets = tiny_overrides(synth_motion, run, **{"data.train_list": str(tmp_path / "list.txt"), "train.max_steps": 3,
                                                "train.checkpoint_every": 1, "train.keep_checkpoints": 3})
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "maskvid.cli",
           "pretrain", "--config", CONFIG, *args]
    ran = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    end = [r for r in read_metrics(run) if r.get("event") == "finished"][-1]
    assert set(missing) <= set(end["bad_videos"])  # 3 steps x 2 ranks x 2 clips: the whole epoch, both shards

    shutil.rmtree(os.path.join(run, "checkpoints", "step_0000003"))  # resume from step 2 (8 samples drawn)
    met_before = {entries[i] for i in order[:8] if i >= 8}
    assert met_before <= set(load_state(os.path.join(run, "checkpoints", "step_0000002"))["bad_videos"]["skipped"])
    resume = [sys.executable, "-m", "maskvid.cli", "pretrain", "--resume", run, "--set", "train.max_steps=6"]
    ran = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    events = [r for r in read_metrics(run) if r.get("event") in ("resumed", "finished")]
    assert events[-2]["event"] == "resumed" and events[-2]["world"] == 1
    assert events[-2]["at_step"] == 4 and events[-2]["from"] == {"step": 2, "global_batch": 4}
    assert events[-1]["step"] == 6
    # the report goes on from the checkpoint's: the videos met before the resume, on either rank, are still in it
    assert met_before | {entries[i] for i in order[8:] if i >= 8} <= set(events[-1]["bad_videos"])


def test_too_many_bad_videos_stop_every_rank_together(synth_motion, tmp_path):
    """The bad fraction is counted over all ranks: one rank stopping alone would leave the other waiting forever in
    its next collective."""
    videos = sorted(os.path.join(synth_motion, "videos", f) for f in os.listdir(os.path.join(synth_motion, "videos")))
    entries = videos[:8] + [str(tmp_path / f"missing_{i}.mp4") for i in range(4)]  # a third of the list is bad
    (tmp_path / "list.txt").write_text("\n".join(entries) + "\n")
    run = str(tmp_path / "run")
    sets = tiny_overrides(synth_motion, run, **{"data.train_list": str(tmp_path / "list.txt"), "train.max_steps": 40,
                                                "data.max_bad_fraction": 0.1})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "maskvid.cli",
           "pretrain", "--config", CONFIG, *[a for s in sets for a in ("--set", s)]]
    ran = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         timeout=240)
    assert ran.returncode != 0 and "max_bad_fraction" in ran.stderr
    stopped = [r for r in read_metrics(run) if r.get("event") == "data_error"]
    assert len(stopped) == 1 and stopped[0]["step"] < 40


ONE_BAD_RANK = """
import json, math, os, sys
import torch
from maskvid.config import load_config
from maskvid.engine.train import train
from maskvid.recipes import build_dataset, build_method

config_path, out, *sets = sys.argv[1:]
config = load_config(config_path, sets)
rank = int(os.environ["RANK"])


class InfiniteLossOnRankOne(torch.nn.Module):
    # from its 3rd batch on, rank 1's loss is infinite while its gradient stays finite (a constant is added)
    def __init__(self, method):
        super().__init__()
        self.method, self.calls = method, 0

    def prepare(self, batch, device):
        return self.method.prepare(batch, device)

    def forward(self, **inputs):
        out = self.method(**inputs)
        self.calls += 1
        if rank == 1 and self.calls >= 3:
            out.loss = out.loss + math.inf
        return out


method = build_method(config)
result = train(InfiniteLossOnRankOne(method), build_dataset(config, "train"), config, os.path.join(out, "run"))
torch.save({n: p.detach() for n, p in method.named_parameters()}, os.path.join(out, f"weights_{rank}.pt"))
with open(os.path.join(out, f"result_{rank}.json"), "w") as f:
    json.dump({"status": result.status, "step": result.step}, f)
"""


def test_a_loss_bad_on_one_rank_skips_the_step_on_every_rank_and_stops_them_together(synth_motion, tmp_path):
    """The finiteness flags are reduced over ranks on the device before the update: rank 0, whose loss is fine,
    skips the step too (else the ranks' weights part) and reads the same flags, so both stop at the same step."""
    results = two_ranks_run(ONE_BAD_RANK, tmp_path, tiny_overrides(
        synth_motion, str(tmp_path / "run"), **{"train.max_steps": 8, "train.log_every": 4,
                                                "train.checkpoint_every": 4}))
    assert results[0] == results[1] == {"status": "non_finite_loss", "step": 2}
    weights = [torch.load(tmp_path / f"weights_{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(weights[0][n], weights[1][n]) and torch.isfinite(weights[0][n]).all() for n in weights[0])


def two_ranks_run(script_text: str, tmp_path, sets: list[str]) -> list[dict]:
    """``script_text`` (argv: config, output folder, overrides; it writes ``result_<rank>.json``) under torchrun
    with 2 gloo ranks; each rank's result."""
    script = tmp_path / "two_ranks.py"
    script.write_text(script_text)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           CONFIG, str(tmp_path), *sets]
    ran = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         timeout=240)
    assert ran.returncode == 0, ran.stderr[-2000:]
    return [json.loads((tmp_path / f"result_{r}.json").read_text()) for r in (0, 1)]


SHARED_KNN = """
import json, os, sys
import torch
from maskvid.config import load_config
from maskvid.engine.distributed import init_distributed
from maskvid.recipes import build_knn_monitor, build_method

config_path, out, *sets = sys.argv[1:]
config = load_config(config_path, sets)
info = init_distributed(torch.device("cpu"))
torch.manual_seed(0)
method = build_method(config)
monitor = build_knn_monitor(config, method)
torch.save(monitor._embed(method.eval(), monitor.sets[0], torch.device("cpu"), info),
           os.path.join(out, f"bank_{info.rank}.pt"))
with open(os.path.join(out, f"result_{info.rank}.json"), "w") as f:
    json.dump(monitor(method, "cpu", info=info), f)
"""


def test_the_knn_monitor_shared_by_two_ranks_gives_each_the_one_process_figures(synth_motion, tmp_path):
    """Each rank embeds every other clip; a bad video in one rank's share leaves the ranks different bank counts, and
    the one query leaves rank 1 none. The gathered bank is the one-process bank, in its order, and so are the
    figures."""
    from maskvid.data import read_annotation_list
    from maskvid.recipes import build_knn_monitor, build_method

    bank_list = tmp_path / "bank.csv"
    records = read_annotation_list(os.path.join(synth_motion, "train.csv"))
    bank_list.write_text("".join(f"{r.path} {r.label}\n" for r in records) + "missing.mp4 0\n")
    query = read_annotation_list(os.path.join(synth_motion, "val.csv"))[0]
    (tmp_path / "query.csv").write_text(f"{query.path} {query.label}\n")
    sets = tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "data.knn_train_list": str(bank_list), "data.knn_val_list": str(tmp_path / "query.csv")})
    results = two_ranks_run(SHARED_KNN, tmp_path, sets)
    config = load_config(CONFIG, sets)
    torch.manual_seed(0)
    method = build_method(config)
    monitor = build_knn_monitor(config, method)
    features, labels = monitor._embed(method.eval(), monitor.sets[0], torch.device("cpu"))
    assert len(features) == len(monitor.sets[0]) - 1  # the missing file was skipped
    for rank in (0, 1):
        gathered, gathered_labels = torch.load(tmp_path / f"bank_{rank}.pt", weights_only=True)
        assert torch.equal(gathered_labels, labels) and torch.allclose(gathered, features, atol=1e-5)
    assert results[0] == results[1] == monitor(method, "cpu")


SHARED_EVALUATION = f"""
import json, os, sys
import torch
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from maskvid.engine.distributed import ranks
from maskvid.engine.evaluate import evaluate
from maskvid.finetune_recipes import build_finetune_method
from maskvid.recipes import build_dataset
from test_evaluate import _config

_, out, synth, val_list = sys.argv[1:]
config = _config(synth, "videomae_micro.yaml", **{{"data.val_list": val_list}})
torch.manual_seed(0)
method = build_finetune_method(config, 3)
with ranks("cpu") as (device, info):
    report = evaluate(method, build_dataset(config, "val", normalize_on_device=True), 3, batch_size=1, info=info)
with open(os.path.join(out, f"result_{{info.rank}}.json"), "w") as f:
    json.dump({{k: v for k, v in report.items() if k not in ("seconds", "clips_per_s")}}, f)
"""


def test_evaluation_shared_by_two_ranks_gives_each_the_one_process_report(synth_motion, tmp_path):
    """Each rank scores every other video (one of them unreadable); confusion, top-5, counts and the bad videos are
    summed over the ranks: each rank's report is the one-process report."""
    from maskvid.data import read_annotation_list
    from maskvid.engine import evaluate as evaluation
    from maskvid.finetune_recipes import build_finetune_method
    from maskvid.recipes import build_dataset
    from test_evaluate import _config

    val_list = tmp_path / "val.csv"
    records = read_annotation_list(os.path.join(synth_motion, "val.csv"))
    val_list.write_text("missing.mp4 0\n" + "".join(f"{r.path} {r.label}\n" for r in records))
    results = two_ranks_run(SHARED_EVALUATION, tmp_path, [synth_motion, str(val_list)])
    config = _config(synth_motion, "videomae_micro.yaml", **{"data.val_list": str(val_list)})
    torch.manual_seed(0)
    method = build_finetune_method(config, 3)
    report = evaluation.evaluate(method, build_dataset(config, "val", normalize_on_device=True), 3, batch_size=1)
    expected = json.loads(json.dumps({k: v for k, v in report.items() if k not in ("seconds", "clips_per_s")}))
    expected["ranks"] = 2
    assert expected["videos"] == len(records) and list(expected["bad_videos"]) == [str(tmp_path / "missing.mp4")]
    assert results[0] == results[1] == expected
