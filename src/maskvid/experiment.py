"""What ``maskvid demo`` and ``maskvid study`` share: the honest self-supervised protocol on the synthetic benchmark.

An :class:`Arm` is one way to initialize an encoder — random, or pretrained on the benchmark's *unlabelled pool*
with some method. Each arm is then judged on the small *labelled* set by (a) a frozen-encoder linear probe
(:mod:`maskvid.engine.feature_probe`: clips decoded once, logistic regression, L2 picked by cross-validation on
the training videos) and (b) full fine-tuning, both scored on the ≥300-video validation set, once per seed.

    bench = Benchmark.prepare(cache_dir, "motion", budget, say)
    result = run_arm(bench, ARMS["mme"], seed=0, budget=budget, out_dir=..., say=say)
    # {"probe": {"top1": …}, "finetune": {"top1": …}, "pretrain": {…} | None}
"""

from __future__ import annotations

import copy
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from maskvid.config import FinetuneConfig, PretrainConfig, from_dict

Say = Callable[[str], None]
CLIP = {"num_frames": 8, "stride": 2, "size": 64, "flip": False}  # the motion preset is direction-sensitive
# The decoder's attention starts local (models/locality.py): without it the micro MAE's loss sat on its trivial
# value through the whole pretraining budget, and the probes of pixel MAE were random init's (docs/demo.md)
MODEL = {"preset": "micro", "patch": [2, 8, 8], "decoder_locality": 2.0}
TUBE = {"mask": {"strategy": "tube", "ratio": 0.75}}
TRAJECTORY = {**TUBE, "target": {"name": "trajectory",  # MME's target, camera motion removed
                                 "options": {"k": 4, "length": 6, "flow_stride": 1, "camera": "klt"}}}


@dataclass(frozen=True)
class Budget:
    """How much of everything one demo or study run spends (the defaults: the full demo's, and a study's)."""

    pool: int = 400  # unlabelled pretraining videos
    train_per_class: int = 16  # labelled videos per class
    val_per_class: int = 30  # validation videos per class (10 classes: 300)
    pretrain_steps: int = 400  # of batch 8: the loss keeps falling with steps, not with bigger batches (docs/demo.md)
    batch_size: int = 8
    pretrain_lr: float = 1.5e-3  # AdamW peak, cosine after a warmup of steps/15 (the demo pretrains at 4e-4)
    finetune_epochs: int = 4
    seeds: int = 3
    frame_size: int = 64  # synthesized frame side


@dataclass(frozen=True)
class Arm:
    """One encoder initialization: ``pretrain`` overrides the base pretraining config (None: random init);
    ``finetune`` overrides the base fine-tuning config; ``tokenizer``: the arm reads the benchmark's VQ tokenizer
    (``{tokenizer}`` in any override string is replaced by its path)."""

    name: str
    pretrain: dict | None = None
    finetune: dict = field(default_factory=dict)
    tokenizer: bool = False


