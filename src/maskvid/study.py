"""``maskvid study PAIR``: one ablation pair from the seed papers, run on the synthetic benchmark with N seeds under
the demo's protocol (:mod:`maskvid.experiment`), written as a markdown table and a bar chart with error bars.

Each pair names the table it repeats. Pretraining pairs are judged by linear probe and fine-tuning; fine-tuning
pairs (MAR's) start both arms from the same pixel-MAE pretraining and are judged by fine-tuning alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

from maskvid.errors import ConfigError
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
    run_arm,
    stage,
    start_session,
)

PIXELS = {**TUBE, "target": {"name": "pixels"}}
TOKEN_DATA = {"num_frames": 5, "stride": 4, "crop": "centre"}
TOKEN_MODEL = {"preset": "micro", "stem": "token", "vocab_size": 256, "patch": [1, 8, 8], "attention": "t_hw",
               "pos_embed": "factorized", "cls_token": True, "hide": "replace",
               "overrides": {"heads": 4, "depth": 2, "mlp_ratio": 2.0, "embed_norm": True, "final_norm": False}}
TOKEN_FINETUNE = {"tokenizer": "{tokenizer}", "data": TOKEN_DATA, "model": TOKEN_MODEL, "head": {"pool": "cls"}}


def _vimpac(strategy: str, ratio: float) -> dict:
    return {"method": "vimpac", "vimpac": {"tokenizer": "{tokenizer}", "alpha": 0.0}, "data": TOKEN_DATA,
            "mask": {"strategy": strategy, "ratio": ratio}, "model": TOKEN_MODEL, "target": None}


MAM2_MODEL = {"stem": "frame", "patch": [1, 8, 8], "attention": "divided", "pos_embed": "separable",
              "decoder_locality": None}  # MAM²'s decoders are its own
MAM2_FINETUNE = {"data": {"stride": 4}, "model": MAM2_MODEL}  # MAM² Tab. 1b: stride 4


def _mam2(coupled: bool) -> dict:
    return {"method": "mam2", "mam2": {"regressor_depth": 2, "coupled": coupled}, **TUBE, "target": None,
            "data": {"stride": 4},
            "heads": [{"name": "appearance", "target": "tokens", "options": {"tokenizer": "{tokenizer}"},
                       "decoder_depth": 2},
                      {"name": "motion", "target": "rgb_diff", "decoder_depth": 1}],
            "model": MAM2_MODEL}


def _mar(strategy: str, head: str) -> dict:
    return {"mask": {"strategy": strategy, "ratio": 0.5},
            "model": {"decoder_width": 64, "decoder_depth": 1, "decoder_heads": 2},
            "head": {"kind": head, "bridge_width": 64, "bridge_depth": 1, "bridge_heads": 2, "recon_weight": 0.1}}


@dataclass(frozen=True)
class Pair:
    name: str
    source: str  # the table it repeats
    preset: str
    arms: tuple[Arm, Arm]  # (the paper's choice, the alternative)
    stages: tuple[str, ...] = ("probe", "finetune")


PAIRS = {p.name: p for p in (
    Pair("mgm-vs-tube", "MGM Tab. 4e", "motion",
         (Arm("MGM masks", {"mask": {"strategy": "mgm", "ratio": 0.75, "options": {"variant": "dense"}},
                            "target": {"name": "pixels"}}), Arm("tube masks", PIXELS))),
    Pair("trajectory-vs-pixels", "MME Tab. 5", "motion",
         (Arm("trajectory target", TRAJECTORY), Arm("pixel target", PIXELS))),
    Pair("block-vs-iid", "VIMPAC Tab. 8", "motion",
         (Arm("block masking", _vimpac("block3d", 0.5), TOKEN_FINETUNE, tokenizer=True),
          Arm("i.i.d. masking", _vimpac("random", 0.5), TOKEN_FINETUNE, tokenizer=True))),
    Pair("running-cell-vs-random", "MAR Tab. II", "motion",
         (Arm("running cell", PIXELS, _mar("running_cell", "bridging")),
          Arm("random", PIXELS, _mar("random", "bridging"))), stages=("finetune",)),
    Pair("bridging-vs-linear", "MAR Tab. II", "motion",
         (Arm("bridging head", PIXELS, _mar("running_cell", "bridging")),
          Arm("linear head", PIXELS, _mar("running_cell", "linear"))), stages=("finetune",)),
    Pair("two-decoders-vs-one", "MAM² Tab. 2", "motion",
         (Arm("two decoders", _mam2(False), MAM2_FINETUNE, tokenizer=True),
          Arm("one decoder", _mam2(True), MAM2_FINETUNE, tokenizer=True))),
)}
TOKENIZER = {  # the benchmark's VQ tokenizer, trained once on the pool for the pairs that read tokens
    "method": "vqvae", "mask": None, "target": None,
    "data": {"num_frames": 4, "stride": 8, "flip": True},
    "tokenizer": {"factor": 8, "codebook_size": 256, "code_dim": 32, "width": 32},
    "optim": {"lr": 2e-3, "weight_decay": 0.0},
}


def available() -> dict[str, str]:
    """Every pair and what it repeats (all of their methods have landed)."""
    return {name: f"{p.source}: {p.arms[0].name} vs {p.arms[1].name} on {p.preset}" for name, p in PAIRS.items()}


def run_study(name: str, cache_dir: str, out_dir: str, seeds: int = 3, budget: Budget | None = None,
              workers: int = 1, say: Say | None = None, progress: bool | None = None) -> dict:
    """Run pair ``name`` with ``seeds`` seeds; writes ``study.md``, ``study.png`` and ``study.json`` to ``out_dir``."""

    if name not in PAIRS:
        raise ConfigError("PAIR", f"{name!r} is not a study; choose from {', '.join(PAIRS)}")
    if seeds < 1:
        raise ConfigError("--seeds", f"must be >= 1, got {seeds}")
    pair = PAIRS[name]
    budget = replace(budget or Budget(), seeds=seeds)
    say, progress = start_session(workers, say, progress)
    bench = Benchmark.prepare(cache_dir, pair.preset, budget, say, workers=max(2, workers), progress=progress)
    if any(arm.tokenizer for arm in pair.arms):
        bench.tokenizer = _tokenizer(bench, budget, cache_dir, say, workers)
    runs = {arm.name: [run_arm(bench, arm, seed, budget, os.path.join(out_dir, "runs"), say, pair.stages, workers,
                               progress) for seed in range(seeds)] for arm in pair.arms}
    table = {arm: {s: mean_std([r[s]["top1"] for r in results]) for s in pair.stages}
             for arm, results in runs.items()}
    first, second = (arm.name for arm in pair.arms)
    verdict = {s: {"difference": table[first][s]["mean"] - table[second][s]["mean"],
                   "beats": beats(table[first][s], table[second][s]),
                   "loses": beats(table[second][s], table[first][s])} for s in pair.stages}
    report = {"pair": name, "source": pair.source, "preset": pair.preset, "seeds": seeds, "budget": budget.__dict__,
              "table": table, "verdict": verdict, "runs": runs}
    os.makedirs(out_dir, exist_ok=True)
    report["markdown"] = _markdown(report, pair)
    report["files"] = {"markdown": os.path.join(out_dir, "study.md"), "png": _chart(report, pair, out_dir),
                       "json": os.path.join(out_dir, "study.json")}
    with open(report["files"]["markdown"], "w") as f:
        f.write(report["markdown"] + "\n")
    with open(report["files"]["json"], "w") as f:
        json.dump(report, f, indent=1)
    return report


def _tokenizer(bench: Benchmark, budget: Budget, cache_dir: str, say: Say, workers: int) -> str:
    """The benchmark's VQ-VAE (trained once per benchmark and kept in ``cache_dir``)."""
    from maskvid.experiment import pretrain_config
    from maskvid.recipes import train_tokenizer

    out = os.path.join(cache_dir, f"tokenizer-{os.path.basename(bench.root)}")
    path = os.path.join(out, "tokenizer.safetensors")
    with stage(say, f"train the benchmark's VQ tokenizer ({path})") as done:
        if os.path.exists(path):
            done("reused")
            return path
        config = pretrain_config(bench, Arm("tokenizer", TOKENIZER), 0, budget, out, workers, False)
        result = train_tokenizer(config)
        done(f"reconstruction MSE {result['recon_mse']:.4f}")
    return result["tokenizer"]


