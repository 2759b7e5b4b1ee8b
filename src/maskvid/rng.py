"""Random generators owned by what they draw for, never the global state (DESIGN.md, "Habits").

Every random choice in maskvid comes from a ``torch.Generator`` made here from a seed and the keys of the thing
drawn for (epoch, sample index, retry), so a draw does not depend on worker count, order or what ran before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_MOD = 2**63 - 1


def keyed_seed(seed: int, *keys: int) -> int:
    """One 63-bit seed from ``seed`` and ``keys``; distinct key tuples give (practically) distinct seeds."""
    mixed = seed
    for key in keys:
        mixed = mixed * 1_000_003 + key
    return mixed % _MOD


def generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator owned by ``(seed, *keys)``."""
    return torch.Generator().manual_seed(keyed_seed(seed, *keys))


def sample_generator(seed: int, epoch: int, index: int, attempt: int = 0) -> torch.Generator:
    """The generator of one dataset sample: its clip, crop, flip, augmentation and mask."""
    return generator(seed, epoch, index, attempt)


def substitute_generator(seed: int, epoch: int, index: int, attempt: int) -> torch.Generator:
    """The draw of the video that replaces a bad one: keys of its own, so the choice does not depend on how far the
    bad video was read (a file that fails at its first frame, one that fails at its last and one that crashed a
    loader worker are all replaced by the same video)."""
    return generator(seed, epoch, index, attempt, 1)


def fresh_generator() -> torch.Generator:
    """A generator with a non-deterministic seed, for interactive calls that pass none."""
    g = torch.Generator()
    g.seed()
    return g


def draw_seed(g: torch.Generator) -> int:
    """A seed drawn from ``g`` for a library that only draws from the global state (see :func:`global_seed`)."""
    return int(torch.randint(2**62, (), generator=g))


@contextlib.contextmanager
def global_seed(seed: int) -> Iterator[None]:
    """Run a library that draws from torch's global CPU generator (torchvision's RandAugment, RandomErasing) on
    ``seed``, leaving the global state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
