"""``maskvid demo``: the main job on the built-in synthetic data, no arguments needed.

1. synthesize the ``motion`` benchmark into a cache directory (reused when present);
2. pretrain a micro ViT (96 wide, 2 blocks) with MGM masks guided by the videos' own codec motion vectors;
3. fine-tune it, and a from-scratch twin with the same budget, then evaluate both (multi-view);
4. print a table (top-1 / top-5, wall-clock, clips/s) and where the runs, mask pictures and loss curves are,
   and say whether pretraining actually learned (a pretraining stuck at its trivial loss makes fine-tuning worse
   than scratch).
"""

from __future__ import annotations

import os
import time

from maskvid.config import FinetuneConfig, PretrainConfig, from_dict
from maskvid.engine.logging import read_metrics
from maskvid.synth import SynthConfig, synthesize

CLIP = {"num_frames": 8, "stride": 2, "size": 64, "flip": False}  # the motion preset is direction-sensitive
MODEL = {"preset": "micro", "patch": [2, 8, 8]}
BUDGET = {  # (pretrain steps, fine-tune epochs, videos per class): ≤10 min and ≤2 min on 2 CPU cores
    "full": (600, 40, 16),
    "quick": (150, 8, 6),
}


def pretrain_config(root: str, out: str, steps: int, workers: int) -> PretrainConfig:
    return from_dict(PretrainConfig, {
        "output_dir": out, "seed": 0,
        "data": {"train_list": os.path.join(root, "train.csv"), "crop": "multiscale", "motion_source": "codec", **CLIP},
        "mask": {"strategy": "mgm", "ratio": 0.75, "options": {"variant": "dense"}},
        "target": {"name": "pixels"},  # normalized pixels stay at their trivial loss on this flat content
        "model": {**MODEL, "decoder_width": 64, "decoder_depth": 1, "decoder_heads": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 20},
        "train": {"epochs": 1000, "max_steps": steps, "schedule_steps": steps, "batch_size": 8,
                  "num_workers": workers, "checkpoint_every": steps, "log_every": 10, "progress": False},
    })


