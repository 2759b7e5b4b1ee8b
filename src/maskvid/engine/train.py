"""The training loop, readable top to bottom: one loop serves every method (``out = method(**inputs)``, with
``out.loss`` and ``out.metrics``).

Exact resume: the data order is a permutation seeded by (seed, epoch), each clip's augmentation and mask by
(seed, epoch, index), the model's own randomness (drop path) by the torch RNG state saved with each checkpoint;
a resumed run skips the steps already taken in the epoch and draws exactly what the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from maskvid.config import PretrainConfig, save_config
from maskvid.data import BadVideoLog, collate
from maskvid.engine.checkpoint import latest_checkpoint, load_state, restore_model, save_checkpoint
from maskvid.engine.distributed import (
    ShardedResumableSampler,
    all_finite,
    finish_distributed,
    init_distributed,
    mean_across_ranks,
    pick_device,
)
from maskvid.engine.logging import RunLogger
from maskvid.engine.optim import build_optimizer, build_scheduler, scaled_lr
from maskvid.errors import CheckpointError, ConfigError


@dataclass
class TrainResult:
    status: str  # "finished" | "non_finite_loss"
    step: int
    run_dir: str
    checkpoint: str | None
    first_loss: float | None
    last_loss: float | None
    clips_per_s: float
    seconds: float


@dataclass
class _Plan:
    steps_per_epoch: int
    total_steps: int  # the schedule's length
    stop_at: int  # where this run stops (max_steps)
    samples_per_step: int  # per rank


def _plan(config: PretrainConfig, size: int, world: int) -> _Plan:
    t = config.train
    per_step = t.batch_size * config.optim.accumulate
    steps_per_epoch = size // (per_step * world)
    if steps_per_epoch == 0:
        raise ConfigError("train.batch_size", f"{size} clips cannot fill one step of {per_step} x {world} rank(s)")
    total = t.schedule_steps or t.epochs * steps_per_epoch
    return _Plan(steps_per_epoch, total, min(total, t.max_steps or total), per_step)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(method: torch.nn.Module, dataset, config: PretrainConfig, run_dir: str, resume: bool = False) -> TrainResult:
    """Train ``method`` on ``dataset`` as ``config`` says, writing checkpoints and metrics under ``run_dir``.

    ``method.prepare(batch, device)`` turns a collated batch into the method's arguments (it may draw mixup);
    ``method(**arguments)`` returns an object with ``loss`` and ``metrics``.
    """
    t = config.train
    device = pick_device(t.device)
    info = init_distributed(device)
    plan = _plan(config, len(dataset), info.world)
    method.to(device)
    lr = scaled_lr(config.optim, plan.samples_per_step * info.world)
    optimizer = build_optimizer(method, config.optim, lr)
    scheduler = build_scheduler(optimizer, config.optim, plan.total_steps, plan.steps_per_epoch)
    ema = ModelEmaV3(method, decay=t.ema) if t.ema else None  # timm's EMA of the weights, evaluated instead
    step = _resume(run_dir, method, optimizer, device, ema) if resume else 0
    scheduler.step_update(step)
    if info.main:
        os.makedirs(run_dir, exist_ok=True)
        save_config(config, os.path.join(run_dir, "config.yaml"))
    model = DistributedDataParallel(method) if info.world > 1 else method
    forward = torch.compile(model) if t.compile else model
    logger = RunLogger(run_dir, plan.stop_at, step, enabled=info.main, progress=t.progress)
    logger.event({"event": "resumed" if step else "started", "at_step": step, "lr_peak": lr, "world": info.world})
    sampler = ShardedResumableSampler(len(dataset), config.seed, info, plan.steps_per_epoch * plan.samples_per_step)
    bad = BadVideoLog(max_fraction=config.data.max_bad_fraction)
    losses, first_loss, last_loss, clips, started, window = [], None, None, 0, time.perf_counter(), time.perf_counter()
    status, checkpoint = "finished", None
    while step < plan.stop_at and status == "finished":
        epoch, done_in_epoch = divmod(step, plan.steps_per_epoch)
        dataset.set_epoch(epoch)
        sampler.set_position(epoch, done_in_epoch * plan.samples_per_step)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers, collate_fn=collate,
            drop_last=True, generator=torch.Generator().manual_seed(config.seed + epoch),
            pin_memory=device.type == "cuda",
        )
        micro = 0
        for batch in loader:
            bad.update(batch)
            micro += 1
            sync = micro % config.optim.accumulate == 0
            no_sync = model.no_sync() if info.world > 1 and not sync else contextlib.nullcontext()
            with no_sync, _autocast(t.precision, device):
                out = forward(**method.prepare(batch, device))
            if not all_finite(out.loss, info):
                status = "non_finite_loss"
                logger.event({"event": status, "step": step, "loss": float(out.loss.detach())})
                break
            with no_sync:
                (out.loss / config.optim.accumulate).backward()
            losses.append(float(out.loss.detach()))
            clips += batch["video"].shape[0] * info.world
            if not sync:
                continue
            grad_norm = _optimizer_step(method, optimizer, config.optim.clip_grad)
            step += 1
            if ema is not None:
                ema.update(method, step=step)
            scheduler.step_update(step)
            first_loss = first_loss if first_loss is not None else losses[0]
            last_loss = losses[-1]
            logger.advance()
            if step % t.log_every == 0 or step == plan.stop_at:
                now = time.perf_counter()
                logger.log({"step": step, "epoch": epoch, "loss": mean_across_ranks(sum(losses) / len(losses), info),
                            "lr": max(g["lr"] for g in optimizer.param_groups), "grad_norm": grad_norm,
                            "clips_per_s": clips / (now - window), **_scalars(out.metrics)})
                losses, clips, window = [], 0, now
            if info.main and (step % t.checkpoint_every == 0 or step == plan.stop_at):
                checkpoint = _save(run_dir, step, epoch, method, optimizer, config, t.keep_checkpoints, ema)
            if step >= plan.stop_at or step % plan.steps_per_epoch == 0:
                break
    seconds = time.perf_counter() - started
    logger.event({"event": status, "step": step, "seconds": seconds, "bad_videos": bad.report()})
    logger.close()
    finish_distributed(info)
    return TrainResult(status, step, run_dir, checkpoint or latest_checkpoint(run_dir), first_loss, last_loss,
                       _throughput(run_dir), seconds)


def _optimizer_step(method, optimizer, clip_grad: float | None) -> float:
    params = [p for p in method.parameters() if p.grad is not None]
    if clip_grad:
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip_grad))
    else:
        norm = float(torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))) if params else 0.0
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def _scalars(metrics: dict) -> dict:
    return {f"m_{k}": float(v) for k, v in metrics.items() if k != "loss"}


def _save(run_dir, step, epoch, method, optimizer, config, keep, ema) -> str:
    state = {
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "rng_cpu": torch.get_rng_state(),
        "rng_numpy": _numpy_rng_state(),  # timm's mixup draws from numpy's global generator
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": config.to_dict(),
    }
    return save_checkpoint(run_dir, step, method, state, keep, ema=ema.module if ema is not None else None)


def _resume(run_dir: str, method, optimizer, device, ema) -> int:
    path = latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"{run_dir}: nothing to resume (no complete checkpoint under checkpoints/)")
    restore_model(method, path)
    if ema is not None:
        restore_model(ema.module, os.path.join(path, "ema.safetensors"))
    state = load_state(path)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_numpy" in state:
        _set_numpy_rng_state(state["rng_numpy"])
    if state.get("rng_cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    method.to(device)
    return int(state["step"])


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(state: dict) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def _throughput(run_dir: str) -> float:
    from maskvid.engine.logging import read_metrics

    rates = [r["clips_per_s"] for r in read_metrics(run_dir) if "clips_per_s" in r]
    return sum(rates) / len(rates) if rates else 0.0