def merged(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s keys replaced, recursively into nested dicts (both left as they were)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _filled(values, tokenizer: str | None):
    if isinstance(values, dict):
        return {k: _filled(v, tokenizer) for k, v in values.items()}
    if isinstance(values, list):
        return [_filled(v, tokenizer) for v in values]
    return values.replace("{tokenizer}", tokenizer or "") if isinstance(values, str) else values


@dataclass
class Benchmark:
    """A synthesized benchmark directory (pool.csv, train.csv, val.csv, classes.txt) and its decoded probe clips."""

    root: str
    preset: str
    reused: bool
    seconds: float
    tokenizer: str | None = None
    _clips: tuple | None = None
    _encoded: dict = field(default_factory=dict)  # (tokenizer, patch) -> the probe clips' ids

    @classmethod
    def prepare(cls, cache_dir: str, preset: str, budget: Budget, say: Say, workers: int = 2,
                progress: bool = False) -> Benchmark:
        from maskvid.synth import SynthConfig, synthesize

        config = SynthConfig(preset=preset, train_per_class=budget.train_per_class,
                             val_per_class=budget.val_per_class, pool=budget.pool, size=budget.frame_size)
        name = f"synth-{preset}-{budget.frame_size}px-pool{budget.pool}-{budget.train_per_class}x{budget.val_per_class}"
        out = os.path.join(cache_dir, name)
        total = budget.pool + 10 * (budget.train_per_class + budget.val_per_class)
        start = time.perf_counter()
        with stage(say, f"synthesize {preset}: {total} videos into {out}") as done:
            bar = _bar(total, f"synth {preset}") if progress else None
            summary = synthesize(out, config, workers=workers,
                                 progress=(lambda i, n: bar.update(1)) if bar else None)
            if bar:
                bar.close()
            done("reused the videos already there (same parameters)" if summary["reused"] else "written")
        return cls(out, preset, summary["reused"], time.perf_counter() - start)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def fill_flow_cache(self, config: PretrainConfig, say: Say) -> None:
        """The pool's flows and camera homographies for a trajectory target (``config.data.cache``), extracted
        once and reused by every seed and rerun: MME pretrains at ~68 clips/s from it, ~27 tracking online."""
        from maskvid.extract import extract_flows

        with stage(say, f"flow cache of {self.preset}'s pool for trajectory targets") as done:
            report = extract_flows("trajectories", self.path("pool.csv"), config.data.cache, config)
            done(f"{report['built']} extracted, {report['already_valid']} already cached")

    def probe_clips(self, workers: int = 0):
        """The labelled training and validation clips (2 temporal views each), decoded once."""
        if self._clips is None:
            from maskvid.data import ClipTransform, VideoDataset
            from maskvid.engine.feature_probe import load_clips

            sets = []
            for name, views in (("train.csv", [2, 1]), ("val.csv", [2, 1])):
                dataset = VideoDataset.from_list(
                    self.path(name), classes=self.path("classes.txt"), sampling="multiview", views=views,
                    num_frames=CLIP["num_frames"], stride=CLIP["stride"], patch=tuple(MODEL["patch"]),
                    transform=ClipTransform(size=CLIP["size"], crop="centre", flip=False), bad_videos="skip")
                sets.append(load_clips(dataset, num_workers=workers))
            self._clips = tuple(sets)
        return self._clips

    def probe_inputs(self, method) -> tuple:
        """The probe clips as ``method``'s encoder reads them where that is a frozen tokenizer's ids: made once per
        (tokenizer, patch) and shared by every arm and seed (a study's probes spent most of their time making the
        same ids again); ``(None, None)`` where the encoder reads the clips themselves."""
        from maskvid.engine.feature_probe import encode_clips

        tokens = getattr(method, "tokens", None)
        if tokens is None or getattr(tokens, "frozen", None) is None:
            return None, None
        key = (tokens.tokenizer, tokens.patch)
        if key not in self._encoded:
            self._encoded[key] = tuple(encode_clips(clips, method.encoder_input) for clips in self.probe_clips())
        return self._encoded[key]


class stage:
    """``with stage(say, "pretrain MME seed 0") as done: …; done("loss 1.2 -> 0.4")`` prints one line when the
    stage starts and one when it ends, with its wall-clock time."""

    def __init__(self, say: Say, what: str):
        self.say, self.what, self.result = say, what, ""

    def __enter__(self):
        self.start = time.perf_counter()
        self.say(f"… {self.what}")
        return self._done

    def _done(self, result: str) -> None:
        self.result = result

    def __exit__(self, kind, error, trace):
        seconds = time.perf_counter() - self.start
        status = "failed" if kind else "done"
        self.say(f"✓ {self.what}: {status} in {seconds:.0f} s" + (f" — {self.result}" if self.result else ""))
        return False


def start_session(workers: int, say: Say | None, progress: bool | None) -> tuple[Say, bool]:
    """What a demo or study run sets up first: torch takes the cores the ``workers`` data processes leave
    (oversubscribing 2 cores ran ~10x slower), stage lines go to stderr, progress bars only on a terminal."""
    import sys

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    return say, sys.stderr.isatty() if progress is None else progress


def _bar(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, leave=False)


def pretrain_config(bench: Benchmark, arm: Arm, seed: int, budget: Budget, out: str, workers: int,
                    progress: bool) -> PretrainConfig:
    steps = budget.pretrain_steps
    base = {
        "output_dir": out, "seed": seed,
        "data": {"train_list": bench.path("pool.csv"), "crop": "multiscale", "motion_source": "codec", **CLIP},
        "mask": {"strategy": "tube", "ratio": 0.75},
        "target": {"name": "pixels"},
        "model": {**MODEL, "decoder_width": 64, "decoder_depth": 1, "decoder_heads": 2},
        "optim": {"lr": budget.pretrain_lr, "warmup_steps": max(1, steps // 15)},
        "train": {"epochs": 10_000, "max_steps": steps, "schedule_steps": steps, "batch_size": budget.batch_size,
                  "num_workers": workers, "checkpoint_every": steps, "log_every": 10, "progress": progress},
    }
    values = merged(base, arm.pretrain or {})
    if (values.get("target") or {}).get("name") == "trajectory":  # read from the pool's flow cache, not tracked online
        values["data"].setdefault("cache", bench.path("flowcache"))
    return from_dict(PretrainConfig, _filled(values, bench.tokenizer))


def finetune_config(bench: Benchmark, arm: Arm, seed: int, budget: Budget, out: str, init: str | None,
                    workers: int, progress: bool) -> FinetuneConfig:
    base = {
        "output_dir": out, "seed": seed, "init": init,
        "data": {"train_list": bench.path("train.csv"), "val_list": bench.path("val.csv"),
                 "classes": bench.path("classes.txt"), "crop": "multiscale", "test_views": [2, 1], **CLIP},
        "model": {**MODEL, "drop_path": 0.0},
        "head": {"kind": "linear"},
        "mixup": {"mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0},  # too few clips for mixing to pay off
        "optim": {"lr": 1e-3, "layer_decay": 1.0, "warmup_steps": 20, "betas": [0.9, 0.999]},
        "train": {"epochs": budget.finetune_epochs, "batch_size": 8, "num_workers": workers,
                  "checkpoint_every": 100_000, "log_every": 10, "progress": progress},
    }
    return from_dict(FinetuneConfig, _filled(merged(base, arm.finetune), bench.tokenizer))


def run_arm(bench: Benchmark, arm: Arm, seed: int, budget: Budget, out_dir: str, say: Say,
            stages: tuple[str, ...] = ("probe", "finetune"), workers: int = 2, progress: bool = False) -> dict:
    """Pretrain ``arm`` on the pool (unless random), then probe and/or fine-tune it on the labelled set."""
    import torch

    from maskvid.finetune_recipes import build_finetune_method, finetune, init_from_pretrained
    from maskvid.recipes import pretrain

    run = os.path.join(out_dir, f"{slug(arm.name)}-seed{seed}")
    shutil.rmtree(run, ignore_errors=True)  # a rerun starts afresh: no stale checkpoint is resumed or reported
    result: dict = {"arm": arm.name, "seed": seed, "pretrain": None}
    init = None
    if arm.pretrain is not None:
        config = pretrain_config(bench, arm, seed, budget, os.path.join(run, "pretrain"), workers, progress)
        if config.data.cache:
            bench.fill_flow_cache(config, say)
        with stage(say, f"pretrain {arm.name} (seed {seed}, {budget.pretrain_steps} steps)") as done:
            trained = pretrain(config)
            done(f"loss {trained.first_loss:.3f} -> {trained.last_loss:.3f}, {trained.clips_per_s:.0f} clips/s")
        init = trained.run_dir
        result["pretrain"] = {"run_dir": trained.run_dir, "steps": trained.step, "seconds": trained.seconds,
                              "first_loss": trained.first_loss, "last_loss": trained.last_loss,
                              "clips_per_s": trained.clips_per_s, "status": trained.status,
                              "bad_videos": trained.bad_videos}
    tuning = finetune_config(bench, arm, seed, budget, os.path.join(run, "finetune"), init, workers, progress)
    if "probe" in stages:
        from maskvid.engine.feature_probe import embed, probe

        with stage(say, f"linear probe {arm.name} (seed {seed})") as done:
            (train, val) = bench.probe_clips()
            classes = int(max(train.labels.max(), val.labels.max())) + 1
            torch.manual_seed(seed)
            method = build_finetune_method(tuning, classes)  # only its encoder is used, as pretrained or random
            init_from_pretrained(method, tuning)
            features = [embed(method.encoder, clips, encoder_input=method.encoder_input, encoded=encoded)
                        for clips, encoded in zip((train, val), bench.probe_inputs(method), strict=True)]
            report = probe(features[0], train.labels, features[1], val.labels, num_classes=classes, seed=seed)
            report["bad_videos"] = {**train.skipped, **val.skipped}
            done(f"top-1 {report['top1']:.3f} on {report['videos']} videos")
        result["probe"] = report
    if "finetune" in stages:
        with stage(say, f"fine-tune {arm.name} (seed {seed}, {budget.finetune_epochs} epochs)") as done:
            report = finetune(tuning)
            done(f"top-1 {report['eval']['top1']:.3f} on {report['eval']['videos']} videos")
        result["finetune"] = {"top1": report["eval"]["top1"], "top5": report["eval"]["top5"],
                              "videos": report["eval"]["videos"], "seconds": report["train"]["seconds"],
                              "run_dir": report["train"]["run_dir"], "bad_videos": report["eval"]["bad_videos"]}
    return result


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for one value) of per-seed figures, and the figures."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def cell(x: dict) -> str:
    """A table cell: ``mean ± std`` over seeds (the mean alone for one seed)."""
    return f"{x['mean']:.3f} ± {x['std']:.3f}" if len(x["values"]) > 1 else f"{x['mean']:.3f}"


def beats(a: dict, b: dict) -> bool:
    """Whether ``a``'s mean exceeds ``b``'s by more than 2 standard deviations of the seeds (the larger of the two);
    with one seed there is no spread to judge by, and the answer is False."""
    spread = max(a["std"], b["std"])
    return min(len(a["values"]), len(b["values"])) > 1 and a["mean"] - b["mean"] > 2 * spread
