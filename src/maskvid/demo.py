"""``maskvid demo``: the main job on the built-in synthetic data.

Today it runs the data half of the job — synthesize the ``motion`` benchmark into a cache (reused when present),
then stream it through the training pipeline with codec motion vectors — and reports what it saw. Pretraining,
fine-tuning and evaluation join it as their issues land.
"""

from __future__ import annotations

import os
import time

import torch

from maskvid.data import BadVideoLog, ClipTransform, VideoDataset, collate, probe_video
from maskvid.data.synthetic import SynthConfig, synthesize


def run_demo(cache_dir: str, quick: bool = False) -> dict:
    config = SynthConfig(preset="motion", train_per_class=4 if quick else 16, val_per_class=2 if quick else 4)
    start = time.perf_counter()
    summary = synthesize(os.path.join(cache_dir, f"synth-motion-{config.train_per_class}"), config)
    synth_s = time.perf_counter() - start
    root = summary["out_dir"]
    dataset = VideoDataset.from_list(
        os.path.join(root, "train.csv"),
        classes=os.path.join(root, "classes.txt"),
        transform=ClipTransform(size=112, crop="multiscale", flip=False),  # the motion preset is direction-sensitive
        num_frames=16,
        stride=2,
        motion_vectors=True,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=collate)
    log, clips, speed = BadVideoLog(), 0, []
    start = time.perf_counter()
    for batch in loader:
        log.update(batch)
        clips += batch["video"].shape[0]
        valid = batch["motion_valid"]
        speed.append(batch["motion"].norm(dim=-1).mean(dim=(2, 3))[valid].mean().item())
    load_s = time.perf_counter() - start
    info = probe_video(os.path.join(root, "videos", "train_00000.mp4"), check_motion_vectors=True)
    rows = [
        ("dataset", f"{root} ({summary['train']} train / {summary['val']} val, {config.classes} classes)"),
        ("synthesized in", "reused cache" if summary["reused"] else f"{synth_s:.1f} s"),
        (
            "video",
            f"{info.codec} {info.width}x{info.height}, {info.frames} frames, motion vectors: {info.motion_vectors}",
        ),
        ("loaded", f"{clips} clips of 16x112x112 with motion fields in {load_s:.1f} s ({clips / load_s:.1f} clips/s)"),
        ("mean |motion|", f"{sum(speed) / len(speed):.2f} px/frame over frames with vectors"),
        ("bad videos", log.report()),
        ("next", "pretraining and fine-tuning land with the model and fine-tuning issues"),
    ]
    table = "\n".join(f"{k:>15}  {v}" for k, v in rows)
    return {"table": table, "dataset": root, "clips": clips, "clips_per_s": clips / load_s, "bad_videos": len(log.bad)}
