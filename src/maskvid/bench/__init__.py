"""``maskvid bench …``: speed as a ratio against a reference measured in the same run, never in tests.

``data``: maskvid's loader vs VideoMAE's decord + PIL pipeline (:mod:`maskvid.bench.data`), the pretraining
loader's scaling with worker processes on Kinetics-shaped videos, codec vectors and MGM included
(:mod:`maskvid.bench.loader`), and the clip decoder against torchcodec and decord on one core, decode alone and
whole samples (:mod:`maskvid.bench.decoders`).
``masking``: each strategy's cost, and MGM guided by codec vectors vs by optical flow (:mod:`maskvid.bench.masking`).
``mar``: MAR's masked fine-tuning and inference vs full-token fine-tuning (:mod:`maskvid.bench.mar`).
``targets``: what each prediction target costs per clip on one core, MME's trajectories included
(:mod:`maskvid.bench.targets`).
``tokens``: online tokenization (the trainable VQ-VAE, a DALL-E-shaped dVAE) vs a VideoMAE-B training step
(:mod:`maskvid.bench.tokens`).
``model``: a pretraining step of maskvid's MAE vs transformers' VideoMAEForPreTraining (:mod:`maskvid.bench.model`);
then clips/s and MFU of VideoMAE, MGM, MAR 50% and full fine-tuning, and transformers' models, on CPU or CUDA, and
the largest batch that fits (:mod:`maskvid.bench.workloads`).
``vimpac``: a VIMPAC pretraining step with each attention layout on one token grid (:mod:`maskvid.bench.vimpac`).
"""

from __future__ import annotations

BENCHMARKS = ("data", "masking", "targets", "tokens", "model", "mar", "vimpac")
REFERENCE_BATCH = 4  # bench model's fp32 maskvid-vs-transformers check, when workloads run beside it


def run(what: str, args) -> dict:
    if what == "data":
        from maskvid.bench.data import bench_data
        from maskvid.bench.decoders import bench_decoders
        from maskvid.bench.loader import bench_loader

        result = bench_data(clips=args.clips, videos=args.videos, workdir=args.workdir)
        workers = getattr(args, "workers", None) or (1,)
        result["loader"] = bench_loader(workers, clips=args.clips, videos=args.videos, workdir=args.workdir)
        result["decoders"] = bench_decoders(clips=args.clips, videos=min(args.videos, 4), workdir=args.workdir)
        return result
    if what == "masking":
        from maskvid.bench.masking import bench_masking

        return bench_masking(clips=args.clips, videos=args.videos, workdir=args.workdir)
    if what == "targets":
        from maskvid.bench.targets import bench_targets

        return bench_targets(clips=args.clips, videos=args.videos, workdir=args.workdir)
    if what == "tokens":
        from maskvid.bench.tokens import bench_tokens

        return bench_tokens(shape=args.shape or "base", steps=args.steps or 2, batch=args.batch or 1,
                            device=args.device)
    if what == "model":
        from maskvid.bench.model import bench_model
        from maskvid.bench.workloads import bench_workloads, max_batch

        shape, batch, steps, device = args.shape or "small", args.batch or 2, args.steps or 5, args.device
        # beside workloads the fp32 same-weights check takes few clips: its three fp32 models and their
        # activations would not fit in the device's memory next to a large batch
        reference_batch = min(batch, REFERENCE_BATCH) if args.workloads or args.max_batch else batch
        result = bench_model(shape=shape, batch=reference_batch, steps=steps, device=device)
        if args.workloads:
            result["workloads"] = bench_workloads(shape, batch, steps, device, args.precision, args.compile,
                                                  args.workloads, args.grad_checkpointing)
        if args.max_batch:
            result.setdefault("workloads", {})["max_batch"] = {
                "videomae": max_batch("videomae", shape, device, False, args.precision),
                "videomae_checkpointed": max_batch("videomae", shape, device, True, args.precision)}
        return result
    if what == "mar":
        from maskvid.bench.mar import bench_mar

        return bench_mar(shape=args.shape or "base", batch=args.batch or 1, steps=args.steps or 2)
    if what == "vimpac":
        from maskvid.bench.vimpac import bench_vimpac

        return bench_vimpac(shape=args.shape or "small", batch=args.batch or 2, steps=args.steps or 3,
                            device=args.device)
    raise ValueError(f"unknown benchmark {what!r}; choose from {BENCHMARKS}")


def format_result(what: str, result: dict) -> str:
    if what == "masking":
        from maskvid.bench.masking import format_masking

        return format_masking(result)
    if what == "targets":
        from maskvid.bench.targets import format_targets

        return format_targets(result)
    if what == "tokens":
        from maskvid.bench.tokens import format_tokens

        return format_tokens(result)
    if what == "model":
        from maskvid.bench.model import format_model
        from maskvid.bench.workloads import format_workloads

        workloads = result.get("workloads")
        return format_model(result) + (f"\n{format_workloads(workloads)}" if workloads and "workloads" in workloads
                                       else "")
    if what == "mar":
        from maskvid.bench.mar import format_mar

        return format_mar(result)
    if what == "vimpac":
        from maskvid.bench.vimpac import format_vimpac

        return format_vimpac(result)
    if what == "data":
        from maskvid.bench.decoders import format_decoders
        from maskvid.bench.loader import format_loader

        return "\n".join([_format_ratio(what, result), format_loader(result["loader"]),
                          format_decoders(result["decoders"])])
    return _format_ratio(what, result)


def _format_ratio(what: str, result: dict) -> str:
    rates = result["clips_per_s"]
    lines = [f"bench {what}: {result['setup']}"]
    lines += [f"  {name:>16}: {value:8.2f} clips/s" for name, value in rates.items()]
    lines.append(f"  {'ratio':>16}: {result['ratio']:8.2f}x (maskvid / reference)")
    return "\n".join(lines)
