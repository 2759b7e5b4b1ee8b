"""``maskvid`` command line: each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from maskvid.cli_output import (
    extract_text,
    print_bad_videos,
    print_eval,
    progress_callback,
    score_text,
    tokenizer_text,
)
from maskvid.errors import ConfigError, MaskvidError


def cmd_synth(args: argparse.Namespace) -> int:
    from maskvid.synth import SynthConfig, synthesize

    config = SynthConfig(
        preset=args.preset,
        classes=args.classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        size=args.size,
        frames=args.frames,
        seed=args.seed,
    )
    summary = synthesize(args.out, config, workers=args.workers, progress=progress_callback("synthesizing"))
    if args.json:
        print(json.dumps(summary))
    else:
        verb = "reused" if summary["reused"] else "wrote"
        print(f"{verb} {summary['train']} train + {summary['val']} val videos ({args.preset}) in {args.out}")
    return 0


def cmd_probe_video(args: argparse.Namespace) -> int:
    from maskvid.data.decode import probe_video

    info = dataclasses.asdict(probe_video(args.video, check_motion_vectors=True))
    if args.verify:
        from maskvid.data.verify import verify_decoding

        check = verify_decoding(args.video)
        info["verify"] = {"sequential_frames": check.sequential_frames, "calls": check.calls, "exact": check.exact,
                          "wrong": check.wrong, "ok": check.ok}
    failed = 1 if args.verify and not info["verify"]["ok"] else 0
    if args.json:
        print(json.dumps(info))
        return failed
    for key, value in info.items():
        if key != "verify":
            print(f"{key:>17}: {value}")
    if args.verify:
        v = info["verify"]
        print(f"{'verify':>17}: {v['exact']}/{v['calls']} calls equal a sequential decode "
              f"({v['sequential_frames']} frames)" + "".join(f"\n{'':>19}differs: {w}" for w in v["wrong"]))
    return failed


def _option_value(text: str):
    """``--option k=v`` values: JSON where it parses (numbers, lists, true/false), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_mask(args: argparse.Namespace) -> int:
    from maskvid.mask_report import mask_video

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("mask.option", f"{item!r} is not key=value")
        options[key] = _option_value(value)
    if args.ratio is not None:
        options["ratio"] = args.ratio
    report = mask_video(args.video, args.strategy, frames=args.frames, stride=args.stride, size=args.size,
                        patch=tuple(args.patch), start=args.start, source=args.source, seed=args.seed, **options)
    summary = report.summary()
    if args.out:
        from maskvid.viz import draw_mask

        score = "n/a" if summary["motion_score"] is None else f"{summary['motion_score']:.2f}"
        title = f"{args.strategy}: {summary['masked']}/{summary['tokens']} tokens masked, motion score {score}"
        summary["picture"] = draw_mask(report.frames, report.mask, report.motion, args.out, title)
    if args.json:
        print(json.dumps(summary))
        return 0
    score = summary["motion_score"]
    print(f"{args.video}: {args.strategy} on grid {tuple(summary['grid'])} ({report.source} motion)")
    print(f"  masked {summary['masked']} of {summary['tokens']} tokens, ratio {summary['ratio']:.4f}")
    print(f"  per slice: {summary['masked_per_slice']}")
    print(f"  motion inside / outside: {summary['motion_inside']} / {summary['motion_outside']}"
          f" -> score {score_text(score, summary['motion_inside'])}")
    if summary["fallbacks"]:
        print("  no motion in this clip: the guided mask fell back to smm")
    if args.out:
        print(f"  picture: {summary['picture']}")
    return 0


def _run_config(args: argparse.Namespace, kind=None, where: str = "configs/pretrain/"):
    """``--config`` + ``--set`` (+ ``--resume RUN_DIR``: its config.yaml and output_dir) → a typed config."""
    from maskvid.config import load_config

    config_path, overrides = args.config, list(args.set)
    if getattr(args, "resume", None):
        config_path = config_path or os.path.join(args.resume, "config.yaml")
        overrides.append(f"output_dir={args.resume}")
    if config_path is None:
        raise ConfigError("--config", f"give a config file (see {where}) or --resume RUN_DIR")
    return load_config(config_path, overrides, kind=kind)


def _finetune_config(args: argparse.Namespace):
    from maskvid.config import FinetuneConfig

    return _run_config(args, FinetuneConfig, "configs/finetune/")


