"""``maskvid bench model --workloads``: training-step clips/s and model FLOPs utilization (MFU) of the workloads a
GPU node runs, maskvid's and Hugging Face's in the same run, and the largest batch that fits.

Workloads (16×224² clips at ViT-B; tubelet 2×16²):

* ``videomae`` — MAE pretraining, tube mask 90%, normalized pixels (and ``hf_videomae``: transformers'
  ``VideoMAEForPreTraining``, same shape, same mask);
* ``mgm`` — the same model with MGM's motion-guided mask at 90%, from a motion field of a moving object;
* ``mar50`` — MAR fine-tuning on the visible half (running cell 50%, bridging classifier, reconstruction branch);
* ``finetune`` — full fine-tuning on all tokens (and ``hf_finetune``: ``VideoMAEForVideoClassification``).

A step is forward, backward and AdamW (fused, as training runs it), under bf16 autocast on CUDA (``precision``).
Model FLOPs are counted by ``torch.utils.flop_counter`` over one forward + backward (2 FLOPs per multiply-add,
attention included). MFU = model FLOPs × steps/s ÷ the device's dense bf16 peak, from :data:`PEAK_TFLOPS`; where
no spec-sheet peak is known (every CPU) the peak is *measured*: the best rate of a large square matmul in the
step's dtype (:func:`matmul_tflops`), what a step made of nothing but large GEMMs would reach. That rate is reported
on every device, with ``ceiling_vs_hf``: the matmul rate ÷ transformers' achieved rate, the most any implementation
of the same model FLOPs can outrun transformers without outrunning the device's own matmul.

On CUDA each workload also reports ``device_reads_per_step``: how often one step made the host wait for the GPU
(torch's sync debug mode counts them; :func:`device_reads`).

Model FLOPs are the task's: maskvid's count for both implementations of one workload (transformers also embeds the
masked tubelets before dropping them: its own, larger count is its ``gflops_per_clip``), and recomputation by
gradient checkpointing is not counted — MFU measures useful work.
"""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from maskvid import masking, targets
from maskvid.engine.optim import adamw
from maskvid.errors import ConfigError
from maskvid.methods.finetune import Classification
from maskvid.methods.mae import MAE
from maskvid.methods.mar import MARNet
from maskvid.models import DecoderConfig, VideoClassifier, ViTConfig

PEAK_TFLOPS = {  # dense bf16 tensor-core peak (V100: fp16), by a substring of torch.cuda.get_device_name(); first match
    "H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0,
    "RTX 4090": 165.0, "V100": 125.0,
}
SHAPES = {  # encoder preset, frames, size, decoder (width, depth, heads)
    "micro": ("micro", 8, 64, (64, 1, 2)),
    "small": ("small", 16, 224, (192, 4, 3)),
    "base": ("base", 16, 224, (384, 4, 6)),
}
WORKLOADS = ("videomae", "hf_videomae", "mgm", "mar50", "finetune", "hf_finetune")
CLASSES = 400


def device_peak(device: torch.device) -> tuple[float | None, str]:
    """The device's dense bf16 peak in TFLOP/s (None when unknown) and its name."""
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None), name


