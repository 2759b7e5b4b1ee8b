"""Procedural scenes for the synthetic benchmark: textured shapes moving on a textured, panning torus.

Everything lives on a torus the size of the frame (objects leaving one side enter on the other, the background is
periodic), so an object's position and angle in any single frame are uniform whatever its class: in the ``motion``
preset only the motion across frames decides the label, and every class shows itself in any two intervals of any
clip (no class waits for an event at one moment of the video).

Surfaces carry two textures, both smooth at the scale of a 16-pixel patch (8 at the demo's 64 pixels): broad
sinusoids (stripes on the objects) and a fixed *grain* — Gaussian-smoothed noise with a correlation of about a
patch, attached to the world (the background, seen through the panning camera) or to the object (it turns and
scales with it). Inside a hidden patch the grain is partly guessed from the visible neighbours of the same frame
and the rest fetched from where the camera or the object carried it in another frame, so the per-patch normalized
pixel loss can train (the demo's micro MAE, whose decoder starts local: 1.29 → 0.84 in 400 steps, still falling)
without being solved from static context. Format 2 had pixel-fine grain and stripes of a few pixels: nothing
inside a patch followed from its neighbours, and that loss stayed at its trivial value (docs/demo.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHAPES = ("circle", "square", "triangle", "plus", "diamond")
MOTIONS = (
    "move_right", "move_left", "move_up", "move_down", "rotate_cw", "rotate_ccw",
    "approach", "recede", "speed_up", "slow_down",
)  # fmt: skip
GRAIN_TILE = 64  # pixels (at size 128) of an object's grain tile, repeated
GRAIN_CORRELATION = 15.0  # pixels at size 128: about one 16-pixel patch
COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "yellow": (235, 200, 30), "green": (40, 180, 70)}


@dataclass
class Sprite:
    """A textured shape: ``position(t)``, ``angle(t)`` (radians), ``scale(t)`` give its pose at frame t."""

    shape: str
    radius: float
    colours: tuple[np.ndarray, np.ndarray]
    stripe_period: float
    start: np.ndarray
    velocity: np.ndarray  # pixels / frame (at the centre frame when the speed changes)
    spin: float = 0.0
    growth: float = 0.0  # d log(scale) / frame, around the clip centre
    speed_growth: float = 0.0  # d log(speed) / frame, around the clip centre
    start_angle: float = 0.0
    centre_frame: float = 0.0
    grain: np.ndarray | None = field(default=None, repr=False)  # (tile, tile) float32 in [-1, 1], or None

    def pose(self, t: int) -> tuple[np.ndarray, float, float]:
        g = self.speed_growth
        # distance travelled: ∫₀ᵗ exp(g(τ − c)) dτ in units of the centre speed (t when the speed is constant)
        travelled = t if g == 0 else (np.exp(g * (t - self.centre_frame)) - np.exp(-g * self.centre_frame)) / g
        return (
            self.start + self.velocity * travelled,
            self.start_angle + self.spin * t,
            float(np.exp(self.growth * (t - self.centre_frame))),
        )


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Approximate distance outside the shape (negative inside) in local coordinates; unit = pixels."""
    if shape == "circle":
        return np.hypot(u, v) - r
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * r
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - r) / np.sqrt(2)
    if shape == "plus":
        arm = 0.35 * r
        return np.minimum(np.maximum(np.abs(u) - r, np.abs(v) - arm), np.maximum(np.abs(v) - r, np.abs(u) - arm))
    if shape == "triangle":  # pointing along +u, so rotation is visible
        edges = [np.cos(a) * u + np.sin(a) * v for a in (0.0, 2 * np.pi / 3, 4 * np.pi / 3)]
        return np.maximum.reduce(edges) - 0.55 * r
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def grain(rng: np.random.Generator, side: int, correlation: float) -> np.ndarray:
    """A periodic ``(side, side)`` noise texture in [-1, 1] with about ``correlation`` pixels of correlation."""
    noise = rng.standard_normal((side, side))
    k = np.fft.fftfreq(side)
    blur = np.exp(-2 * (np.pi * correlation) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))  # a Gaussian, periodic
    smooth = np.fft.ifft2(np.fft.fft2(noise) * blur).real
    return np.clip(smooth / (3 * smooth.std() + 1e-9), -1, 1).astype(np.float32)


