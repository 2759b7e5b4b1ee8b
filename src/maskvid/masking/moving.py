"""Moving rectangles: MGM's simulated-motion masking (SMM, §3.2) and motion-guided masking (MGM, §3.3).

Both keep one masked count per clip for a given ratio and grid. The rectangle starts at the (h0, w0) of
:func:`rectangle_for_ratio` (MGM: w0 = h0 = √(γ·H'·W')). MGM's Eq. 5/7 jitter the size with Σ s_t = 0, which alone
does not fix the area; we jitter in pairs of slices instead — one slice's height (or width) grows by s while
another's shrinks by s — which keeps Σ s = 0 per axis *and* makes the clip's count exactly T'·h0·w0. A rectangle
is shifted back inside the grid rather than cropped, so its area never changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from maskvid.errors import ConfigError
from maskvid.masking.base import Grid, MaskStrategy, masked_count, randint, random_subset, rectangle_for_ratio, uniform

log = logging.getLogger(__name__)
VARIANTS = ("dense", "sparse")


def jittered_sizes(t: int, base: tuple[int, int], bounds: tuple[int, int], jitter: int, g) -> list[list[int]]:
    """Per-slice (h, w): slices are paired at random; in each pair one axis grows by s in one slice and shrinks
    by s in the other, |s| <= ``jitter``, staying within [1, bound]. Σ h_t·w_t = t·h0·w0 exactly."""
    sizes = [list(base) for _ in range(t)]
    if jitter <= 0:
        return sizes
    order = torch.randperm(t, generator=g).tolist()
    for first, second in zip(order[0::2], order[1::2], strict=False):
        room = [min(jitter, bound - b, b - 1) for b, bound in zip(base, bounds, strict=True)]
        axes = [axis for axis in (0, 1) if room[axis] > 0]
        if not axes:
            continue
        axis = axes[randint(g, 0, len(axes) - 1)]
        step = randint(g, -room[axis], room[axis])
        sizes[first][axis] += step
        sizes[second][axis] -= step
    return sizes


def paint_rectangles(grid: Grid, centres: list[tuple[float, float]], sizes: list[list[int]]) -> torch.Tensor:
    """One rectangle per slice, centred as near ``centres`` (token units, y then x) as the grid allows."""
    t, height, width = grid
    mask = torch.zeros(grid, dtype=torch.bool)
    for i in range(t):
        (cy, cx), (h, w) = centres[i], sizes[i]
        top = min(max(round(cy - h / 2), 0), height - h)
        left = min(max(round(cx - w / 2), 0), width - w)
        mask[i, top : top + h, left : left + w] = True
    return mask


def random_walk(t: int, start: tuple[float, float], max_speed: float, g) -> list[tuple[float, float]]:
    """Positions under SMM's Eq. 5: each step adds a velocity drawn uniformly in [-max_speed, max_speed]²."""
    path = [start]
    for _ in range(1, t):
        y, x = path[-1]
        path.append((y + uniform(g, -max_speed, max_speed), x + uniform(g, -max_speed, max_speed)))
    return path


def reflect(value: float, low: float, high: float) -> float:
    """Bounce ``value`` into [low, high] like a ball off the walls (a rectangle leaving the frame turns back)."""
    if high <= low:
        return low
    span = 2 * (high - low)
    folded = (value - low) % span
    return low + (folded if folded <= high - low else span - folded)


@dataclass
class SimulatedMotionMask(MaskStrategy):
    """SMM (MGM §3.2): a mask that moves with random velocity and no regard for the video.

    ``dense``: one rectangle of about ratio·H'·W' tokens, starting at a random place, walking with a random velocity
    per step (≤ ``max_speed`` tokens per slice on each axis, bouncing off the borders) and jittering its size.
    ``sparse`` (our reading of the paper's Table 4e row, which it does not define further): a random pattern of
    exactly round(ratio·H'·W') tokens drawn on the first slice and carried by the same random walk, wrapping around
    the borders (a torus shift), so every slice keeps the count.
    """

    name = "smm"
    ratio: float = 0.75
    variant: str = "dense"
    max_speed: float = 1.0
    jitter: int = 1

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError("mask.variant", f"{self.variant!r} not in {VARIANTS}")
        if self.max_speed < 0:
            raise ConfigError("mask.max_speed", f"must be >= 0 tokens per slice, got {self.max_speed}")
        if self.jitter < 0:
            raise ConfigError("mask.jitter", f"must be >= 0 tokens, got {self.jitter}")

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        self.check_slice(grid)
        return self.sparse(grid, g) if self.variant == "sparse" else self.dense(grid, g)

    def dense(self, grid: Grid, g: torch.Generator) -> torch.Tensor:
        t, height, width = grid
        base = rectangle_for_ratio(self.ratio, height, width)
        start = (uniform(g, base[0] / 2, height - base[0] / 2), uniform(g, base[1] / 2, width - base[1] / 2))
        sizes = jittered_sizes(t, base, (height, width), self.jitter, g)
        path = random_walk(t, start, self.max_speed, g)
        centres = [
            (reflect(y, h / 2, height - h / 2), reflect(x, w / 2, width - w / 2))
            for (y, x), (h, w) in zip(path, sizes, strict=True)
        ]
        return paint_rectangles(grid, centres, sizes)

    def sparse(self, grid: Grid, g: torch.Generator) -> torch.Tensor:
        t, height, width = grid
        pattern = random_subset(height * width, masked_count(self.ratio, height * width), g).view(height, width)
        path = random_walk(t, (0.0, 0.0), self.max_speed, g)
        return torch.stack([torch.roll(pattern, (round(y), round(x)), dims=(0, 1)) for y, x in path])


