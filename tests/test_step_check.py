"""The optimizer step reads nothing from the device: a non-finite loss or gradient is skipped by the fused AdamW
kernel itself, and the step's figures reach the host through a StepCheck read later."""

from __future__ import annotations

import math

import pytest
import torch

from maskvid.engine.distributed import Dist
from maskvid.engine.step_check import FIELDS, optimizer_step


def _model_and_grads(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    loss = model(torch.randn(16, 4)).pow(2).mean()
    loss.backward()
    return model, loss


@pytest.fixture
def no_device_reads(monkeypatch):
    """Every way Python code reads a tensor's value raises: what runs under it queues work and reads nothing."""
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read on the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


def _step(model, losses, clip_grad=1.0, lr=1e-2, fused=True):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused)
    return optimizer, optimizer_step(list(model.parameters()), optimizer, losses, clip_grad, Dist())


def test_a_good_step_is_adamw_with_clipping_and_its_figures_are_right():
    model, loss = _model_and_grads()
    reference, _ = _model_and_grads()
    norm = float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0))
    torch.optim.AdamW(reference.parameters(), lr=1e-2, foreach=True).step()
    _, check = _step(model, [loss, loss * 3])
    figures = check.read()
    assert set(figures) == set(FIELDS)
    assert figures["loss"] == pytest.approx(2 * float(loss.detach())) and figures["grad_norm"] == pytest.approx(norm)
    assert figures["loss_finite"] == figures["grad_finite"] == figures["weights_finite"] == 1.0
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)
        assert ours.grad is None  # zeroed for the next step


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_leaves_weights_and_moments_as_they_were(bad, fused):
    model, loss = _model_and_grads()
    before = [p.detach().clone() for p in model.parameters()]
    if bad == "gradient":
        next(model.parameters()).grad[0, 0] = math.nan
    optimizer, check = _step(model, [loss, torch.tensor(math.inf) if bad == "loss" else loss], fused=fused)
    figures = check.read()
    assert (figures["loss_finite"], figures["grad_finite"]) == ((0.0, 1.0) if bad == "loss" else (1.0, 0.0))
    assert figures["weights_finite"] == 1.0
    for p, old in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, old)
        state = optimizer.state.get(p, {})
        assert not state or not state["exp_avg"].any()  # no moment was updated either


def test_an_update_that_makes_weights_non_finite_is_flagged():
    model, loss = _model_and_grads()
    _, check = _step(model, [loss], lr=math.inf)
    figures = check.read()
    assert figures["grad_finite"] == 1.0 and figures["weights_finite"] == 0.0


def test_the_fused_step_reads_nothing_from_the_device(no_device_reads, monkeypatch):
    model, loss = _model_and_grads()
    before = [p.detach().clone() for p in model.parameters()]
    _, good = _step(model, [loss], clip_grad=0.5)
    after_good = [p.detach().clone() for p in model.parameters()]
    _, bad = _step(model, [loss * math.nan], clip_grad=None)
    monkeypatch.undo()  # reading is allowed again: check what the two steps did
    assert good.read()["loss_finite"] == 1.0 and bad.read()["loss_finite"] == 0.0
    assert all(not torch.equal(p, old) for p, old in zip(after_good, before, strict=True))
    assert all(torch.equal(p, old) for p, old in zip(model.parameters(), after_good, strict=True))
