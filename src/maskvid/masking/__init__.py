"""Mask generators: pure functions of a token grid, a ``torch.Generator`` and (for guided ones) motion.

    gen = masking.build("mgm", ratio=0.75)
    mask = gen((8, 14, 14), generator=torch.Generator().manual_seed(0), motion=magnitudes)  # bool, True = masked

Imports nothing of maskvid but the bottom floor: errors, rng, registry (DESIGN.md floors).
"""

from __future__ import annotations

from maskvid.masking.base import MaskStrategy, masked_count, rectangle_for_ratio
from maskvid.masking.blocks import Block3DMask, CubeMask, blocks_for_ratio, expected_block3d_ratio
from maskvid.masking.moving import MotionGuidedMask, SimulatedMotionMask
from maskvid.masking.noise import bert_noise
from maskvid.masking.quality import motion_inside_outside, motion_score, token_motion
from maskvid.masking.running import (
    RunningBlockMask,
    RunningCellMask,
    RunningRandomMask,
    RunningUniformMask,
)
from maskvid.masking.standard import FrameMask, RandomMask, TubeMask
from maskvid.registry import Registry, option_names

STRATEGIES = Registry("strategy", "mask.strategy", {
    cls.name: cls
    for cls in (
        RandomMask,
        TubeMask,
        CubeMask,
        Block3DMask,
        FrameMask,
        SimulatedMotionMask,
        MotionGuidedMask,
        RunningCellMask,
        RunningUniformMask,
        RunningRandomMask,
        RunningBlockMask,
    )
})


def available() -> list[str]:
    """Names of every registered strategy."""
    return STRATEGIES.available()


def strategy_options(name: str) -> list[str]:
    """The options strategy ``name`` takes (``ratio``, ``variant``, ``start``, ...)."""
    return option_names(STRATEGIES.get_entry(name))


def build(name: str, **options) -> MaskStrategy:
    """The strategy ``name`` with ``options`` (e.g. ``ratio=0.75``); unknown names or options raise ConfigError."""
    return STRATEGIES.build(name, **options)


__all__ = [
    "STRATEGIES",
    "Block3DMask",
    "CubeMask",
    "FrameMask",
    "MaskStrategy",
    "MotionGuidedMask",
    "RandomMask",
    "RunningBlockMask",
    "RunningCellMask",
    "RunningRandomMask",
    "RunningUniformMask",
    "SimulatedMotionMask",
    "TubeMask",
    "available",
    "bert_noise",
    "rectangle_for_ratio",
    "blocks_for_ratio",
    "build",
    "strategy_options",
    "expected_block3d_ratio",
    "masked_count",
    "motion_inside_outside",
    "motion_score",
    "token_motion",
]