@dataclass
class MotionGuidedMask(SimulatedMotionMask):
    """MGM (Fan et al. 2023, §3.3, Eq. 6–7): per temporal slice the rectangle is centred on the top-1 location of
    the motion-magnitude map (ties broken at random), with the size jitter of :class:`SimulatedMotionMask`.

    ``motion`` is ``(T', h, w)`` magnitudes at any resolution (NaN = slice without vectors, e.g. an I-frame pair);
    argmax at that resolution equals argmax after MGM's nearest upsampling. Every slice with motion is guided —
    also the first, which the paper places at random because its M_t needs frame t-1, while our slices carry
    vectors for their own frames. A slice without motion (NaN or all zero) keeps the previous centre; leading
    ones take the first guided centre. A clip with no motion at all falls back to SMM, with a logged warning.

    ``sparse``: the round(ratio·H'·W') tokens of highest mean motion in each slice (not one rectangle).
    Where the motion comes from (codec vectors or optical flow) is the data pipeline's choice
    (``data.motion_source``), not the mask's.
    """

    name = "mgm"
    needs_motion = True
    fallbacks: int = field(default=0, init=False, repr=False, compare=False)

    def options(self) -> dict:
        return {k: v for k, v in super().options().items() if k != "fallbacks"}

    @staticmethod
    def guided(motion: torch.Tensor | None) -> bool:
        """Whether ``motion`` has a slice that can guide the mask (finite and not all zero)."""
        return motion is not None and bool(_informative(motion).any())

    def make(self, grid: Grid, g: torch.Generator, motion: torch.Tensor | None) -> torch.Tensor:
        self.check_slice(grid)
        if not self.guided(motion):
            self.fallbacks += 1
            report = log.warning if self.fallbacks == 1 else log.debug
            report("mgm: clip without motion information, using smm instead (fallback #%d)", self.fallbacks)
            return super().make(grid, g, None)
        if self.variant == "sparse":
            return self.sparse_guided(grid, motion, g)
        t, height, width = grid
        base = rectangle_for_ratio(self.ratio, height, width)
        sizes = jittered_sizes(t, base, (height, width), self.jitter, g)
        return paint_rectangles(grid, fill_gaps(peak_centres(motion, grid, g)), sizes)

    def sparse_guided(self, grid: Grid, motion: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        t, height, width = grid
        count = masked_count(self.ratio, height * width)
        tokens = F.adaptive_avg_pool2d(motion[:, None], (height, width))[:, 0].flatten(1)  # (T', H'·W')
        useful = _informative(motion)
        slices: list[torch.Tensor | None] = []
        for i in range(t):
            if not useful[i]:
                slices.append(None)
                continue
            shuffle = torch.randperm(height * width, generator=g)  # random order among equal magnitudes
            ranked = shuffle[torch.sort(tokens[i, shuffle], descending=True, stable=True).indices]
            chosen = torch.zeros(height * width, dtype=torch.bool)
            chosen[ranked[:count]] = True
            slices.append(chosen.view(height, width))
        return torch.stack(fill_gaps(slices))


def _informative(motion: torch.Tensor) -> torch.Tensor:
    """(T',) bool: slices whose magnitudes are finite and not all zero."""
    flat = motion.flatten(1)
    return torch.isfinite(flat).all(1) & (flat.amax(1) > 0)


def peak_centres(motion: torch.Tensor, grid: Grid, g: torch.Generator) -> list[tuple[float, float] | None]:
    """Per slice, the top-1 magnitude cell in token units (y, x); None where the slice has no motion."""
    _, height, width = grid
    rows, cols = motion.shape[1:]
    useful = _informative(motion)
    centres: list[tuple[float, float] | None] = []
    for i in range(motion.shape[0]):
        if not useful[i]:
            centres.append(None)
            continue
        peaks = (motion[i] == motion[i].max()).flatten().nonzero().flatten()
        cell = int(peaks[randint(g, 0, peaks.numel() - 1)])
        centres.append(((cell // cols + 0.5) * height / rows, (cell % cols + 0.5) * width / cols))
    return centres


def fill_gaps(items: list) -> list:
    """Replace each None by the previous item; leading Nones by the first item that is not None."""
    first = next(item for item in items if item is not None)
    out, last = [], first
    for item in items:
        last = item if item is not None else last
        out.append(last)
    return out
