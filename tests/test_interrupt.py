"""A stop signal (SLURM's SIGTERM or SIGUSR1) ends a run at the next step boundary with that step saved, so the
steps since the last scheduled checkpoint are not lost, and ``--resume`` goes on bit-identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from maskvid.config import load_config
from maskvid.engine.checkpoint import latest_checkpoint
from maskvid.engine.interrupt import StopSignals
from maskvid.engine.logging import read_metrics
from maskvid.engine.train import train
from maskvid.recipes import build_dataset, build_method
from test_distributed import two_ranks_run
from test_engine import CONFIG, _Hooked, tiny_overrides


def _step_of(checkpoint: str) -> int:
    return int(os.path.basename(checkpoint).split("_")[1])


def _pretrain(out: str, synth_motion: str, *extra: str) -> list[str]:
    sets = tiny_overrides(synth_motion, out, **{"train.max_steps": 24, "train.checkpoint_every": 1000,
                                                "train.num_workers": 1, "model.drop_path": 0.1})
    return [sys.executable, "-m", "maskvid.cli", "pretrain", "--config", CONFIG,
            *(a for s in sets for a in ("--set", s)), *extra]


def test_a_stop_signal_saves_the_step_it_stops_at_and_resume_is_bit_identical(synth_motion, tmp_path):
    """SIGTERM to the whole process group, as SLURM sends it: the loader's worker ignores it, the run saves the
    step it stops at (no scheduled checkpoint comes before the end), exits 3, and resumes bit-identically."""
    stop = signal.SIGTERM
    straight = str(tmp_path / "straight")
    done = subprocess.run(_pretrain(straight, synth_motion), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stopped = str(tmp_path / "stopped")
    proc = subprocess.Popen(_pretrain(stopped, synth_motion), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # its own process group: the run and its worker
    deadline = time.time() + 120
    while not any(r.get("step", 0) >= 3 for r in read_metrics(stopped) if "loss" in r):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be stopped"
        time.sleep(0.01)
    os.killpg(proc.pid, stop)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err  # not finished: a status other than 0, and no traceback
    assert "Traceback" not in err and f"maskvid pretrain --resume {stopped}" in out
    event = next(r for r in read_metrics(stopped) if r.get("event") == "signal")
    assert event["signal"] == stop.name and 3 <= event["step"] < 24
    assert _step_of(latest_checkpoint(stopped)) == event["step"]  # checkpoint_every is 1000: the stop saved it
    resumed = subprocess.run([sys.executable, "-m", "maskvid.cli", "pretrain", "--resume", stopped, "--json"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(os.path.join(straight, "checkpoints", "step_0000024", "model.safetensors"))
    b = load_file(os.path.join(stopped, "checkpoints", "step_0000024", "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_signal_in_the_middle_of_an_accumulation_stops_at_the_step_boundary(synth_motion, tmp_path):
    """Micro-batches 1-2 are step 1, 3-4 step 2, ...: a signal while micro-batch 4 loads lets step 2 finish with it;
    the run saves step 2 and stops before micro-batch 5 trains; the handlers are the process's own again after."""
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "optim.accumulate": 2, "train.batch_size": 1, "train.checkpoint_every": 1000, "train.max_steps": 10}))
    loaded = []

    def hook(key):
        loaded.append(key)
        if len(loaded) == 4:
            signal.raise_signal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    method = build_method(config)
    result = train(method, _Hooked(build_dataset(config), hook), config, str(tmp_path / "run"))
    assert (result.status, result.step) == ("interrupted", 2)
    assert len(loaded) == 5  # the 5th micro-batch was loaded, then the stop was seen before it trained
    saved = load_file(os.path.join(result.checkpoint, "model.safetensors"))
    assert _step_of(result.checkpoint) == 2
    assert all(torch.equal(saved[k], v) for k, v in method.state_dict().items())
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signals_only_raise_a_flag_while_entered(stop):
    before = signal.getsignal(stop)
    with StopSignals() as signals:
        signal.raise_signal(stop)
        assert signals.received == stop.name
    assert signal.getsignal(stop) is before


SIGNAL_ON_RANK_ONE = """
import json, os, signal, sys
from maskvid.config import load_config
from maskvid.engine.train import train
from maskvid.recipes import build_dataset, build_method

config_path, out, *sets = sys.argv[1:]
config = load_config(config_path, sets)
rank = int(os.environ["RANK"])


class SignalOnRankOne:
    # rank 1 alone gets SIGTERM while its 4th sample loads: its 2nd batch, which then never trains
    def __init__(self, dataset):
        self.dataset, self.loaded = dataset, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        self.loaded += 1
        if rank == 1 and self.loaded == 4:
            signal.raise_signal(signal.SIGTERM)
        return self.dataset[key]


result = train(build_method(config), SignalOnRankOne(build_dataset(config, "train")), config,
               os.path.join(out, "run"))
with open(os.path.join(out, f"result_{rank}.json"), "w") as f:
    json.dump({"status": result.status, "step": result.step}, f)
"""


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(synth_motion, tmp_path):
    """The ranks agree on the stop in the reduction they already make each step: both end after step 1, and rank 0
    saves it."""
    results = two_ranks_run(SIGNAL_ON_RANK_ONE, tmp_path, tiny_overrides(
        synth_motion, str(tmp_path / "run"), **{"train.max_steps": 8, "train.checkpoint_every": 100}))
    assert results[0] == results[1] == {"status": "interrupted", "step": 1}
    assert _step_of(latest_checkpoint(str(tmp_path / "run"))) == 1
    events = [r for r in read_metrics(str(tmp_path / "run")) if r.get("event") == "signal"]
    assert [(e["step"], e["signal"]) for e in events] == [(1, "a signal to another rank")]  # rank 0 logs
