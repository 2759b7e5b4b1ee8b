"""``maskvid bench model``: pretraining-step throughput (clips/s: forward, backward, AdamW step) of maskvid's MAE vs
transformers' ``VideoMAEForPreTraining`` built from the same config, fed the same clips and the same tube mask,
measured alternately in one run. The two start from identical weights (``from_hf``), so they compute the same
function; the check that they do is part of the output (``loss_gap``).
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from maskvid.bench.threads import torch_threads
from maskvid.engine.optim import adamw
from maskvid.errors import ConfigError
from maskvid.hf import from_hf, from_hf_layout

SHAPES = {  # name: (hidden, layers, heads, decoder hidden, decoder layers, decoder heads, frames, size)
    "micro": (96, 2, 3, 64, 1, 2, 8, 64),
    "small": (384, 12, 6, 192, 4, 3, 16, 224),  # VideoMAE ViT-S, 16x224²
    "base": (768, 12, 12, 384, 4, 6, 16, 224),  # VideoMAE ViT-B, 16x224²
}


def _hf_model(shape: str, attn: str):
    try:
        from transformers import VideoMAEConfig, VideoMAEForPreTraining
    except ImportError as e:  # an optional extra
        raise ConfigError("bench.model", "needs transformers: pip install 'maskvid[hf]'") from e
    hidden, layers, heads, d_hidden, d_layers, d_heads, frames, size = SHAPES[shape]
    config = VideoMAEConfig(
        image_size=size, num_frames=frames, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, decoder_hidden_size=d_hidden, decoder_num_hidden_layers=d_layers,
        decoder_num_attention_heads=d_heads, decoder_intermediate_size=4 * d_hidden, use_mean_pooling=False,
        norm_pix_loss=True, attn_implementation=attn,
    )
    return VideoMAEForPreTraining(config), frames, size


def _step_time(model, call, optimizer) -> float:
    start = time.perf_counter()
    loss = call(model)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_model(shape: str = "small", batch: int = 2, steps: int = 5, ratio: float = 0.9, threads: int | None = None,
                device: str = "cpu") -> dict:
    """maskvid vs transformers with its default attention (SDPA) and with its eager attention, same weights."""
    if shape not in SHAPES:
        raise ConfigError("bench.shape", f"{shape!r} not in {tuple(SHAPES)}")
    with torch_threads(threads):
        torch.manual_seed(0)
        hf, frames, size = _hf_model(shape, "sdpa")
        with tempfile.TemporaryDirectory() as tmp:
            hf.save_pretrained(tmp)
            ours = from_hf(tmp)
            eager = type(hf).from_pretrained(tmp, attn_implementation="eager")
        for model in (hf, eager, ours):
            model.to(device).train()
        g = torch.Generator().manual_seed(0)
        pixel_values = torch.randn(batch, frames, 3, size, size, generator=g).to(device)
        grid = ours.encoder.config.grid
        tube = torch.zeros(grid[1] * grid[2], dtype=torch.bool)
        tube[torch.randperm(tube.numel(), generator=g)[: round(ratio * tube.numel())]] = True
        mask = tube.repeat(grid[0])[None].expand(batch, -1).contiguous().to(device)
        video = from_hf_layout(pixel_values).contiguous()
        runs = {
            "maskvid": (ours, lambda m: m(video, mask).loss),
            "transformers": (hf, lambda m: m(pixel_values, bool_masked_pos=mask).loss),
            "transformers_eager": (eager, lambda m: m(pixel_values, bool_masked_pos=mask).loss),
        }
        with torch.no_grad():
            gap = abs(float(runs["maskvid"][1](ours)) - float(runs["transformers"][1](hf)))
        optimizers = {name: adamw(m.parameters(), lr=1e-6) for name, (m, _) in runs.items()}
        times = {name: [] for name in runs}
        for k in range(steps + 1):  # alternate so a busy machine slows both alike; the first step warms up
            for name, (model, call) in runs.items():
                seconds = _step_time(model, call, optimizers[name])
                if k:
                    times[name].append(seconds)
        rates = {name: batch / statistics.median(t) for name, t in times.items()}
        return {
            "clips_per_s": rates,
            "ratio": rates["maskvid"] / rates["transformers"],
            "ratio_vs_eager": rates["maskvid"] / rates["transformers_eager"],
            "loss_gap": gap,
            "setup": {"shape": shape, "clip": f"{frames}x{size}x{size}", "batch": batch, "mask": f"tube {ratio}",
                      "steps": steps, "threads": torch.get_num_threads(), "device": device},
        }


def format_model(result: dict) -> str:
    lines = [f"bench model: {result['setup']}"]
    lines += [f"  {name:>18}: {rate:8.3f} clips/s (train step)" for name, rate in result["clips_per_s"].items()]
    lines.append(f"  {'ratio':>18}: {result['ratio']:8.2f}x maskvid / transformers (its default SDPA; goal >= 1.3x)")
    lines.append(f"  {'ratio':>18}: {result['ratio_vs_eager']:8.2f}x maskvid / transformers with eager attention")
    lines.append(f"  {'loss gap':>18}: {result['loss_gap']:.2e} (same weights, same input: should be ~0)")
    return "\n".join(lines)
