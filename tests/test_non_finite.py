"""A run that goes non-finite stops cleanly: a NaN loss or a NaN gradient (never applied: the fused AdamW kernel
skips the step on the device) or an update that makes the weights non-finite (never saved). Each step's check is
read before the next step's update, or before a checkpoint, log record or evaluation, whichever comes first."""

from __future__ import annotations

import math
import os

import torch
from safetensors.torch import load_file

from maskvid.config import load_config
from maskvid.engine.checkpoint import latest_checkpoint, list_checkpoints
from maskvid.engine.logging import read_metrics
from maskvid.engine.step_check import StepCheck
from maskvid.engine.train import train
from maskvid.recipes import build_dataset, build_method
from maskvid.targets import Target
from test_engine import CONFIG, tiny_overrides


class _NaNAfter(Target):
    """A target that turns NaN after ``calls`` batches (a stand-in for a diverging run)."""

    def __init__(self, inner, calls):
        super().__init__()
        self.inner, self.calls, self._dim = inner, calls, inner.dim

    @property
    def dim(self):
        return self._dim

    def forward(self, video, **aux):
        self.calls -= 1
        out = self.inner(video)
        return out if self.calls >= 0 else out * float("nan")


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(synth_motion, tmp_path):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run")))
    method = build_method(config)
    method.heads[0].target = _NaNAfter(method.heads[0].target, calls=5)
    result = train(method, build_dataset(config, "train"), config, str(tmp_path / "run"))
    assert result.status == "non_finite_loss" and result.step == 5
    assert os.path.basename(latest_checkpoint(str(tmp_path / "run"))) == "step_0000004"
    weights = load_file(tmp_path / "run" / "checkpoints" / "step_0000004" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert read_metrics(str(tmp_path / "run"))[-2]["event"] == "non_finite_loss"


class _NaNGradientAfter(torch.nn.Module):
    """Wraps a method: after ``calls`` batches its loss stays finite but its gradient is NaN (sqrt at 0)."""

    def __init__(self, method, calls):
        super().__init__()
        self.method, self.calls = method, calls

    def prepare(self, batch, device):
        return self.method.prepare(batch, device)

    def forward(self, **inputs):
        out = self.method(**inputs)
        self.calls -= 1
        if self.calls < 0:
            weight = next(self.method.parameters())
            out.loss = out.loss + torch.sqrt((weight - weight.detach()).abs()).sum()  # + 0, d/dw = nan
        return out


def _all_finite(path: str) -> bool:
    return all(torch.isfinite(w).all() for w in load_file(os.path.join(path, "model.safetensors")).values())


def test_a_non_finite_gradient_is_never_applied(synth_motion, tmp_path):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{"train.checkpoint_every": 1}))
    method = _NaNGradientAfter(build_method(config), calls=3)
    result = train(method, build_dataset(config, "train"), config, str(tmp_path / "run"))
    assert (result.status, result.step) == ("non_finite_gradient", 3)
    assert os.path.basename(result.checkpoint) == "step_0000003" and _all_finite(result.checkpoint)
    assert all(torch.isfinite(p).all() for p in method.parameters())  # the NaN gradient was not stepped with


def test_an_update_that_makes_weights_non_finite_is_never_saved(synth_motion, tmp_path, monkeypatch):
    """``optim.lr=.inf`` once passed validation and saved all-inf weights as the last good checkpoint. The config
    now refuses it; behind that, the loop checks the weights after every step, before any checkpoint."""
    run = str(tmp_path / "run")
    config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 4}))
    assert train(build_method(config), build_dataset(config, "train"), config, run).status == "finished"
    import maskvid.engine.train as engine

    monkeypatch.setattr(engine, "scaled_lr", lambda *args: float("inf"))  # what validation no longer lets through
    config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 8,
                                                                      "train.checkpoint_every": 1}))
    result = train(build_method(config), build_dataset(config, "train"), config, run, resume=True)
    assert (result.status, result.step) == ("non_finite_update", 4)
    assert [os.path.basename(p) for p in list_checkpoints(run)] == ["step_0000002", "step_0000004"]
    assert all(_all_finite(p) for p in list_checkpoints(run))
    assert [r["event"] for r in read_metrics(run) if "event" in r][-2:] == ["non_finite_update"] * 2


def test_an_update_checked_with_the_next_loss_still_stops_at_the_last_good_step(synth_motion, tmp_path, monkeypatch):
    """Between checkpoints and log records a step's check is read once the next step's forward and backward are
    queued (the host does not wait for the optimizer): the run still stops at the step before the bad update, and
    nothing from it or after it is logged or saved."""
    run = str(tmp_path / "run")
    config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 2}))
    assert train(build_method(config), build_dataset(config, "train"), config, run).status == "finished"
    import maskvid.engine.train as engine

    monkeypatch.setattr(engine, "scaled_lr", lambda *args: float("inf"))
    config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 12, "train.log_every": 5,
                                                                      "train.checkpoint_every": 5}))
    method, forwards = build_method(config), []
    method.register_forward_pre_hook(lambda *args: forwards.append(1))
    result = train(method, build_dataset(config, "train"), config, run, resume=True)
    assert (result.status, result.step) == ("non_finite_update", 2)
    assert len(forwards) == 2  # step 4's forward was queued before step 3's check was read
    assert [os.path.basename(p) for p in list_checkpoints(run)] == ["step_0000002"]
    records = read_metrics(run)
    assert max(r["step"] for r in records if "loss" in r) == 2  # no record of step 3 or later
    assert [(r["event"], r.get("step")) for r in records if "event" in r][-2:] == [("non_finite_update", 2)] * 2


def test_the_loop_reads_each_step_once_through_its_check(synth_motion, tmp_path, monkeypatch):
    """No per-micro-step loss read any more: each step's figures come to the host once, a step late, except where
    a log record or checkpoint reads them at once."""
    reads, read = [], StepCheck.read
    monkeypatch.setattr(StepCheck, "read", lambda self: reads.append(1) or read(self))
    run = str(tmp_path / "run")
    config = load_config(CONFIG, tiny_overrides(synth_motion, run, **{"train.max_steps": 6, "train.log_every": 4,
                                                                      "optim.accumulate": 2}))
    result = train(build_method(config), build_dataset(config, "train"), config, run)
    assert (result.status, result.step, len(reads)) == ("finished", 6, 6)
    logged = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert len(logged) == 2 and all(math.isfinite(v) for v in logged) and result.last_loss is not None