def matmul_tflops(device: torch.device, precision: str = "auto", size: int | None = None, repeats: int = 5) -> float:
    """The best rate, in TFLOP/s, of a ``size``³ matmul (default 2048 on a CPU, 8192 on a GPU, which a smaller one
    leaves half idle) on ``device`` in the dtype the step's GEMMs run in (bf16 under
    the workloads' autocast, else fp32): the device's practical GEMM peak, measured in the same run as the steps."""
    dtype = torch.bfloat16 if _bf16(device, precision) else torch.float32
    size = size or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device, dtype) for _ in range(2))
    best = float("inf")
    for k in range(repeats + 1):  # the first warms the kernel up
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        if k:
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def build_workload(name: str, shape: str, batch: int, grad_checkpointing: bool = False, device: str = "cpu"):
    """``(model, step_loss)``: ``step_loss(model)`` runs one forward and returns the loss to backpropagate. The
    clips are drawn on ``device``: a step times the model, not a host-to-device copy (the loader's pinned,
    non-blocking copy overlaps it in training). maskvid's methods get their arguments from ``prepare``, as in
    training, so with the mask's order made on the host."""
    preset, frames, size, (dw, dd, dh) = SHAPES[shape]
    encoder = ViTConfig.preset(preset, num_frames=frames, size=size, grad_checkpointing=grad_checkpointing)
    decoder = DecoderConfig(width=dw, depth=dd, heads=dh, grad_checkpointing=grad_checkpointing)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, 3, frames, size, size, device=device,
                        generator=torch.Generator(device).manual_seed(0))
    label = torch.randint(CLASSES, (batch,), generator=g)
    grid = encoder.grid
    if name in ("videomae", "mgm", "hf_videomae"):
        mask = _mask(name, grid, batch, g)
        if name == "hf_videomae":
            return _hf_pretraining(encoder, (dw, dd, dh), video, mask)
        model = MAE(encoder, decoder, targets.build("norm_pixels"))
        inputs = model.prepare({"video": video, "mask": mask}, torch.device(device))
        return model, lambda m: m(**inputs).loss
    if name == "mar50":
        mae = MAE(encoder, decoder, targets.build("norm_pixels"))
        model = Classification(MARNet(mae, CLASSES, head="bridging", bridge={"width": 512, "depth": 2, "heads": 8}),
                               CLASSES)
        running = masking.build("running_cell", ratio=0.5, start=1)
        mask = torch.stack([running(grid) for _ in range(batch)]).flatten(1)
        inputs = model.prepare({"video": video, "label": label, "mask": mask}, torch.device(device))
        return model, lambda m: m(**inputs).loss
    if name == "finetune":
        classifier = VideoClassifier(ViTConfig.preset(preset, num_frames=frames, size=size, final_norm=False,
                                                      grad_checkpointing=grad_checkpointing), CLASSES)
        model = Classification(classifier, CLASSES)
        return model, lambda m: m(video.to(_device(m)), target=label.to(_device(m)), label=label.to(_device(m))).loss
    if name == "hf_finetune":
        return _hf_classification(encoder, video, label)
    raise ConfigError("bench.workloads", f"{name!r} not in {WORKLOADS}")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _mask(name: str, grid, batch: int, g: torch.Generator) -> torch.Tensor:
    if name == "mgm":  # a bright object crossing the frame: the motion MGM's mask follows
        t, h, w = grid
        motion = torch.zeros(t, h, w)
        for i in range(t):
            motion[i, h // 4:h // 2, (i * w // t) % w:(i * w // t) % w + w // 4] = 4.0
        strategy = masking.build("mgm", ratio=0.9)
        return torch.stack([strategy(grid, g, motion) for _ in range(batch)]).flatten(1)
    strategy = masking.build("tube", ratio=0.9)
    return torch.stack([strategy(grid, g) for _ in range(batch)]).flatten(1)


def _hf_config(encoder: ViTConfig, **extra):
    try:
        from transformers import VideoMAEConfig
    except ImportError as e:  # an optional extra
        raise ConfigError("bench.workloads", "the hf_* workloads need transformers: pip install 'maskvid[hf]'") from e
    return VideoMAEConfig(image_size=encoder.size, num_frames=encoder.num_frames, hidden_size=encoder.width,
                          num_hidden_layers=encoder.depth, num_attention_heads=encoder.heads,
                          intermediate_size=4 * encoder.width, attn_implementation="sdpa", **extra)


def _hf_pretraining(encoder: ViTConfig, decoder: tuple[int, int, int], video, mask):
    from transformers import VideoMAEForPreTraining

    dw, dd, dh = decoder
    model = VideoMAEForPreTraining(_hf_config(encoder, decoder_hidden_size=dw, decoder_num_hidden_layers=dd,
                                              decoder_num_attention_heads=dh, decoder_intermediate_size=4 * dw,
                                              use_mean_pooling=False, norm_pix_loss=True))
    if encoder.grad_checkpointing:
        model.gradient_checkpointing_enable()
    pixel_values = video.transpose(1, 2).contiguous()  # HF reads (B, T, C, H, W)
    return model, lambda m: m(pixel_values.to(_device(m)), bool_masked_pos=mask.to(_device(m))).loss


def _hf_classification(encoder: ViTConfig, video, label):
    from transformers import VideoMAEForVideoClassification

    model = VideoMAEForVideoClassification(_hf_config(encoder, num_labels=CLASSES, use_mean_pooling=True))
    if encoder.grad_checkpointing:
        model.gradient_checkpointing_enable()
    pixel_values = video.transpose(1, 2).contiguous()
    return model, lambda m: m(pixel_values.to(_device(m)), labels=label.to(_device(m))).loss


def _bf16(device: torch.device, precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _autocast(device: torch.device, precision: str):
    if _bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def model_flops(name: str, shape: str, device: torch.device, precision: str) -> float:
    """Model FLOPs of one clip's forward + backward (no optimizer), counted on a one-clip batch under the math
    attention kernel: the fused kernels' backward recomputes the attention scores, which the counter would add
    but MFU does not count as useful work, and one clip keeps the math kernel's N×N scores small. Every workload
    gives each clip the same number of tokens, so a batch costs ``batch`` times this."""
    torch.manual_seed(0)
    model, loss_of = build_workload(name, shape, 1, False, device)
    model.to(device).train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, _autocast(device, precision):
        loss_of(model).backward()
    return float(counter.get_total_flops())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_workloads(shape: str = "base", batch: int = 2, steps: int = 5, device: str = "cpu",
                    precision: str = "auto", compile: bool = False, names: tuple[str, ...] = WORKLOADS,
                    grad_checkpointing: bool = False) -> dict:
    """Clips/s, model FLOPs per clip, achieved TFLOP/s and MFU of each workload, measured alternately."""
    if shape not in SHAPES:
        raise ConfigError("bench.shape", f"{shape!r} not in {tuple(SHAPES)}")
    dev = torch.device(device)
    spec_peak, device_name = device_peak(dev)
    matmul = matmul_tflops(dev, precision)
    peak = spec_peak or matmul
    runs = {}
    for name in names:
        torch.manual_seed(0)
        flops = batch * model_flops(name, shape, dev, precision)
        model, loss_of = build_workload(name, shape, batch, grad_checkpointing, dev)
        model.to(dev).train()
        step_model = torch.compile(model) if compile else model
        optimizer = adamw(model.parameters(), lr=1e-6)
        runs[name] = (step_model, loss_of, optimizer, flops)
    def step(name: str) -> None:
        model, loss_of, optimizer, _ = runs[name]
        with _autocast(dev, precision):
            loss = loss_of(model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(steps + 2):  # alternate so a busy machine slows all alike; two warm-up rounds (compile, cuDNN)
        for name in runs:
            _synchronize(dev)
            start = time.perf_counter()
            step(name)
            _synchronize(dev)
            if k >= 2:
                times[name].append(time.perf_counter() - start)
    reads = {name: device_reads(lambda name=name: step(name), dev) for name in runs}
    pairs = {"videomae": "hf_videomae", "finetune": "hf_finetune"}
    twins = {hf: ours for ours, hf in pairs.items() if ours in runs}
    result = {}
    for name, (_, _, _, flops) in runs.items():
        seconds = statistics.median(times[name])
        useful = runs[twins[name]][3] if name in twins else flops  # the task's FLOPs, whoever computes it
        achieved = useful / seconds / 1e12
        result[name] = {"clips_per_s": batch / seconds, "gflops_per_clip": flops / batch / 1e9,
                        "model_gflops_per_clip": useful / batch / 1e9, "achieved_tflops": achieved,
                        "mfu": achieved / peak if peak else None, "device_reads_per_step": reads[name]}
    return {
        "workloads": result,
        "vs_hf": {ours: result[ours]["clips_per_s"] / result[hf]["clips_per_s"]
                  for ours, hf in pairs.items() if ours in result and hf in result},
        "ceiling_vs_hf": {ours: matmul / result[hf]["achieved_tflops"]
                          for ours, hf in pairs.items() if ours in result and hf in result},
        "setup": {"shape": shape, "batch": batch, "steps": steps, "device": device_name, "peak_tflops": peak,
                  "peak_source": "spec sheet" if spec_peak else "measured matmul", "matmul_tflops": matmul,
                  "precision": precision, "compile": compile, "grad_checkpointing": grad_checkpointing,
                  "threads": torch.get_num_threads()},
    }


SYNCHRONIZING = "called a synchronizing CUDA operation"  # what torch's CUDA sync debug mode warns at each wait


def device_reads(step: Callable[[], None], device: torch.device) -> int | None:
    """How many times ``step`` made the host wait for the GPU (a value read back, a data-dependent shape), counted
    by torch's CUDA sync debug mode; None off CUDA, where nothing waits. Each wait leaves the GPU idle while the host
    catches up with the work it could not queue ahead."""
    if device.type != "cuda":
        return None
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(before)
    return sum(SYNCHRONIZING in str(w.message) for w in caught)


def largest_batch(fits: Callable[[int], bool], limit: int = 4096) -> int:
    """The largest batch ``b <= limit`` with ``fits(b)`` (0 if none), assuming ``fits`` holds up to some size and
    fails above it: doubling, then bisection."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:  # fits(low), not fits(high) (or past the limit)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def max_batch(name: str, shape: str, device: str, grad_checkpointing: bool, precision: str = "auto",
              limit: int = 1024) -> int | None:
    """The largest batch whose training step fits in the device's memory (None off CUDA: there it is the host's)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None

    def fits(batch: int) -> bool:
        try:
            _one_step(name, shape, batch, dev, grad_checkpointing, precision)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            gc.collect()  # the failed step's tensors, before the next size is tried
            torch.cuda.empty_cache()

    return largest_batch(fits, limit)


def _one_step(name: str, shape: str, batch: int, device: torch.device, grad_checkpointing: bool,
              precision: str) -> None:
    model, loss_of = build_workload(name, shape, batch, grad_checkpointing, device)
    model.to(device).train()
    optimizer = adamw(model.parameters(), lr=1e-6)
    with _autocast(device, precision):
        loss = loss_of(model)
    loss.backward()
    optimizer.step()
    _synchronize(device)


def format_workloads(result: dict) -> str:
    lines = [f"workloads: {result['setup']}",
             f"  {'workload':>12} {'clips/s':>9} {'GFLOP/clip':>11} {'TFLOP/s':>9} {'MFU':>7} {'waits/step':>10}"]
    for name, r in result["workloads"].items():
        mfu = f"{100 * r['mfu']:6.1f}%" if r["mfu"] is not None else "    n/a"
        waits = "n/a" if r["device_reads_per_step"] is None else r["device_reads_per_step"]
        lines.append(f"  {name:>12} {r['clips_per_s']:9.3f} {r['gflops_per_clip']:11.2f} {r['achieved_tflops']:9.3f} "
                     f"{mfu} {waits:>10}")
    for ours, ratio in result["vs_hf"].items():
        lines.append(f"  {ours} / hf_{ours}: {ratio:.2f}x (goal >= 1.3x; at most "
                     f"{result['ceiling_vs_hf'][ours]:.2f}x unless beating this device's matmul rate)")
    for key, value in result.get("max_batch", {}).items():
        lines.append(f"  largest {key} batch: {value}")
    return "\n".join(lines)
