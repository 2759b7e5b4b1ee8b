"""``maskvid bench tokens``: what online tokenization costs next to the model it feeds, in the same run.

Measured on the same device, alternately: tokenizing one 16×224² clip (16 frames) with maskvid's trainable VQ-VAE
(f16 for 16² frame patches, default width) and with a DALL-E-shaped dVAE encoder (random weights: f8, n_hid 256,
8192 codes — BEiT, BEVT and VIMPAC's tokenizer), once at 224² (28² ids per frame; ≈1670 GMAC per clip) and once
at 112² (14², one id per 16² patch, as BEiT feeds it; ≈417 GMAC per clip), against one VideoMAE-B pretraining step (90%
tube masking, forward + backward + AdamW) on a clip. The ratio says how many model steps one clip's tokenization
costs: above ~0.3, cache the tokens (``maskvid extract tokens``) rather than tokenize online. The VQ-VAE and the
dVAE run channels-last (their ``memory_format``); each is also timed in NCHW (``…_nchw``) for
``channels_last_speedup``.
"""

from __future__ import annotations

import statistics
import time

import torch

from maskvid.bench.threads import torch_threads
from maskvid.engine.optim import adamw
from maskvid.errors import ConfigError
from maskvid.models import DecoderConfig, ViTConfig
from maskvid.models.dalle import DALLEConfig, DALLETokenizer
from maskvid.models.tokenizer import VQVAE, VQVAEConfig

SHAPES = {  # name: ViT preset, frames, size, trainable tokenizer width, dVAE n_hid, dVAE vocabulary
    "micro": ("micro", 4, 64, 16, 64, 512),  # the test size
    "base": ("base", 16, 224, 64, 256, 8192),  # VideoMAE-B, 16×224²; the published DALL-E shape
}


def _videomae_step(preset: str, frames: int, size: int, batch: int, device: str):
    from maskvid.methods.mae import MAE
    from maskvid.targets import build as build_target

    encoder = ViTConfig.preset(preset, num_frames=frames, size=size)
    decoder = DecoderConfig(width=encoder.width // 2, depth=4, heads=max(encoder.heads // 2, 1))
    model = MAE(encoder, decoder, build_target("norm_pixels", patch=encoder.patch)).to(device).train()
    optimizer = adamw(model.parameters(), lr=1e-6)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, 3, frames, size, size, generator=g).to(device)
    t, h, w = encoder.grid
    tube = torch.zeros(h * w, dtype=torch.bool)
    tube[torch.randperm(h * w, generator=g)[: round(0.9 * h * w)]] = True
    mask = tube.repeat(t)[None].expand(batch, -1).contiguous().to(device)

    def step():
        model(video, mask).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def _tokenize(tokenizer, frames: torch.Tensor, memory_format: torch.memory_format | None = None):
    """One ``encode`` of ``frames``; with ``memory_format`` the tokenizer's convolutions run in that layout instead of
    its own (the NCHW reference for its channels-last default)."""
    def run():
        own = tokenizer.memory_format
        tokenizer.memory_format = memory_format or own
        try:
            with torch.no_grad():
                tokenizer.encode(frames)
        finally:
            tokenizer.memory_format = own
    return run


def _seconds(fn, device: str) -> float:
    """Wall time of ``fn``; on a GPU under bf16 autocast (as training and extraction run there), synchronized."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def gmac_per_clip(build, frames: int, size: int) -> float:
    """Multiply-accumulates (×10⁹) of tokenizing ``frames`` frames of ``size``², counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        tokenizer = build()
        clip = torch.empty(frames, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        tokenizer.encode(clip)
    return counter.get_total_flops() / 2e9


def bench_tokens(shape: str = "base", steps: int = 2, batch: int = 1, threads: int | None = None,
                 device: str = "cpu") -> dict:
    """Clips/s of each tokenizer on ``batch`` clips' frames and of the VideoMAE step on ``batch`` clips,
    alternated."""
    if shape not in SHAPES:
        raise ConfigError("bench.shape", f"{shape!r} not in {tuple(SHAPES)}")
    preset, frames, size, width, n_hid, vocab = SHAPES[shape]
    with torch_threads(threads):
        torch.manual_seed(0)
        clip = torch.rand(batch * frames, 3, size, size).to(device)
        half = torch.nn.functional.interpolate(clip, scale_factor=0.5, mode="bilinear", antialias=True)
        vqvae = VQVAE(VQVAEConfig(factor=16, codebook_size=1024, width=width)).to(device).eval()
        dalle = DALLETokenizer(DALLEConfig(n_hid=n_hid, vocab_size=vocab)).to(device).eval()
        nchw = torch.contiguous_format
        runs = {
            "vqvae_f16": _tokenize(vqvae, clip),
            "vqvae_f16_nchw": _tokenize(vqvae, clip, nchw),
            f"dalle_f8_{size}": _tokenize(dalle, clip),
            f"dalle_f8_{size // 2}": _tokenize(dalle, half),
            f"dalle_f8_{size // 2}_nchw": _tokenize(dalle, half, nchw),
            "videomae_step": _videomae_step(preset, frames, size, batch, device),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for k in range(steps + 1):  # alternate so a busy machine slows all alike; the first round warms up
            for name, fn in runs.items():
                seconds = _seconds(fn, device)
                if k:
                    times[name].append(seconds)
    rates = {name: batch / statistics.median(t) for name, t in times.items()}
    step = rates["videomae_step"]
    gmac = {"vqvae_f16": gmac_per_clip(lambda: VQVAE(VQVAEConfig(factor=16, codebook_size=1024, width=width)),
                                       frames, size),
            **{f"dalle_f8_{side}": gmac_per_clip(lambda: DALLETokenizer(DALLEConfig(n_hid=n_hid, vocab_size=vocab)),
                                                 frames, side) for side in (size, size // 2)}}
    return {"clips_per_s": rates, "gmac_per_clip": gmac,
            "steps_per_tokenization": {n: step / r for n, r in rates.items()
                                       if n != "videomae_step" and not n.endswith("_nchw")},
            "channels_last_speedup": {n[: -len("_nchw")]: rates[n[: -len("_nchw")]] / r
                                      for n, r in rates.items() if n.endswith("_nchw")},
            "setup": {"shape": shape, "clip": f"{frames}x{size}x{size}", "model": f"ViT-{preset} VideoMAE, tube 0.9",
                      "batch": batch, "steps": steps, "threads": torch.get_num_threads(), "device": device,
                      "precision": "bf16 autocast" if device.startswith("cuda") else "fp32"}}


def format_tokens(result: dict) -> str:
    lines = [f"bench tokens: {result['setup']}"]
    for name, rate in result["clips_per_s"].items():
        cost = result["steps_per_tokenization"].get(name)
        gmac = result["gmac_per_clip"].get(name)
        lines.append(f"  {name:>16}: {rate:8.3f} clips/s" +
                     ("" if cost is None else f"  = {cost:5.2f} VideoMAE steps per clip tokenized") +
                     ("" if gmac is None else f" ({gmac:.0f} GMAC/clip)"))
    for name, speedup in result["channels_last_speedup"].items():
        lines.append(f"  {name:>16}: channels-last {speedup:.2f}x its NCHW speed (same run)")
    return "\n".join(lines)
