"""``maskvid bench vimpac``: a VIMPAC pretraining step (forward, backward, AdamW; masked tokens + contrastive pair)
with each attention layout on the same token grid, measured alternately in one run — VIMPAC's Table 13 (T×H×W
joint, T,H×W divided, T|H|W, T,H|W) on this machine. The reference is joint attention over all tokens.
"""

from __future__ import annotations

import statistics
import time

import torch

from maskvid.bench.threads import torch_threads
from maskvid.config import VimpacConfig
from maskvid.engine.optim import adamw
from maskvid.errors import ConfigError
from maskvid.methods.vimpac import VIMPAC
from maskvid.models import ViTConfig
from maskvid.targets.tokens import TokenIds

SHAPES = {  # name: (width, depth, heads, attention width ratio, mlp ratio, frames, tokens per side, vocabulary)
    "micro": (96, 4, 4, 0.5, 2.0, 5, 8, 256),  # configs/pretrain/vimpac_micro.yaml
    "small": (512, 6, 8, 1.0, 4.0, 5, 16, 8192),  # the official "small" analysis model, 5 × 128² frames
    "small_256": (512, 6, 8, 1.0, 4.0, 5, 32, 8192),  # the same at 5 × 256² frames (Tab. 14): 5,121 tokens
    "large": (1024, 24, 16, 0.5, 2.0, 5, 16, 8192),  # large-half (App. C.1)
}
LAYOUTS = {"joint": "T×H×W", "divided": "T,H×W", "thw_split": "T|H|W", "t_hw": "T,H|W"}


def _method(shape: str, attention: str) -> VIMPAC:
    width, depth, heads, attn_ratio, mlp, frames, side, vocab = SHAPES[shape]
    axial = attention in ("t_hw", "thw_split")
    if attention == "thw_split":
        heads = 3 * (heads // 2)  # three axes split the heads three ways
        width = width // 3 * 3 // heads * heads
    encoder = ViTConfig(width=width, depth=depth, heads=heads, mlp_ratio=mlp, attn_ratio=attn_ratio if axial else 1.0,
                        num_frames=frames, size=side, patch=(1, 1, 1), stem="token", vocab_size=vocab,
                        attention=attention, pos_embed="factorized", cls_token=True, hide="replace",
                        embed_norm=True, final_norm=not axial, eps=1e-12)
    return VIMPAC(encoder, TokenIds(vocab_size=vocab, patch=(1, 1, 1)), VimpacConfig(noise=(1.0, 0.0, 0.0)))


def bench_vimpac(shape: str = "small", batch: int = 2, steps: int = 3, threads: int | None = None,
                 device: str = "cpu") -> dict:
    """Clips/s of one training step per layout (a step sees ``batch`` videos, two clips each)."""
    if shape not in SHAPES:
        raise ConfigError("bench.shape", f"{shape!r} not in {tuple(SHAPES)}")
    from maskvid.masking import build

    with torch_threads(threads):
        torch.manual_seed(0)
        methods = {name: _method(shape, name).to(device).train() for name in LAYOUTS}
        _, _, _, _, _, frames, side, vocab = SHAPES[shape]
        g = torch.Generator().manual_seed(0)
        mask = build("block3d", ratio=0.15)
        inputs = {}
        for suffix in ("", "2"):
            inputs["tokens" + suffix] = torch.randint(vocab, (batch, frames, side, side), generator=g).to(device)
            inputs["mask" + suffix] = torch.stack([mask((frames, side, side), g).flatten()
                                                   for _ in range(batch)]).to(device)
        optimizers = {name: adamw(m.parameters(), lr=1e-6) for name, m in methods.items()}
        times = {name: [] for name in methods}
        for k in range(steps + 1):  # alternate so a busy machine slows all alike; the first step warms up
            for name, method in methods.items():
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                method(**inputs).loss.backward()
                optimizers[name].step()
                optimizers[name].zero_grad(set_to_none=True)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if k:
                    times[name].append(time.perf_counter() - start)
        rates = {name: 2 * batch / statistics.median(t) for name, t in times.items()}
        params = {name: sum(p.numel() for p in m.encoder.parameters()) for name, m in methods.items()}
        return {"clips_per_s": rates, "ratio": rates["t_hw"] / rates["joint"], "encoder_params": params,
                "setup": {"shape": shape, "grid": f"{frames}x{side}x{side} tokens", "batch": f"{batch} pairs",
                          "steps": steps, "threads": torch.get_num_threads(), "device": device}}


def format_vimpac(result: dict) -> str:
    lines = [f"bench vimpac: {result['setup']}"]
    for name, rate in result["clips_per_s"].items():
        params = result["encoder_params"][name] / 1e6
        lines.append(f"  {LAYOUTS[name]:>8} ({name:>9}): {rate:8.2f} clips/s (train step), encoder {params:6.1f}M")
    lines.append(f"  {'ratio':>20}: {result['ratio']:8.2f}x T,H|W / joint T×H×W")
    return "\n".join(lines)
