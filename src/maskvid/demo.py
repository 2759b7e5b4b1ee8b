"""``maskvid demo``: what self-supervised pretraining buys, measured on the built-in synthetic benchmark.

The honest setting (:mod:`maskvid.experiment`): encoders are pretrained on an unlabelled pool of videos, then judged
on a small labelled set by a frozen-encoder linear probe and by full fine-tuning, against a random-init encoder,
validated on 300 videos, mean ± std over seeds:

* ``motion`` preset (the label is the main object's motion): random init vs pixel-target MAE vs MME's trajectory
  target (its position part, under random masks) — MME's claim is that reconstructing appearance ignores motion,
  and predicting trajectories does not;
* ``appearance`` preset (colour and shape decide): random init vs pixel-target MAE.

It prints a line as each stage starts and ends, then the table and whether each goal was reached; it writes a loss
curve, mask pictures, a reconstruction and a trajectory picture, and ``demo.json`` with every figure.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace

from maskvid.experiment import (
    TRAJECTORY,
    TUBE,
    Arm,
    Benchmark,
    Budget,
    Say,
    beats,
    cell,
    mean_std,
    merged,
    run_arm,
    stage,
    start_session,
)

# The issue asks ≤10 min and ≤2 min on 2 CPU cores; README has the times measured (both under). Motion gets twice
# the steps: MME's probe left random init's only after ~800 steps of 8; appearance is learned within 400. Pretraining
# runs at lr 4e-4 (the studies' 1.5e-3 kept MME's loss on the value of predicting no motion longer; docs/demo.md).
_FULL = Budget(pretrain_lr=4e-4)  # pool 400, 16 labelled videos per class, 300 validation, 4 epochs, 3 seeds
_QUICK = Budget(pool=120, train_per_class=16, val_per_class=30, pretrain_steps=160, pretrain_lr=4e-4,
                finetune_epochs=1, seeds=1)
BUDGETS = {"full": {"motion": replace(_FULL, pretrain_steps=800), "appearance": _FULL},
           "quick": {"motion": _QUICK, "appearance": _QUICK}}
PIXELS = Arm("pixel MAE", {**TUBE, "target": {"name": "norm_pixels"}})
# MME's trajectory target as the demo pretrains it: the position part alone (Tab. 5 "w/o shape"; Tab. 7b "w/o
# patch norm") under random 75% masks. Within the demo's budget the paper's default — HOG and patch norm, under
# tube masks — stays at the loss of predicting no motion, and one seed in three of tube masks learned late.
MME = Arm("MME trajectory", merged(TRAJECTORY, {"mask": {"strategy": "random", "ratio": 0.75},
                                                "target": {"options": {"shape": False, "patch_norm": False}}}))
RANDOM = Arm("random init")
ARMS = {"motion": (RANDOM, PIXELS, MME), "appearance": (RANDOM, PIXELS)}
GOALS = (  # (preset, winner, loser): the winner's probe should beat the loser's by more than 2 std of the seeds
    ("motion", MME.name, RANDOM.name), ("motion", MME.name, PIXELS.name), ("appearance", PIXELS.name, RANDOM.name))


def run_demo(cache_dir: str, quick: bool = False, workers: int = 1, say: Say | None = None,
             progress: bool | None = None, budget: Budget | None = None) -> dict:
    """Run the demo under ``cache_dir`` (the synthesized videos are kept there and reused); returns the report that
    ``--json`` prints. ``budget`` replaces the quick/full ones for every preset (tests use a tiny one)."""
    budgets = {preset: budget for preset in ARMS} if budget else BUDGETS["quick" if quick else "full"]
    say, progress = start_session(workers, say, progress)
    start = time.perf_counter()
    runs = os.path.join(cache_dir, "runs-quick" if quick else "runs")
    shutil.rmtree(runs, ignore_errors=True)
    report: dict = {"budget": {p: b.__dict__ for p, b in budgets.items()}, "benchmarks": {}, "runs": [],
                    "results": {}}
    for preset, arms in ARMS.items():
        budget = budgets[preset]
        bench = Benchmark.prepare(cache_dir, preset, budget, say, workers=max(2, workers), progress=progress)
        report["benchmarks"][preset] = {"root": bench.root, "reused": bench.reused, "seconds": bench.seconds}
        with stage(say, f"decode the {preset} probe clips (once for every encoder)"):
            bench.probe_clips(workers)
        table = {}
        for arm in arms:
            per_seed = [run_arm(bench, arm, seed, budget, os.path.join(runs, preset), say, workers=workers,
                                progress=progress) for seed in range(budget.seeds)]
            report["runs"] += [{"preset": preset, **r} for r in per_seed]
            table[arm.name] = {stage_: mean_std([r[stage_]["top1"] for r in per_seed])
                               for stage_ in ("probe", "finetune")}
        report["results"][preset] = table
    report["goals"] = [_goal(report["results"], *goal) for goal in GOALS]
    with stage(say, "draw the pictures"):
        report["pictures"] = _pictures(report, runs)
    report["total_seconds"] = time.perf_counter() - start
    report["table"] = _table(report, quick)
    with open(os.path.join(runs, "demo.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


def _goal(results: dict, preset: str, winner: str, loser: str) -> dict:
    a, b = results[preset][winner]["probe"], results[preset][loser]["probe"]
    return {"preset": preset, "claim": f"{winner} probe > {loser} probe by > 2 std", "reached": beats(a, b),
            "difference": a["mean"] - b["mean"], "std": max(a["std"], b["std"])}


def _pictures(report: dict, runs: str) -> dict:
    from maskvid.engine.logging import read_metrics
    from maskvid.mask_report import mask_video
    from maskvid.recon_report import reconstruction_panels
    from maskvid.trajectory_report import predicted_trajectories
    from maskvid.viz import draw_curves, draw_mask, draw_panels, draw_trajectories

    pictures, curves = {}, {}
    for r in report["runs"]:
        if r["pretrain"] and r["seed"] == 0:
            rows = [m for m in read_metrics(r["pretrain"]["run_dir"]) if "loss" in m]
            first = rows[0]["loss"] if rows else 1.0
            curves[f"{r['preset']}: {r['arm']}"] = ([m["step"] for m in rows], [m["loss"] / first for m in rows])
    pictures["loss_curves"] = draw_curves(curves, os.path.join(runs, "pretrain_loss.png"),
                                          ylabel="pretraining loss / first loss")
    motion = report["benchmarks"]["motion"]["root"]
    video = os.path.join(motion, "videos", "val_00000.mp4")
    for strategy in ("mgm", "tube"):
        shown = mask_video(video, strategy, ratio=0.75, frames=16, stride=2, size=64, patch=(2, 8, 8))
        pictures[f"mask_{strategy}"] = draw_mask(shown.frames, shown.mask, shown.motion,
                                                 os.path.join(runs, f"mask_{strategy}.png"), title=f"{strategy} 75%")
    first = {(r["preset"], r["arm"]): r["pretrain"]["run_dir"] for r in report["runs"]
             if r["pretrain"] and r["seed"] == 0}
    if ("motion", PIXELS.name) in first:
        panels, metrics = reconstruction_panels(video, first["motion", PIXELS.name])
        pictures["reconstruction"] = draw_panels(panels, os.path.join(runs, "reconstruction.png"),
                                                 f"pixel MAE, masked MSE {metrics['masked MSE']:.4f} "
                                                 f"(mean colour: {metrics['masked MSE of the mean colour']:.4f})")
    if ("motion", MME.name) in first:
        shown = predicted_trajectories(video, first["motion", MME.name])
        pictures["trajectories"] = draw_trajectories(shown.frames, shown.starts, shown.tracks,
                                                     os.path.join(runs, "trajectories.png"), shown.masked,
                                                     "MME: masked patches, true vs predicted trajectories")
    return pictures


def _table(r: dict, quick: bool) -> str:
    b = r["budget"]["motion"]
    steps = {p: x["pretrain_steps"] for p, x in r["budget"].items()}
    per_preset = ", ".join(f"{p} {n}" for p, n in steps.items()) if len(set(steps.values())) > 1 else steps["motion"]
    lines = [
        f"maskvid demo{' --quick' if quick else ''}: pretrain a micro ViT on {b['pool']} unlabelled videos "
        f"({per_preset} steps of {b['batch_size']}, lr {b['pretrain_lr']:g}),",
        f"  then judge it on {b['train_per_class']} labelled videos per class; top-1 on {10 * b['val_per_class']} "
        "validation videos (chance 0.100),",
        f"  mean ± std over {b['seeds']} seed(s); probe: frozen encoder + logistic regression; fine-tune: "
        f"{b['finetune_epochs']} epochs;",
        "  MME: the trajectory's position part, under random 75% masks",
    ]
    for preset, table in r["results"].items():
        reused = " (videos reused)" if r["benchmarks"][preset]["reused"] else ""
        lines += ["", f"  {preset}{reused}", f"  {'':<18}{'linear probe':>16}{'fine-tune':>16}"]
        lines += [f"  {arm:<18}{cell(x['probe']):>16}{cell(x['finetune']):>16}" for arm, x in table.items()]
    lines += ["", "  goals (MME's claim on motion; appearance is what pixel MAE should learn):"]
    for g in r["goals"]:
        verdict = "reached" if g["reached"] else "NOT reached"
        lines.append(f"    {g['preset']}: {g['claim']}: {verdict} (difference {g['difference']:+.3f}, "
                     f"std {g['std']:.3f})")
    if b["seeds"] < 2:
        lines.append("    (one seed has no spread to judge a goal by: the full demo runs 3 seeds)")
    if not all(g["reached"] for g in r["goals"]):
        lines.append("    what we measured and tried toward the goals not reached: docs/demo.md")
    lines += ["", *(f"  {name}: {path}" for name, path in r["pictures"].items()),
              f"  every figure: {os.path.join(os.path.dirname(r['pictures']['loss_curves']), 'demo.json')}",
              f"  total {r['total_seconds']:.0f} s"]
    return "\n".join(lines)
