"""``maskvid bench mar``: what MAR's running-cell masking saves. The same encoder classifies full clips (VideoMAE
fine-tuning: all N tokens, mean pool, fc_norm, linear) and, in MAR, only the visible tokens of a running-cell mask
at 25 / 50 / 75% (bridging classifier; in training also the reconstruction decoder). Measured alternately in one
run: inference clips/s, training-step clips/s (forward, backward, AdamW), and inference FLOPs per clip counted by
``torch.utils.flop_counter`` — reported as multiply-accumulates (fvcore's and MAR Table XI's "FLOPs").
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from maskvid import masking, targets
from maskvid.bench.threads import torch_threads
from maskvid.engine.optim import adamw
from maskvid.errors import ConfigError
from maskvid.methods.finetune import Classification
from maskvid.methods.mae import MAE
from maskvid.methods.mar import MARNet
from maskvid.models import DecoderConfig, VideoClassifier, ViTConfig

SHAPES = {  # preset, frames, size, decoder (width, depth, heads), bridge (width, depth, heads)
    "micro": ("micro", 8, 64, (64, 1, 2), (64, 2, 2)),
    "small": ("small", 16, 224, (192, 4, 3), (512, 2, 8)),
    "base": ("base", 16, 224, (384, 4, 6), (512, 2, 8)),
}
RATIOS = (0.25, 0.5, 0.75)
CLASSES = 400


def _models(shape: str) -> tuple[dict, tuple[int, int, int]]:
    preset, frames, size, (dw, dd, dh), (bw, bd, bh) = SHAPES[shape]
    encoder = ViTConfig.preset(preset, num_frames=frames, size=size)
    models = {"full": Classification(VideoClassifier(ViTConfig.preset(preset, num_frames=frames, size=size,
                                                                      final_norm=False), CLASSES), CLASSES)}
    for ratio in RATIOS:
        mae = MAE(encoder, DecoderConfig(width=dw, depth=dd, heads=dh), targets.build("norm_pixels"))
        net = MARNet(mae, CLASSES, head="bridging", bridge={"width": bw, "depth": bd, "heads": bh})
        models[str(round(ratio * 100))] = Classification(net, CLASSES)
    return models, encoder.grid


def _masks(grid, batch: int, start: int) -> dict[str, torch.Tensor | None]:
    out = {"full": None}
    for ratio in RATIOS:
        gen = masking.build("running_cell", ratio=ratio, start=start)
        out[str(round(ratio * 100))] = torch.stack([gen(grid) for _ in range(batch)]).flatten(1)
    return out


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_mar(shape: str = "base", batch: int = 1, steps: int = 2, threads: int | None = None) -> dict:
    if shape not in SHAPES:
        raise ConfigError("bench.shape", f"{shape!r} not in {tuple(SHAPES)}")
    with torch_threads(threads):
        torch.manual_seed(0)
        models, grid = _models(shape)
        _, frames, size, *_ = SHAPES[shape]
        video = torch.randn(batch, 3, frames, size, size)
        label = torch.randint(CLASSES, (batch,))
        masks, train_masks = _masks(grid, batch, start=0), _masks(grid, batch, start=1)
        optimizers = {k: adamw(m.parameters(), lr=1e-6) for k, m in models.items()}
        infer = {k: [] for k in models}
        train = {k: [] for k in models}
        for step in range(steps + 1):  # alternate; the first round warms up
            for key, model in models.items():
                model.eval()
                t_infer = _seconds(lambda m=model, k=key: m.predict(video, masks[k]))
                model.train()
                t_train = _seconds(lambda m=model, k=key: _train_step(m, optimizers[k], video, label, train_masks[k]))
                if step:
                    infer[key].append(t_infer)
                    train[key].append(t_train)
        gmacs = {k: _gmacs(m, video, masks[k]) / batch for k, m in models.items()}
        rate = {k: batch / statistics.median(v) for k, v in infer.items()}
        train_rate = {k: batch / statistics.median(v) for k, v in train.items()}
        ratios = [str(round(r * 100)) for r in RATIOS]
        return {
            "inference_speedup": {r: rate[r] / rate["full"] for r in ratios},
            "train_speedup": {r: train_rate[r] / train_rate["full"] for r in ratios},
            "gflops": gmacs,
            "clips_per_s": {"inference": rate, "train": train_rate},
            "setup": {"shape": shape, "clip": f"{frames}x{size}x{size}", "batch": batch, "steps": steps,
                      "threads": torch.get_num_threads(), "gflops": "multiply-accumulates per clip, inference"},
        }


def _train_step(model, optimizer, video, label, mask) -> None:
    model(video, target=label, label=label, mask=mask).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def _gmacs(model, video, mask) -> float:
    model.eval()
    # the counter has no formula for the CPU flash kernel; the math backend spells attention out as matmuls
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.predict(video, mask)
    return counter.get_total_flops() / 2 / 1e9


def format_mar(result: dict) -> str:
    lines = [f"bench mar: {result['setup']}", f"  {'':>18}  {'full':>8}{'25%':>8}{'50%':>8}{'75%':>8}"]
    rates = result["clips_per_s"]
    for kind in ("inference", "train"):
        values = [rates[kind][k] for k in ("full", "25", "50", "75")]
        lines.append(f"  {kind + ' clips/s':>18}: " + "".join(f"{v:8.3g}" for v in values))
    for kind in ("inference_speedup", "train_speedup"):
        values = [1.0] + [result[kind][k] for k in ("25", "50", "75")]
        lines.append(f"  {kind:>18}: " + "".join(f"{v:7.2f}x" for v in values))
    values = [result["gflops"][k] for k in ("full", "25", "50", "75")]
    lines.append(f"  {'GFLOPs per clip':>18}: " + "".join(f"{v:8.3g}" for v in values)
                 + "   (MAR Table XI, ViT-B: 180 -> 86 at 50%)")
    lines.append("  goal: inference speedup >= 1.8x at 50%")
    return "\n".join(lines)
