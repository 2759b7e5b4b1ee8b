"""The training loop, readable top to bottom: one loop serves every method (``out = method(**inputs)``, with
``out.loss`` and ``out.metrics``).

Exact resume: the data order is a permutation seeded by (seed, epoch), each clip's augmentation and mask by
(seed, epoch, index), the model's own randomness (drop path) by the torch RNG state saved with each checkpoint;
a resumed run skips the steps already taken in the epoch and draws exactly what the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field

import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from maskvid import rng
from maskvid.config import PretrainConfig, save_config
from maskvid.data import BadVideoLog, collate
from maskvid.engine.checkpoint import latest_checkpoint, remove_unfinished_writes
from maskvid.engine.copy_stream import CopyStream
from maskvid.engine.distributed import (
    Dist,
    EpochStream,
    ShardedResumableSampler,
    bad_videos_across_ranks,
    counts_across_ranks,
    mean_across_ranks,
    ranks,
)
from maskvid.engine.interrupt import StopSignals, ignore_stop_signals
from maskvid.engine.logging import RunLogger
from maskvid.engine.optim import build_optimizer, build_scheduler, scaled_lr
from maskvid.engine.resume import bad_video_state, restore_bad_videos, resume_run, save_run
from maskvid.engine.step_check import StepCheck, optimizer_step
from maskvid.engine.surviving_loader import surviving_batches
from maskvid.errors import ConfigError, DataError
from maskvid.registry import takes_keyword


@dataclass
class TrainResult:
    # "finished" | "interrupted" (a stop signal: saved at this step) | "non_finite_loss" | "non_finite_gradient" |
    # "non_finite_update"
    status: str
    step: int
    run_dir: str
    checkpoint: str | None  # the last checkpoint written: never one with non-finite weights
    first_loss: float | None
    last_loss: float | None
    clips_per_s: float
    seconds: float
    bad_videos: dict[str, str] = field(default_factory=dict)  # path -> why it was skipped


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


def resumed_step(step: int, global_batch: int | None, size: int, plan: _Plan, world: int) -> int:
    """The step to go on from after ``step`` steps of ``global_batch`` samples. The same global batch: ``step``
    (an exact resume). Another (the world size changed): the same epoch, and in it the whole steps of the new
    global batch that the samples already drawn fill — the ranks together draw the epoch's order from its start
    (:class:`ShardedResumableSampler`), so at most one new step's samples, rounded down, are drawn twice."""
    new_batch = plan.samples_per_step * world
    if global_batch is None or global_batch == new_batch:
        return step
    epoch, done = divmod(step, size // global_batch)
    return epoch * plan.steps_per_epoch + min(done * global_batch // new_batch, plan.steps_per_epoch)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(method: torch.nn.Module, dataset, config: PretrainConfig, run_dir: str, resume: bool = False,
          monitor=None) -> TrainResult:
    """Train ``method`` on ``dataset`` as ``config`` says, writing checkpoints and metrics under ``run_dir``.

    ``method.prepare(batch, device)`` turns a collated batch into the method's arguments (it may draw mixup);
    ``method(**arguments)`` returns an object with ``loss`` and ``metrics``. ``monitor(method, device) -> dict``
    (e.g. :class:`~maskvid.engine.knn.KNNMonitor`) runs every ``train.knn_every`` steps and at the end, its
    figures logged with the step: on every rank, sharing the work, where it takes ``info=`` (the ranks), else on the
    main rank.
    """
    with ranks(config.train.device) as (device, info):  # under torchrun: cuda:{LOCAL_RANK}, the process group
        run = _Run(method, dataset, config, run_dir, resume, device, info)
        run.monitor, run.shared_monitor = monitor, monitor is not None and takes_keyword(monitor, "info")
        try:
            run.steps()
        except DataError as e:  # too many bad videos: the run stops, and says so in its metrics too
            run.finish("data_error", error=str(e))
            raise
        return run.finish(run.status)


class _Run:
    """One training run's state, so that each part of the loop is a short function."""

    def __init__(self, method, dataset, config: PretrainConfig, run_dir: str, resume: bool, device: torch.device,
                 info: Dist):
        t = config.train
        self.method, self.dataset, self.config, self.run_dir = method, dataset, config, run_dir
        self.device, self.info = device, info
        self.plan = _plan(config, len(dataset), self.info.world)
        method.to(self.device)
        lr = scaled_lr(config.optim, self.plan.samples_per_step * self.info.world)
        self.optimizer = build_optimizer(method, config.optim, lr)
        self.scheduler = build_scheduler(self.optimizer, config.optim, self.plan.total_steps, self.plan.steps_per_epoch)
        self.ema = ModelEmaV3(method, decay=t.ema) if t.ema else None  # timm's EMA of the weights, evaluated instead
        self.step, self.resumed_from = 0, None
        self.bad = BadVideoLog(max_fraction=config.data.max_bad_fraction)
        self.bad_counts = (0, 0)  # (bad attempts, good) summed over the ranks, as of the last batch
        if resume:
            step, global_batch, bad_videos = resume_run(run_dir, method, self.optimizer, self.device, self.ema)
            self.step = resumed_step(step, global_batch, len(dataset), self.plan, self.info.world)
            self.resumed_from = {"step": step, "global_batch": global_batch}
            restore_bad_videos(bad_videos, self.bad, getattr(dataset, "watch", None), counts=self.info.main)
        self.scheduler.step_update(self.step)
        if self.info.main:
            os.makedirs(run_dir, exist_ok=True)
            remove_unfinished_writes(run_dir)
            save_config(config, os.path.join(run_dir, "config.yaml"))
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.model = DistributedDataParallel(method, device_ids=ids) if self.info.world > 1 else method
        self.forward = torch.compile(self.model) if t.compile else self.model
        self.copies = CopyStream(self.device, enabled=t.copy_stream)
        self.logger = RunLogger(run_dir, self.plan.stop_at, self.step, enabled=self.info.main, progress=t.progress)
        self.logger.event({"event": "resumed" if resume else "started", "at_step": self.step, "lr_peak": lr,
                           "world": self.info.world, **({"from": self.resumed_from} if resume else {})})
        self.sampler = ShardedResumableSampler(len(dataset), config.seed, self.info,
                                               self.plan.steps_per_epoch * self.plan.samples_per_step)
        self.status, self.checkpoint, self.saved_step = "finished", None, None
        self.unchecked: StepCheck | None = None  # the last step's figures, not yet read
        self.step_losses: list[torch.Tensor] = []  # this step's micro-batch losses, on the device
        self.grad_norm = None
        self.losses, self.first_loss, self.last_loss, self.clips, self.data_wait = [], None, None, 0, 0.0
        self.metric_sums, self.metric_count = {}, 0
        self.started = self.window = time.perf_counter()
        self.monitor, self.shared_monitor = None, False

    def steps(self) -> None:
        """Train to ``plan.stop_at`` (a resumed run starts mid-epoch where the checkpoint left it). One loader
        serves every epoch: each epoch's samples are whole steps, so batches never straddle an epoch's end. A video
        that kills a loader worker is skipped and the loader made again where it stood (:mod:`.surviving_loader`)."""
        if self.step >= self.plan.stop_at:
            return
        first, batch_size = self.step * self.plan.samples_per_step, self.config.train.batch_size
        batches = surviving_batches(self.dataset, lambda taken: self.loader(first + taken * batch_size),
                                    self.config.train.num_workers)
        with StopSignals() as signals:
            for micro in itertools.count(1):
                if not self.micro(batches, micro, signals):
                    return

    def loader(self, position: int) -> torch.utils.data.DataLoader:
        """This rank's batches from its ``position``-th sample of the run on, through every later epoch."""
        epoch, done = divmod(position, self.plan.steps_per_epoch * self.plan.samples_per_step)
        t = self.config.train
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=t.batch_size, sampler=EpochStream(self.sampler, epoch, done * self.info.world),
            num_workers=t.num_workers, collate_fn=collate, drop_last=True, generator=rng.generator(self.config.seed, 0),
            pin_memory=self.device.type == "cuda", worker_init_fn=ignore_stop_signals,
        )

    def micro(self, batches, micro: int, signals: StopSignals) -> bool:
        """One micro-batch (and, ending an accumulation, its optimizer step); False: the run is over."""
        waited = time.perf_counter()
        batch = next(batches)  # the time the step waits for its batch: a GPU idle on data shows here
        self.data_wait += time.perf_counter() - waited
        self.bad.record(batch)
        *counts, stop = counts_across_ranks(self.bad, self.info, signals.received is not None)
        self.bad_counts = tuple(counts)
        self.bad.check(*counts)  # every rank stops together, or none
        accumulate = self.config.optim.accumulate
        if stop and (micro - 1) % accumulate == 0:  # between two steps: every rank saves this one and ends
            self.interrupt(signals.received or "a signal to another rank")
            return False
        out = self.micro_step(batch, sync=micro % accumulate == 0)
        if self.status != "finished":
            return False
        if out is None:
            return True  # accumulating
        self.after_step(out, self.step // self.plan.steps_per_epoch)
        return self.status == "finished" and self.step < self.plan.stop_at

    def interrupt(self, signal_name: str) -> None:
        """A stop signal (:mod:`maskvid.engine.interrupt`): the last step is checked and saved, and the run ends."""
        if not self.last_step_was_good():
            return  # stopped at the step before, whose checkpoint stays
        if self.step > 0 and self.saved_step != self.step:
            self.save(self.step // self.plan.steps_per_epoch)
        self.status = "interrupted"
        self.logger.event({"event": "signal", "signal": signal_name, "step": self.step})

    def micro_step(self, batch: dict, sync: bool):
        """Forward and backward one batch; at the end of an accumulation, the optimizer step (None before it, and
        when the run has stopped). Nothing here reads the device: the last step's figures are read just before
        this step's update is queued (:mod:`maskvid.engine.step_check`)."""
        accumulate = self.config.optim.accumulate
        no_sync = self.model.no_sync() if self.info.world > 1 and not sync else contextlib.nullcontext()
        with self.copies.queue():  # on CUDA a side stream: the copy overlaps the step still computing
            if hasattr(self.dataset, "on_device"):  # clips left uint8 by the workers are normalized on the device
                batch = self.dataset.on_device(batch, self.device)
            inputs = self.method.prepare(batch, self.device)
        inputs = self.copies.hand_over(inputs)
        with no_sync, _autocast(self.config.train.precision, self.device):
            out = self.forward(**inputs)
        with no_sync:
            (out.loss / accumulate).backward()
        self.step_losses.append(out.loss.detach())
        for name, value in out.metrics.items():  # every loss term and metric, averaged over the logging window;
            if name != "loss":  # summed on the device, read once per record (no extra sync per micro-step)
                self.metric_sums[name] = self.metric_sums.get(name, 0.0) + torch.as_tensor(value).detach().float()
        self.metric_count += 1
        self.clips += batch["video"].shape[0] * self.info.world
        if not sync:
            return None
        if not self.last_step_was_good():  # read before this update is queued: a bad step is never built on
            return None
        self.unchecked = optimizer_step(list(self.method.parameters()), self.optimizer, self.step_losses,
                                        self.config.optim.clip_grad, self.info)
        self.step_losses = []
        return out

    def last_step_was_good(self) -> bool:
        """Read the last step's figures (its loss joins the log window); False: its loss, gradient or updated
        weights were not finite, and the run has stopped at the step before it. Also read before anything is
        saved, logged or evaluated from the weights."""
        if self.unchecked is None:
            return True
        figures, self.unchecked = self.unchecked.read(), None
        # the flags were made equal on every rank on the device, so every rank stops together
        for flag, status in (("loss_finite", "non_finite_loss"), ("grad_finite", "non_finite_gradient"),
                             ("weights_finite", "non_finite_update")):
            if not figures[flag]:
                self.step -= 1  # the bad step was counted; the run ends at the one before, the last good weights
                self.stop(status, loss=figures["loss"], grad_norm=figures["grad_norm"])
                return False
        self.grad_norm = figures["grad_norm"]
        self.losses.append(figures["loss"])
        self.first_loss = self.first_loss if self.first_loss is not None else figures["loss"]
        self.last_loss = figures["loss"]
        return True

    def after_step(self, out, epoch: int) -> None:
        """Count the step; EMA, schedule, metrics and checkpoint."""
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.method, step=self.step)
        self.scheduler.step_update(self.step)
        self.logger.advance()
        t = self.config.train
        last = self.step == self.plan.stop_at
        log, every = self.step % t.log_every == 0 or last, getattr(t, "knn_every", None)
        evaluate = bool(self.monitor is not None and every and (self.step % every == 0 or last))
        save = self.step % t.checkpoint_every == 0 or last
        # every rank reads the check on the same steps, though rank 0 alone writes: all stop at one step
        if (log or evaluate or save) and not self.last_step_was_good():
            return
        if log:
            now = time.perf_counter()
            self.logger.log({"step": self.step, "epoch": epoch,
                             "loss": mean_across_ranks(sum(self.losses) / len(self.losses), self.info),
                             "lr": max(g["lr"] for g in self.optimizer.param_groups), "grad_norm": self.grad_norm,
                             "clips_per_s": self.clips / (now - self.window),
                             "data_wait": self.data_wait / (now - self.window), **self.window_metrics()})
            self.losses, self.clips, self.window, self.data_wait = [], 0, now, 0.0
            self.metric_sums, self.metric_count = {}, 0
        if evaluate and self.shared_monitor:  # every rank embeds its share
            figures = self.monitor(self.method, self.device, info=self.info)
            self.logger.log({"step": self.step, **figures})
        elif evaluate and self.info.main:
            self.logger.log({"step": self.step, **self.monitor(self.method, self.device)})
        if save:
            self.save(epoch)

    def save(self, epoch: int) -> None:
        """A checkpoint of this step, written by rank 0; every rank calls it, to hand in the bad videos it met."""
        watch = getattr(self.dataset, "watch", None)
        bad = bad_video_state(bad_videos_across_ranks(self.bad.bad, self.info),
                              bad_videos_across_ranks(watch.crashed if watch is not None else {}, self.info),
                              *self.bad_counts)
        if self.info.main:
            self.checkpoint = save_run(self.run_dir, self.step, epoch, self.method, self.optimizer, self.config,
                                       self.config.train.keep_checkpoints, self.ema,
                                       self.plan.samples_per_step * self.info.world, bad)
        self.saved_step = self.step

    def window_metrics(self) -> dict:
        """The method's metrics (``m_<name>``: each loss term, accuracy, ...) averaged over the micro-batches since
        the last record and over ranks."""
        count = max(self.metric_count, 1)
        return {f"m_{k}": mean_across_ranks(float(v) / count, self.info) for k, v in self.metric_sums.items()}

    def stop(self, status: str, **details) -> None:
        """A non-finite loss, gradient or update: stop before anything is written; the last checkpoint stays."""
        self.status = status
        self.logger.event({"event": status, "step": self.step, **details})

    def finish(self, status: str, **details) -> TrainResult:
        seconds = time.perf_counter() - self.started
        self.bad.bad = bad_videos_across_ranks(self.bad.bad, self.info)  # each rank read its own shard
        self.logger.event({"event": status, "step": self.step, "seconds": seconds, **details,
                           "bad_videos": dict(self.bad.bad)})
        self.logger.close()
        return TrainResult(self.status, self.step, self.run_dir, self.checkpoint or latest_checkpoint(self.run_dir),
                           self.first_loss, self.last_loss, _throughput(self.run_dir), seconds, dict(self.bad.bad))


def _throughput(run_dir: str) -> float:
    from maskvid.engine.logging import read_metrics

    rates = [r["clips_per_s"] for r in read_metrics(run_dir) if "clips_per_s" in r]
    return sum(rates) / len(rates) if rates else 0.0