def sample_wrapped(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``texture`` at real coordinates (bilinear, repeating at its edges). Plain numpy: the same bytes in any
    process, threaded or forked."""
    side = texture.shape[0]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64) % side, y0.astype(np.int64) % side
    x1, y1 = (x0 + 1) % side, (y0 + 1) % side
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


class Renderer:
    """Renders frames of one scene: background texture, a distractor sprite, the main sprite on top."""

    def __init__(self, size: int, rng: np.random.Generator, pan: np.ndarray, background_colours,
                 grain_amplitude: float = 0.5):
        self.size = size
        self.pan = pan
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self.xs, self.ys = xs, ys
        # Integer wave numbers keep the texture periodic on the torus: two broad waves, of about 1 and 2 cycles.
        self.waves = [
            (rng.integers(-2, 3, 2), rng.uniform(0, 2 * np.pi), 0.3),
            (_second_wave(rng), rng.uniform(0, 2 * np.pi), 0.2),
        ]
        self.background_colours = background_colours
        self.grain = grain(rng, size, GRAIN_CORRELATION * size / 128)  # the world's, carried by the camera's pan
        self.grain_amplitude = grain_amplitude

    def background(self, t: int) -> np.ndarray:
        x, y = self.xs + self.pan[0] * t, self.ys + self.pan[1] * t
        level = np.full_like(x, 0.5)
        for (kx, ky), phase, amplitude in self.waves:
            level += amplitude * np.sin(2 * np.pi * (kx * x + ky * y) / self.size + phase)
        level += self.grain_amplitude * sample_wrapped(self.grain, x, y)
        c0, c1 = self.background_colours
        return c0 * (1 - level[..., None]) + c1 * level[..., None]

    def draw(self, image: np.ndarray, sprite: Sprite, t: int) -> None:
        centre, angle, scale = sprite.pose(t)
        centre = centre - self.pan * t  # the camera pans: everything in the world shifts on screen
        half = self.size / 2
        dx = (self.xs - centre[0] + half) % self.size - half  # torus: nearest copy of the centre
        dy = (self.ys - centre[1] + half) % self.size - half
        c, s = np.cos(angle), np.sin(angle)
        u, v = (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale
        alpha = np.clip(0.5 - _signed_distance(sprite.shape, u, v, sprite.radius) * scale, 0, 1)[..., None]
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * u / sprite.stripe_period)
        if sprite.grain is not None:  # attached to the object: it turns and scales with it
            stripes = np.clip(stripes + self.grain_amplitude * sample_wrapped(sprite.grain, u, v), 0, 1)
        stripes = stripes[..., None]
        texture = sprite.colours[0] * (1 - stripes) + sprite.colours[1] * stripes
        image *= 1 - alpha
        image += alpha * texture

    def frame(self, t: int, sprites: list[Sprite]) -> np.ndarray:
        image = self.background(t)
        for sprite in sprites:
            self.draw(image, sprite, t)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _second_wave(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, np.pi)
    k = rng.uniform(1.5, 2.25)  # about two cycles across the frame: 57–85 px periods at the default size
    return np.round([k * np.cos(angle), k * np.sin(angle)]).astype(int)


def main_sprite(motion: str, rng: np.random.Generator, size: int, frames: int, shape: str, colour,
                pace: float = 1.0) -> Sprite:
    """The labelled object; its motion class sets velocity, spin, growth or speed change, everything else is
    random (drawn before the class is looked at, so that two classes of one seed share them). ``pace`` multiplies
    the speed, spin and growth (the same random draws: a clip of pace 2 moves twice as far as one of pace 1)."""
    unit = size / 128
    speed = rng.uniform(1.2, 2.4) * unit * pace
    direction = {"move_right": (1, 0), "move_left": (-1, 0), "move_up": (0, -1), "move_down": (0, 1)}
    sprite = Sprite(
        shape=shape,
        radius=rng.uniform(14, 20) * unit,
        colours=(np.asarray(colour, np.float32), _random_colour(rng, dark=True)),
        stripe_period=rng.uniform(28, 44) * unit,  # 2–3 patches
        start=rng.uniform(0, size, 2),
        velocity=np.zeros(2),
        start_angle=rng.uniform(0, 2 * np.pi),
        centre_frame=(frames - 1) / 2,
        grain=grain(rng, round(GRAIN_TILE * unit), 0.8 * GRAIN_CORRELATION * unit),
    )
    if motion in direction:
        sprite.velocity = speed * np.asarray(direction[motion], float)
    elif motion in ("rotate_cw", "rotate_ccw"):
        sprite.spin = np.deg2rad(rng.uniform(4, 8)) * pace * (1 if motion == "rotate_cw" else -1)
    elif motion in ("approach", "recede"):
        sprite.growth = np.log(rng.uniform(1.8, 2.4)) * pace / frames * (1 if motion == "approach" else -1)
        sprite.radius *= float(np.exp(rng.uniform(-0.2, 0.2)))
    elif motion in ("speed_up", "slow_down"):  # speed × 1.05–1.07 per frame: ×2.2–3.1 over a 16-frame span
        heading = rng.uniform(0, 2 * np.pi)
        sprite.velocity = speed * np.array([np.cos(heading), np.sin(heading)])
        sprite.speed_growth = rng.uniform(0.05, 0.07) * (1 if motion == "speed_up" else -1)
    else:
        raise ValueError(f"unknown motion {motion!r}; choose from {MOTIONS}")
    return sprite


def distractor_sprite(rng: np.random.Generator, size: int) -> Sprite:
    """A smaller object drifting and spinning at random: motion that is not the label."""
    unit = size / 128
    heading = rng.uniform(0, 2 * np.pi)
    return Sprite(
        shape=str(rng.choice(SHAPES)),
        radius=rng.uniform(6, 9) * unit,
        colours=(_random_colour(rng), _random_colour(rng, dark=True)),
        stripe_period=rng.uniform(20, 32) * unit,
        start=rng.uniform(0, size, 2),
        velocity=rng.uniform(0.3, 1.2) * unit * np.array([np.cos(heading), np.sin(heading)]),
        spin=np.deg2rad(rng.uniform(-4, 4)),
        start_angle=rng.uniform(0, 2 * np.pi),
        grain=grain(rng, round(GRAIN_TILE * unit), 0.8 * GRAIN_CORRELATION * unit),
    )


def _random_colour(rng: np.random.Generator, dark: bool = False) -> np.ndarray:
    base = rng.uniform(20, 110) if dark else rng.uniform(120, 255)
    return np.clip(base + rng.uniform(-60, 60, 3), 0, 255).astype(np.float32)


def background_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two muted colours, so saturated object colours (the appearance classes) stand out from any background."""
    grey = rng.uniform(60, 190)
    return tuple(np.clip(grey + rng.uniform(-35, 35, 3) + offset, 0, 255).astype(np.float32) for offset in (-30, 30))
