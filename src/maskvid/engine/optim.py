"""AdamW with VideoMAE's weight-decay exclusions, the linear lr-scaling rule, cosine schedule with linear warmup."""

from __future__ import annotations

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler

from maskvid.config import OptimConfig

FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW runs (torch >= 2.4)


def scaled_lr(optim: OptimConfig, effective_batch: int) -> float:
    """``optim.lr`` if set, else ``base_lr · effective_batch / 256`` (MAE / VideoMAE)."""
    return optim.lr if optim.lr is not None else optim.base_lr * effective_batch / 256


def no_decay_names(model: torch.nn.Module) -> set[str]:
    """Position tables and a decoder's locality slopes, [MASK] and [CLS] tokens; 1-D parameters (norms, biases, q/v
    biases) are excluded by shape."""
    return {name for name, _ in model.named_parameters()
            if "pos_embed" in name or name.endswith(("mask_token", "cls_token", "locality.slopes"))}


def build_optimizer(model: torch.nn.Module, optim: OptimConfig, lr: float) -> torch.optim.AdamW:
    """AdamW over trainable parameters; with ``layer_decay`` < 1, block i of L gets lr · decay^(L+1-i) (BEiT,
    VideoMAE fine-tuning; the model's ``group_matcher`` says which parameters form each layer). The fused kernel
    (CPU and CUDA): one launch for all parameters instead of a few per tensor (on 2 CPU cores a ViT-S step of
    AdamW took 40 ms against 170), and it can skip a step on a flag it reads on the device, which the loop relies
    on (:mod:`maskvid.engine.step_check`). Build it after moving the model."""
    skip = no_decay_names(model)
    if optim.layer_decay < 1:
        groups = param_groups_layer_decay(model, optim.weight_decay, no_weight_decay_list=skip,
                                          layer_decay=optim.layer_decay)
    else:
        groups = param_groups_weight_decay(model, optim.weight_decay, no_weight_decay_list=skip)
    return adamw(groups, lr=lr, betas=optim.betas)


def adamw(params, **options) -> torch.optim.AdamW:
    """torch's AdamW, fused where every parameter's device has the fused kernel (the benches build theirs here
    too, so that they time the optimizer training runs)."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(p.device.type in FUSED_DEVICES for p in tensors)
    return torch.optim.AdamW(groups, fused=True if fused else None, **options)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int,
                    steps_per_epoch: int) -> CosineLRScheduler:
    """Per-step schedule: linear warmup from 0, then cosine to ``min_lr`` over the remaining steps.

    Stateless given the step (``step_update(step)``), so a resumed run needs only the step count.
    """
    warmup = optim.warmup_steps if optim.warmup_steps is not None else round(optim.warmup_epochs * steps_per_epoch)
    warmup = min(warmup, max(total_steps - 1, 0))
    scheduler = CosineLRScheduler(optimizer, t_initial=max(total_steps - warmup, 1), lr_min=optim.min_lr,
                                  warmup_t=warmup, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)
    scheduler.step_update(0)
    return scheduler