def cmd_pretrain(args: argparse.Namespace) -> int:
    from maskvid.recipes import pretrain

    result = pretrain(_run_config(args), resume=bool(args.resume))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0 if result.status == "finished" else 3
    summary = dataclasses.asdict(result)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{result.status} at step {result.step} in {result.seconds:.1f} s ({result.clips_per_s:.1f} clips/s): "
              f"loss {result.first_loss} -> {result.last_loss}")
        print(f"  run directory: {result.run_dir}   checkpoint: {result.checkpoint}")
        print_bad_videos("training", result.bad_videos)
    return 0 if result.status == "finished" else 3


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from maskvid.recipes import train_tokenizer

    report = train_tokenizer(_run_config(args, where="configs/tokenizer/"), resume=bool(args.resume))
    print(json.dumps(report) if args.json else tokenizer_text(report))
    return 0 if report["status"] == "finished" else 3


def cmd_convert_tokenizer(args: argparse.Namespace) -> int:
    from maskvid.tokenizer_convert import convert_tokenizer

    report = convert_tokenizer(args.src, args.out, args.format, trust_pickle=args.trust_pickle)
    print(json.dumps(report) if args.json else
          f"{report['format']}: factor {report['factor']}, {report['vocab_size']} codes, {report['tensors']} tensors "
          f"kept ({report['dropped']} dropped: decoder, loss, ...) -> {report['out']}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from maskvid.recipes import finetune

    report = finetune(_finetune_config(args), resume=bool(args.resume))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0 if report["train"]["status"] == "finished" else 3
    if args.json:
        print(json.dumps(report))
    else:
        t = report["train"]
        print(f"{t['status']} at step {t['step']} in {t['seconds']:.1f} s ({t['clips_per_s']:.1f} clips/s): "
              f"loss {t['first_loss']} -> {t['last_loss']}")
        if report["init"]:
            print(f"  initialised from {report['init']['source']} ({report['init']['loaded']} tensors)")
        print(f"  run directory: {t['run_dir']}")
        print_bad_videos("training", t["bad_videos"])
        if "eval" in report:
            print_eval(report["eval"])
    return 0 if report["train"]["status"] == "finished" else 3


def cmd_evaluate(args: argparse.Namespace) -> int:
    from maskvid.recipes import evaluate_checkpoint

    config = _finetune_config(args)
    report = evaluate_checkpoint(config, args.checkpoint)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['checkpoint']}:")
        print_eval(report)
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from maskvid.config import PretrainConfig, load_config
    from maskvid.extract import TokenOptions, extract_flows, extract_tokens, shard_of

    config = load_config(args.config, args.set, PretrainConfig) if args.config else None
    shard = shard_of(args.shard)
    progress = progress_callback(f"extract {args.kind} (shard {shard[0]}/{shard[1]})")
    if args.kind == "tokens":
        options = TokenOptions(args.tokenizer, args.size, args.patch, tuple(float(s) for s in args.scales.split(",")),
                               tuple(args.crops.split(",")), args.flip)
        report = extract_tokens(args.list, args.out, options, config, args.root, args.decode_size, shard, progress,
                                args.device)
    else:
        report = extract_flows(args.kind, args.list, args.out, config, args.root, args.decode_size, shard,
                               progress=progress, device=args.device)
    if args.json:
        print(json.dumps(report))
    else:
        print(extract_text(report))
        print_bad_videos("extraction", dict(report["bad"]))
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from maskvid.trajectory_report import predicted_trajectories, trajectory_clip
    from maskvid.viz import draw_panels, draw_trajectories

    if args.what == "mam2":
        from maskvid.mam2_report import mam2_clip

        if not args.checkpoint:
            raise ConfigError("--checkpoint", "visualize mam2 shows a trained MAM²'s predictions: give its run")
        mam2 = mam2_clip(args.video, args.checkpoint, args.start)
        picture = draw_panels(mam2.panels, args.out, f"{os.path.basename(args.video)}: MAM² on the masked "
                              "patches") if args.out else None
        print(json.dumps({**mam2.metrics, "picture": picture}) if args.json else mam2.describe(picture))
        return 0
    if args.checkpoint:
        report = predicted_trajectories(args.video, args.checkpoint, args.start, args.tubelet)
        title = f"{os.path.basename(args.video)}: masked patches, true vs predicted (slice {args.tubelet})"
    else:
        report = trajectory_clip(args.video, args.size, frames=args.frames, stride=args.stride, start=args.start,
                                 tubelet=args.tubelet)
        title = f"{os.path.basename(args.video)} frames {report.indices[0]}+: camera removal on / off"
    picture = draw_trajectories(report.frames, report.starts, report.tracks, args.out, report.masked,
                                title) if args.out else None
    print(json.dumps({**report.summary(), "picture": picture}) if args.json else report.describe(picture))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from maskvid import bench

    result = bench.run(args.what, args)
    print(json.dumps(result) if args.json else bench.format_result(args.what, result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from maskvid.demo import run_demo

    result = run_demo(cache_dir=args.cache_dir, quick=args.quick)
    print(json.dumps(result) if args.json else result["table"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskvid", description="Masked video pretraining and fine-tuning.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write the synthetic benchmark (real H.264 MP4s + lists)")
    p.add_argument("out", help="output directory")
    p.add_argument("--preset", choices=["motion", "appearance"], default="motion")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=16)
    p.add_argument("--val-per-class", type=int, default=4)
    p.add_argument("--size", type=int, default=128, help="frame side in pixels (multiple of 16)")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="encoding processes (default: up to 4)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("probe-video", help="codec, frames, fps, size, rotation, how frames are addressed, "
                       "whether motion vectors are present")
    p.add_argument("video")
    p.add_argument("--verify", action="store_true",
                   help="also decode the file sequentially and check maskvid's frames against it (exit 1 if any "
                        "differs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_probe_video)

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
    p.set_defaults(func=cmd_mask)

    p = sub.add_parser("pretrain", help="masked-video pretraining from a YAML config (configs/pretrain/)")
    _add_run_arguments(p, "optim.lr=1e-3 or train.max_steps=100")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train-tokenizer", help="train the VQ-VAE tokenizer (method: vqvae) on the frames of a list")
    _add_run_arguments(p, "tokenizer.codebook_size=512")
    p.set_defaults(func=cmd_train_tokenizer)

    p = sub.add_parser("convert-tokenizer", help="a published VQGAN (taming) or DALL-E dVAE checkpoint -> one "
                       "maskvid .safetensors (target option tokenizer: PATH)")
    p.add_argument("src", help="taming's last.ckpt, DALL-E's encoder.pkl, a state dict or a .safetensors")
    p.add_argument("out", help="the .safetensors to write")
    p.add_argument("--format", required=True, choices=["vqgan", "dalle"])
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling SRC (it can run code): needed for the published pickles, once")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert_tokenizer)

    p = sub.add_parser("finetune", help="fine-tune, linear-probe or MAR from a YAML config (configs/finetune/)")
    _add_run_arguments(p, "init=runs/mgm_tiny or head.kind=probe")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="multi-view top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("--config", required=True, help="the fine-tuning config (data.val_list, data.test_views, ...)")
    p.add_argument("--checkpoint", required=True, help="a run directory or one of its checkpoints")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_extract)

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
    p.set_defaults(func=cmd_visualize)

    p = sub.add_parser("bench", help="speed ratios against a reference, measured in the same run")
    p.add_argument("what", choices=["data", "masking", "targets", "tokens", "model", "mar"])
    p.add_argument("--clips", type=int, default=40, help="clips per loader")
    p.add_argument("--videos", type=int, default=8, help="source videos to generate")
    p.add_argument("--workdir", default=None, help="where the benchmark videos go (default: a temporary dir)")
    p.add_argument("--shape", choices=["tiny", "small", "base"], default=None,
                   help="model/mar/tokens: ViT size at 16x224² (tiny: CPU test size); default small (model), "
                        "base (mar, tokens)")
    p.add_argument("--batch", type=int, default=None, help="model/mar/tokens: clips per step (default 2 / 1 / 1)")
    p.add_argument("--steps", type=int, default=None, help="model/mar: timed steps per variant (default 5 / 2)")
    p.add_argument("--device", default="cpu", help="tokens: where tokenizers and the model step run (cuda)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the main job on the built-in synthetic data")
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "maskvid", "demo"))
    p.add_argument("--quick", action="store_true", help="a smaller run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MaskvidError as e:
        print(f"maskvid {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
