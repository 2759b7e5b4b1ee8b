"""Single process by default; under ``torchrun`` the same command runs DDP (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from maskvid import rng
from maskvid.errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group ``torchrun`` describes in the environment; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        # NCCL moves CUDA tensors only; the loop's few CPU-side reductions (bad-video counts, logged scalars) go
        # through gloo on the same group
        dist.init_process_group("cuda:nccl,cpu:gloo" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def ranks(device_name: str) -> Iterator[tuple[torch.device, Dist]]:
    """This process's device (:func:`pick_device`, made CUDA's current one) and its place among the ranks, the
    process group joined for the block; left at its end if the block joined it, so that fine-tuning's evaluation
    runs in the group its training ran in. An exception leaves it without the closing barrier: the other ranks are
    not coming to it, and torchrun ends them."""
    device = pick_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    info = init_distributed(device)
    yield device, info
    if joined:
        finish_distributed(info)


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """``train.device`` → the device this process trains on.

    ``auto`` is CUDA when torch sees a GPU, else the CPU. A CUDA device without an index is the GPU of this process's
    local rank (``LOCAL_RANK``, set by torchrun), so the ranks of a node each take their own GPU; an explicit index is
    kept. A device that does not exist here is a ConfigError naming ``train.device`` (raised before data is read).
    """
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError("train.device", f"{name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device", f"{name!r}, but torch sees no CUDA device here (use cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError("train.device", f"{device} does not exist: {torch.cuda.device_count()} CUDA device(s)"
                              + (f" for LOCAL_RANK={local_rank}" if name == "cuda" or name == "auto" else ""))
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device", "'mps', but torch sees no Apple GPU here")
    return device


def sum_across_ranks(values: torch.Tensor, info: Dist) -> torch.Tensor:
    """``values`` (a CPU tensor) summed over ranks; the scalar reductions below go through it."""
    if info.world > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def mean_across_ranks(value: float, info: Dist) -> float:
    """The mean of a logged scalar over ranks (each rank saw its own shard)."""
    if info.world == 1:
        return value
    return float(sum_across_ranks(torch.tensor([value], dtype=torch.float64), info)) / info.world


def counts_across_ranks(bad, info: Dist, stop: bool = False) -> tuple[int, int, bool]:
    """``(bad_attempts, good)`` of a :class:`~maskvid.data.BadVideoLog`, summed over ranks, and whether any rank
    was asked to ``stop`` (one reduction for both)."""
    if info.world == 1:
        return bad.bad_attempts, bad.good, stop
    counts = sum_across_ranks(torch.tensor([bad.bad_attempts, bad.good, float(stop)], dtype=torch.float64), info)
    return int(counts[0]), int(counts[1]), bool(counts[2] > 0)


def bad_videos_across_ranks(bad: dict[str, str], info: Dist) -> dict[str, str]:
    """Every rank's skipped videos (path -> why), merged in rank order: each rank read its own shard."""
    if info.world == 1 or not dist.is_initialized():
        return bad
    gathered: list = [None] * info.world
    dist.all_gather_object(gathered, bad)
    merged: dict[str, str] = {}
    for part in gathered:
        for path, why in part.items():
            merged.setdefault(path, why)
    return merged


def gather_rows(rows: torch.Tensor, info: Dist) -> torch.Tensor:
    """Every rank's ``rows`` ``(N_r, ...)`` concatenated in rank order, on every rank; ranks may hold different
    ``N_r`` (a rank with none hands in any empty tensor of the dtype)."""
    if info.world == 1:
        return rows
    shapes: list = [None] * info.world
    dist.all_gather_object(shapes, tuple(rows.shape))
    trailing = next((shape[1:] for shape in shapes if shape[0] > 0), tuple(rows.shape[1:]))
    padded = rows.new_zeros((max(shape[0] for shape in shapes), *trailing))  # all_gather moves equal shapes
    padded[: len(rows)] = rows.reshape(len(rows), *trailing)
    parts = [torch.empty_like(padded) for _ in range(info.world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: shape[0]] for part, shape in zip(parts, shapes, strict=True)])


def finish_distributed(info: Dist) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class ShardedResumableSampler(torch.utils.data.Sampler):
    """This epoch's permutation (seeded by seed and epoch, so every rank and every resumed run draws the same)
    from ``start`` samples in (to resume mid-epoch), and this rank's shard of it: rank r takes every world-th
    sample from r. After k samples per rank the ranks together have drawn the permutation's first k·world, so a run
    resumed with another world size goes on from that point of the same order."""

    def __init__(self, size: int, seed: int, info: Dist, per_rank: int):
        self.size, self.seed, self.info, self.per_rank = size, seed, info, per_rank
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        order = torch.randperm(self.size, generator=rng.generator(self.seed, self.epoch))
        return iter(order[self.start + self.info.rank :: self.info.world][: len(self)].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start // self.info.world


class EpochStream(torch.utils.data.Sampler):
    """``(epoch, index)`` keys of ``sampler``'s epochs one after another, from ``epoch`` at ``start`` samples in,
    without end: one DataLoader serves the whole run, so its workers stay up and prefetch across an epoch's end
    (a loader per epoch made the GPU wait for new workers and their first batch every epoch). The epoch travels
    with each index because the dataset's copy in a worker never sees ``set_epoch``."""

    def __init__(self, sampler: ShardedResumableSampler, epoch: int, start: int):
        self.sampler, self.epoch, self.start = sampler, epoch, start

    def __iter__(self):
        epoch, start = self.epoch, self.start
        while True:
            self.sampler.set_position(epoch, start)
            yield from ((epoch, index) for index in self.sampler)
            epoch, start = epoch + 1, 0