def finetune_config(root: str, out: str, init: str | None, epochs: int, workers: int) -> FinetuneConfig:
    return from_dict(FinetuneConfig, {
        "output_dir": out, "seed": 0, "init": init,
        "data": {"train_list": os.path.join(root, "train.csv"), "val_list": os.path.join(root, "val.csv"),
                 "classes": os.path.join(root, "classes.txt"), "crop": "multiscale", "test_views": [2, 1], **CLIP},
        "model": {**MODEL, "drop_path": 0.0},
        "head": {"kind": "linear"},
        "mixup": {"mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0},  # too few clips for mixing to pay off
        "optim": {"lr": 3e-3, "layer_decay": 1.0, "warmup_steps": 20, "betas": [0.9, 0.999]},
        "train": {"epochs": epochs, "batch_size": 8, "num_workers": workers, "checkpoint_every": 10_000,
                  "log_every": 10, "progress": False},
    })


def run_demo(cache_dir: str, quick: bool = False, workers: int = 2) -> dict:
    from maskvid.recipes import finetune, pretrain

    steps, epochs, per_class = BUDGET["quick" if quick else "full"]
    start = time.perf_counter()
    synth = synthesize(os.path.join(cache_dir, f"synth-motion-{per_class}"),
                       SynthConfig(preset="motion", train_per_class=per_class, val_per_class=4))
    root, synth_s = synth["out_dir"], time.perf_counter() - start
    runs = os.path.join(cache_dir, "runs-quick" if quick else "runs")
    pre = pretrain(pretrain_config(root, os.path.join(runs, "pretrain"), steps, workers))
    results = {}
    for name, init in (("pretrained", pre.run_dir), ("scratch", None)):
        report = finetune(finetune_config(root, os.path.join(runs, name), init, epochs, workers))
        trained, evaluated = report["train"], report["eval"]
        results[name] = {**{k: evaluated[k] for k in ("top1", "top5", "videos")},
                         "train_seconds": trained["seconds"], "train_clips_per_s": trained["clips_per_s"],
                         "eval_clips_per_s": evaluated["clips_per_s"], "run_dir": trained["run_dir"],
                         "confusion_png": evaluated["confusion_png"]}
    pictures = _pictures(root, runs, pre.run_dir)
    learned = pre.first_loss is not None and pre.last_loss < 0.5 * pre.first_loss
    report = {
        **results,
        "pretrain": {"steps": pre.step, "seconds": pre.seconds, "clips_per_s": pre.clips_per_s,
                     "first_loss": pre.first_loss, "last_loss": pre.last_loss, "loss_fell": learned,
                     "run_dir": pre.run_dir},
        "dataset": root, "synth_seconds": synth_s, "total_seconds": time.perf_counter() - start, **pictures,
    }
    report["table"] = _table(report, quick)
    return report


def _pictures(root: str, runs: str, pretrain_dir: str) -> dict:
    from maskvid.mask_report import mask_video
    from maskvid.viz import draw_curves, draw_mask

    video = os.path.join(root, "videos", sorted(os.listdir(os.path.join(root, "videos")))[0])
    masks = {}
    for strategy in ("mgm", "tube"):
        shown = mask_video(video, strategy, ratio=0.75, frames=CLIP["num_frames"] * 2, stride=CLIP["stride"],
                           size=128, patch=(2, 16, 16))
        score = shown.summary()["motion_score"]
        title = f"{strategy} 75%: motion score " + ("inf" if score is None else f"{score:.2f}")
        masks[strategy] = draw_mask(shown.frames, shown.mask, shown.motion, os.path.join(runs, f"mask_{strategy}.png"),
                                    title=title)
    curves = {}
    named = (("pretrain (MGM, pixels)", pretrain_dir), ("fine-tune pretrained", os.path.join(runs, "pretrained")),
             ("fine-tune scratch", os.path.join(runs, "scratch")))
    for name, run in named:
        rows = [r for r in read_metrics(run) if "loss" in r]
        curves[name] = ([r["step"] for r in rows], [r["loss"] for r in rows])
    return {"mask_pictures": masks, "loss_curves": draw_curves(curves, os.path.join(runs, "loss_curves.png"))}


def _table(r: dict, quick: bool) -> str:
    p = r["pretrain"]
    lines = [
        f"maskvid demo{' --quick' if quick else ''}: motion benchmark {r['dataset']}",
        f"  pretrain  micro ViT, MGM 75% from codec vectors, {p['steps']} steps in {p['seconds']:.0f} s "
        f"({p['clips_per_s']:.0f} clips/s): loss {p['first_loss']:.3f} -> {p['last_loss']:.3f} "
        f"({'fell' if p['loss_fell'] else 'DID NOT FALL: fine-tuning from it may be worse than scratch'})",
        "",
        f"  {'':<12}{'top-1':>8}{'top-5':>8}{'train s':>9}{'train clips/s':>15}{'eval clips/s':>14}",
    ]
    for name in ("pretrained", "scratch"):
        x = r[name]
        lines.append(f"  {name:<12}{x['top1']:>8.3f}{x['top5']:>8.3f}{x['train_seconds']:>9.0f}"
                     f"{x['train_clips_per_s']:>15.0f}{x['eval_clips_per_s']:>14.0f}")
    lines += [
        f"  ({r['pretrained']['videos']} validation videos, 2 clips each, chance top-1 0.100)",
        "",
        f"  runs:          {os.path.dirname(r['pretrain']['run_dir'])}",
        f"  mask pictures: {', '.join(r['mask_pictures'].values())}",
        f"  loss curves:   {r['loss_curves']}",
        f"  total {r['total_seconds']:.0f} s",
    ]
    return "\n".join(lines)
