"""The ``maskvid`` command line's arguments: one subparser per command (:mod:`maskvid.cli` runs them)."""

from __future__ import annotations

import argparse
import os


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskvid", description="Masked video pretraining and fine-tuning.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write the synthetic benchmark (real H.264 MP4s + lists)")
    p.add_argument("out", help="output directory")
    p.add_argument("--preset", choices=["motion", "appearance"], default="motion")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=16)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--pool", type=int, default=0, help="unlabeled videos for pretraining (pool.csv), classes balanced")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels (multiple of 16)")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="encoding processes (default: up to 4)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("probe-video", help="codec, frames, fps, size, rotation, how frames are addressed, "
                       "whether motion vectors are present")
    p.add_argument("video")
    p.add_argument("--verify", action="store_true",
                   help="also decode the file sequentially and check maskvid's frames against it (exit 1 if any "
                        "differs)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("prepare", help="re-encode a list's videos for training: H.264 with B-frames and a fixed GOP "
                       "(codec motion vectors), short side resized, faststart, no audio; writes the new list")
    p.add_argument("list", help="annotation list of the videos (labels optional; every field is kept)")
    p.add_argument("out", help="output directory: videos/, the new list (same file name), prepare.log.jsonl")
    p.add_argument("--root", default=None, help="prefix for relative paths in the list (default: the list's folder)")
    p.add_argument("--short-side", type=int, default=320, help="short side in pixels, never enlarged (default 320)")
    p.add_argument("--gop", type=int, default=32, help="frames between keyframes, fixed (default 32)")
    p.add_argument("--bframes", type=int, default=3, help="B-frames between references (default 3, x264's)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better (default 23)")
    p.add_argument("--x264-preset", default="medium", help="x264 speed preset (default medium)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="encoding processes (default: all cores)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="this machine's share of the list (default: torchrun's rank, else all); a shard writes no "
                        "list: run once more without --shard, which keeps every copy and writes it")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("mask", help="mask one clip of a video, score it against the motion, draw it")
    p.add_argument("video")
    p.add_argument("--strategy", default="tube", help="a name from maskvid.masking.available() (default: tube)")
    p.add_argument("--ratio", type=float, default=None, help="masking ratio (default: the strategy's own)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other strategy option, e.g. variant=sparse, cell=[2,2]; repeatable")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--start", type=int, default=None, help="first frame (default: the clip is centred)")
    p.add_argument("--size", type=int, default=224, help="short side resize + centre crop")
    p.add_argument("--patch", type=int, nargs=3, default=[2, 16, 16], metavar=("T", "P", "P"))
    p.add_argument("--source", choices=["codec", "flow"], default=None,
                   help="motion for guidance and the score (default: the strategy's, else codec vectors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write a PNG: frames with masked tokens shaded, motion below")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("pretrain", help="masked-video pretraining from a YAML config (configs/pretrain/)")
    _add_run_arguments(p, "optim.lr=1e-3 or train.max_steps=100")

    p = sub.add_parser("check-routing", help="can a config's model learn to fetch a masked token's content from "
                       "the visible token holding it? Trains it on identical-frame clips; reports where the loss "
                       "leaves the trivial plateau")
    p.add_argument("--config", required=True, help="pretraining YAML config (its model, clip shape and AdamW)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. model.pos_embed=rope; repeatable")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="constant lr (default: the config's optim.lr, else 1e-3)")
    p.add_argument("--content", choices=("copy", "smooth"), default="copy",
                   help="copy: identical frames, random masks (the answer is in another frame); smooth: static "
                   "noise smoothed over a patch, tube masks (neighbours predict it: does the decoder use them?)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train-tokenizer", help="train the VQ-VAE tokenizer (method: vqvae) on the frames of a list")
    _add_run_arguments(p, "tokenizer.codebook_size=512")

    p = sub.add_parser("convert-tokenizer", help="a published VQGAN (taming) or DALL-E dVAE checkpoint -> one "
                       "maskvid .safetensors (target option tokenizer: PATH)")
    p.add_argument("src", help="taming's last.ckpt, DALL-E's encoder.pkl, a state dict or a .safetensors")
    p.add_argument("out", help="the .safetensors to write")
    p.add_argument("--format", required=True, choices=["vqgan", "dalle"])
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling SRC (it can run code): needed for the published pickles, once")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("finetune", help="fine-tune, linear-probe or MAR from a YAML config (configs/finetune/)")
    _add_run_arguments(p, "init=runs/mgm_micro or head.kind=probe")

    p = sub.add_parser("evaluate", help="multi-view top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("--config", required=True, help="the fine-tuning config (data.val_list, data.test_views, ...)")
    p.add_argument("--checkpoint", required=True, help="a run directory or one of its checkpoints")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("extract", help="precompute the flow cache of trajectory targets (data.cache) or the token "
                       "cache (data.tokens_cache)")
    p.add_argument("kind", choices=["trajectories", "flow", "tokens"],
                   help="trajectories: flow + camera homographies with the config's tracking options; flow: no "
                        "camera removal; tokens: VQ ids of every frame in fixed views")
    p.add_argument("--list", required=True, help="annotation list of the videos (labels optional)")
    p.add_argument("--out", required=True, help="the cache directory (data.cache)")
    p.add_argument("--config", default=None, help="the pretraining config whose trajectory target it serves")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--root", default=None, help="prefix for relative paths in the list")
    p.add_argument("--decode-size", type=int, default=None, help="short side to decode at (default: the "
                   "config's data.decode_size, else native) — must match the run's")
    p.add_argument("--shard", default=None, metavar="I/N", help="this process's share (default: torchrun's rank)")
    p.add_argument("--device", default="cpu", help="where RAFT flow or the tokenizer runs (cuda)")
    p.add_argument("--tokenizer", default=None, help="tokens: a maskvid tokenizer .safetensors (default: the "
                   "config's tokens head's)")
    p.add_argument("--size", type=int, default=None, help="tokens: the clips' side (default: data.size)")
    p.add_argument("--patch", type=int, default=None, help="tokens: patch side, one id each (default: the model's)")
    p.add_argument("--scales", default="1.0", help="tokens: short side at these × size, e.g. 1.0,1.25 (VIMPAC)")
    p.add_argument("--crops", default="center", help="tokens: crop positions, of center,top_left,bottom_right")
    p.add_argument("--flip", action="store_true", help="tokens: every view flipped too")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("visualize", help="draw MME trajectories of a clip (camera removal on/off, or true vs "
                       "predicted from a checkpoint), or a MAM² run's predicted tokens and RGB difference")
    p.add_argument("what", choices=["trajectories", "mam2"])
    p.add_argument("video")
    p.add_argument("--out", default=None, help="PNG (side by side) or GIF (step by step)")
    p.add_argument("--checkpoint", default=None, help="an MME run directory or checkpoint: true vs predicted")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--start", type=int, default=None, help="first frame of the clip (default 0)")
    p.add_argument("--tubelet", type=int, default=0, help="which temporal slice's trajectories to draw")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="speed ratios against a reference, measured in the same run")
    p.add_argument("what", choices=["data", "masking", "targets", "tokens", "model", "mar", "vimpac"])
    p.add_argument("--clips", type=int, default=40, help="clips per loader")
    p.add_argument("--videos", type=int, default=8, help="source videos to generate")
    p.add_argument("--workdir", default=None, help="where the benchmark videos go (default: a temporary dir)")
    p.add_argument("--shape", choices=["micro", "small", "small_256", "base", "large"], default=None,
                   help="model/mar/tokens: ViT size at 16x224² (micro: the CPU test size); default small (model), "
                        "base (mar, tokens); vimpac: micro, small (default; small_256: 256² frames), large")
    p.add_argument("--batch", type=int, default=None, help="model/mar/tokens/vimpac: clips (vimpac: clip pairs) per "
                                                            "step (default 2 / 1 / 1 / 2)")
    p.add_argument("--steps", type=int, default=None, help="model/mar/vimpac: timed steps per variant "
                                                            "(default 5 / 2 / 3)")
    p.add_argument("--workers", type=worker_counts, default=(1,), metavar="N,N,...",
                   help="data: loader processes to measure the pretraining loader with, e.g. 1,2,4 (default 1)")
    p.add_argument("--device", default="cpu", help="model/tokens/vimpac: where the steps run (cuda)")
    p.add_argument("--workloads", type=workload_names, default=None, metavar="NAME,...",
                   help="model: also time these training steps, with model FLOPs and MFU: videomae, hf_videomae, "
                        "mgm, mar50, finetune, hf_finetune, or all")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="model workloads: autocast (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="model workloads: torch.compile each model")
    p.add_argument("--grad-checkpointing", action="store_true", help="model workloads: recompute activations")
    p.add_argument("--max-batch", action="store_true",
                   help="model, CUDA: the largest VideoMAE pretraining batch that fits, with and without "
                        "gradient checkpointing")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("demo", help="the main job on the built-in synthetic data")
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "maskvid", "demo"))
    p.add_argument("--quick", action="store_true", help="one seed, a smaller pool and budget (about 2 minutes)")
    p.add_argument("--workers", type=int, default=1, help="data-loader processes; torch takes the other cores")
    p.add_argument("--json", action="store_true", help="print the report (every figure) as JSON")
    p = sub.add_parser("study", help="an ablation pair from the seed papers on the synthetic benchmark")
    p.add_argument("pair", nargs="?", help="the pair to run (--list shows them)")
    p.add_argument("--list", action="store_true", help="the pairs and the tables they repeat")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=None, help="where study.md, study.png and study.json go (default: "
                   "CACHE_DIR/studies/PAIR)")
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "maskvid", "demo"),
                   help="where the benchmark videos are kept and reused (shared with the demo)")
    p.add_argument("--workers", type=int, default=1, help="data-loader processes; torch takes the other cores")
    p.add_argument("--json", action="store_true")
    return parser


def _add_run_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """The arguments every training command shares."""
    p.add_argument("--config", default=None, help="YAML config; with --resume, defaults to RUN_DIR/config.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key, e.g. {example}; repeatable")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR exactly from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _version() -> str:
    from maskvid import __version__

    return f"maskvid {__version__}"


def worker_counts(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``."""
    try:
        counts = tuple(int(x) for x in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected counts >= 1 separated by commas, e.g. 1,2,4")
    return counts


def workload_names(text: str) -> tuple[str, ...]:
    """``"videomae,mgm"`` or ``"all"`` -> workload names."""
    from maskvid.bench.workloads import WORKLOADS

    names = WORKLOADS if text == "all" else tuple(x for x in text.split(",") if x)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(WORKLOADS)} or all")
    return names

