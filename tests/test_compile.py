"""torch.compile on CPU (inductor): a compiled method computes the loss and gradients the eager one does, and a
pretraining run with ``train.compile`` trains. What a GPU node runs compiled is first checked here."""

from __future__ import annotations

import torch

from maskvid.bench.workloads import build_workload
from maskvid.config import load_config
from maskvid.methods.losses import weighted_total
from maskvid.recipes import pretrain
from test_engine import CONFIG, tiny_overrides


def test_a_weighted_total_keeps_the_gradient_when_compiled():
    """Inductor folded ``0.0 + 1.0 * term`` into ``term`` and returned that loss, beside the term's detached
    metric, without a gradient; the total is built without such arithmetic."""
    weight = torch.randn(4, requires_grad=True)

    def step(x):
        term = (x * weight).sum()
        total = weighted_total(None, 1.0, term)
        return total, term.detach()

    loss, _ = torch.compile(step)(torch.randn(4))
    assert loss.requires_grad
    assert weighted_total(weighted_total(None, 1.0, torch.tensor(2.0)), 0.5, torch.tensor(4.0)) == 4.0


def test_a_compiled_masked_autoencoder_gives_the_eager_loss_and_gradients():
    """VideoMAE's step as the bench builds it (MGM, MME, MAM² and VIMPAC share its loss path and were checked
    by hand to pretrain compiled)."""
    torch.manual_seed(0)
    model, loss_of = build_workload("videomae", "micro", 2)
    model.train()
    eager = loss_of(model)
    eager.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    compiled = loss_of(torch.compile(model))
    assert compiled.requires_grad
    compiled.backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-4, rtol=1e-3)


def test_pretraining_with_train_compile_trains(synth_motion, tmp_path):
    config = load_config(CONFIG, tiny_overrides(synth_motion, str(tmp_path / "run"), **{
        "train.max_steps": 2, "train.compile": True}))
    result = pretrain(config)
    assert result.status == "finished" and result.step == 2 and result.last_loss is not None