def _markdown(report: dict, pair: Pair) -> str:
    stages = pair.stages
    lines = [f"### {pair.name} ({pair.source}) — {pair.preset} benchmark, {report['seeds']} seed(s)", "",
             "| arm | " + " | ".join(f"{s} top-1" for s in stages) + " |",
             "|---|" + "---:|" * len(stages)]
    lines += [f"| {arm} | " + " | ".join(cell(x[s]) for s in stages) + " |" for arm, x in report["table"].items()]
    b = report["budget"]
    lines += ["", f"Pretraining {b['pretrain_steps']} steps on {b['pool']} unlabelled videos; {b['train_per_class']} "
              f"labelled videos per class; {10 * b['val_per_class']} validation videos; chance 0.100."]
    for s, v in report["verdict"].items():
        said = "wins by more than 2 std" if v["beats"] else "loses by more than 2 std" if v["loses"] else \
            "no difference beyond 2 std"
        lines.append(f"- {s}: {pair.arms[0].name} {v['difference']:+.3f} — {said}.")
    return "\n".join(lines)


def _chart(report: dict, pair: Pair, out_dir: str) -> str:
    from maskvid.viz import draw_bars

    groups = {s: {arm: (x[s]["mean"], x[s]["std"]) for arm, x in report["table"].items()} for s in pair.stages}
    return draw_bars(groups, os.path.join(out_dir, "study.png"), f"{pair.name} ({pair.source}), "
                     f"{report['seeds']} seed(s)", ylabel="top-1", reference=0.1)
