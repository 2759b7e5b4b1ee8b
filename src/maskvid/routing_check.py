"""``maskvid check-routing``: can a pretraining config's encoder and decoder learn, within a step budget, to fetch a
masked token's content from the visible token that holds it?

The test clip states the answer and hides nothing else: its frames are all one random texture, so each masked
token's normalized pixels equal those of the tokens at the same place in the other temporal slices, and random
masking leaves one of them visible most of the time. Predicting zero — all the normalized-pixel loss learns without
routing — scores ``(n - 1) / n`` (n: pixels of a token per channel; the unbiased variance); a model that routes goes
far below. A small MAE can sit at that trivial loss for hundreds of steps before its attention finds the route
(docs/demo.md, "the routing plateau"), and a pretraining that stops on the plateau learns only what each visible
token holds by itself. This check trains a fresh model of the config's shape on such clips and reports the step
where its loss leaves the plateau (or that it did not), in about a minute on one core for the micro model.

``content="smooth"`` asks the other question a pretraining depends on: static clips of noise smoothed over about a
patch, under tube masks, so nothing can be copied from another frame but a masked token's neighbours predict much
of it. A plain decoder sat on the trivial loss there too (a saddle: its masked slots attend evenly and learn nothing
from an even mix); ``model.decoder_locality`` leaves it by ~100 steps (docs/demo.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from maskvid import targets
from maskvid.config import PretrainConfig
from maskvid.config.runs import encoder_config
from maskvid.engine.optim import build_optimizer
from maskvid.errors import ConfigError
from maskvid.masking.base import MaskStrategy
from maskvid.masking.standard import RandomMask, TubeMask
from maskvid.methods.base import MaskedPrediction, PredictionHead
from maskvid.models import DecoderConfig

LEFT = 0.9  # the plateau is left when the loss, averaged over a log interval, falls below this share of trivial
MASK_RATIO = 0.75
CONTENTS = ("copy", "smooth")


@dataclass
class RoutingReport:
    content: str  # copy or smooth
    steps: int
    trivial: float  # the loss of predicting zero
    left_at: int | None  # the first log step whose interval mean is below LEFT · trivial; None: not left
    final: float  # the last interval's mean loss
    lr: float
    seconds: float
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss over the interval to it)

    def to_dict(self) -> dict:
        return asdict(self)


def texture_clips(batch: int, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``(B, 3, T, H, W)``: every frame of a clip the same smoothed-noise texture (std ~1, like normalized video)."""
    noise = torch.randn(batch, 3, size, size, generator=generator)
    texture = F.avg_pool2d(noise, 3, stride=1, padding=1) * 3  # a few pixels of correlation
    return texture[:, :, None].expand(batch, 3, frames, size, size).contiguous()


def smooth_clips(batch: int, frames: int, size: int, correlation: float, generator: torch.Generator) -> torch.Tensor:
    """``(B, 3, T, H, W)``: every frame one noise field smoothed by a periodic Gaussian of ``correlation`` pixels."""
    noise = torch.randn(batch, 3, size, size, generator=generator)
    k = torch.fft.fftfreq(size)
    blur = torch.exp(-2 * (torch.pi * correlation) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    field = torch.fft.ifft2(torch.fft.fft2(noise) * blur).real
    field = 0.7 * field / field.flatten(1).std(1)[:, None, None, None]
    return field[:, :, None].expand(batch, 3, frames, size, size).contiguous()


def batch_masks(strategy: MaskStrategy, batch: int, grid: tuple[int, int, int],
                generator: torch.Generator) -> torch.Tensor:
    """``(B, N)`` bool: one mask of ``strategy`` (the pretraining masks of :mod:`maskvid.masking`) per sample."""
    return torch.stack([strategy(grid, generator).flatten() for _ in range(batch)])


def left_plateau(losses: list[tuple[int, float]], trivial: float) -> int | None:
    """The first logged step whose interval mean is below ``LEFT · trivial``; None if none is."""
    return next((step for step, loss in losses if loss < LEFT * trivial), None)


def check_routing(config: PretrainConfig, steps: int = 400, batch: int = 16, lr: float | None = None, seed: int = 0,
                  log_every: int = 25, progress=None, content: str = "copy") -> RoutingReport:
    """Train a fresh MAE of ``config``'s encoder and decoder shape (normalized-pixel target, masks 75%) for ``steps``
    steps at a constant ``lr`` (default: the config's ``optim.lr``, else 1e-3) with the config's AdamW settings, on
    ``content``: ``copy`` (identical-frame textures, random masks) or ``smooth`` (static noise smoothed over a patch,
    tube masks); ``progress(step, loss)`` is called at each log step."""
    encoder = encoder_config(config)
    if encoder.stem == "token":
        raise ConfigError("model.stem", "the routing check feeds pixels; a token-stem encoder reads token ids")
    if content not in CONTENTS:
        raise ConfigError("check-routing", f"content {content!r} is not one of {CONTENTS}")
    if steps < 1 or batch < 1 or log_every < 1:
        raise ConfigError("check-routing", f"steps, batch and log_every must be >= 1; got {steps}, {batch}, "
                          f"{log_every}")
    m = config.model
    decoder = DecoderConfig(width=m.decoder_width, depth=m.decoder_depth, heads=m.decoder_heads, eps=encoder.eps,
                            head_eps=encoder.eps, locality=m.decoder_locality)
    torch.manual_seed(seed)
    target = targets.build("norm_pixels", patch=encoder.patch, channels=encoder.channels)
    method = MaskedPrediction(encoder, [PredictionHead("norm_pixels", encoder, decoder, target)])
    lr = lr if lr is not None else config.optim.lr if config.optim.lr is not None else 1e-3
    optimizer = build_optimizer(method, config.optim, lr)
    generator = torch.Generator().manual_seed(seed)
    strategy = RandomMask(MASK_RATIO) if content == "copy" else TubeMask(MASK_RATIO)
    pixels = encoder.patch[0] * encoder.patch[1] * encoder.patch[2]
    trivial = (pixels - 1) / pixels
    losses, interval = [], []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if content == "copy":
            video = texture_clips(batch, encoder.num_frames, encoder.size, generator)
        else:
            video = smooth_clips(batch, encoder.num_frames, encoder.size, encoder.patch[1], generator)
        mask = batch_masks(strategy, batch, encoder.grid, generator)
        loss = method(video, mask).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        interval.append(float(loss.detach()))
        if step % log_every == 0 or step == steps:
            losses.append((step, sum(interval) / len(interval)))
            interval = []
            if progress is not None:
                progress(*losses[-1])
    return RoutingReport(content=content, steps=steps, trivial=trivial, left_at=left_plateau(losses, trivial),
                         final=losses[-1][1], lr=lr, seconds=time.perf_counter() - start, losses=losses)


def routing_text(report: RoutingReport) -> str:
    where = (f"left the plateau by step {report.left_at}" if report.left_at is not None
             else f"still on the plateau after {report.steps} steps")
    clips = ("identical-frame clips (random masks" if report.content == "copy"
             else "static smooth clips (tube masks")
    return (f"normalized-pixel loss on {clips} {MASK_RATIO:.0%}, lr {report.lr:g}): "
            f"trivial {report.trivial:.3f}; {where}; last {report.final:.3f} ({report.seconds:.0f} s)\n  "
            + "  ".join(f"{step}:{loss:.3f}" for step, loss in report.losses))
