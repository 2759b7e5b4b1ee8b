"""``maskvid`` command line: each subcommand calls one library function with its parsed arguments (the arguments
themselves: :mod:`maskvid.cli_arguments`; what is printed: :mod:`maskvid.cli_output`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from maskvid.cli_arguments import build_parser
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
        pool=args.pool,
        size=args.size,
        frames=args.frames,
        seed=args.seed,
    )
    summary = synthesize(args.out, config, workers=args.workers, progress=progress_callback("synthesizing"))
    if args.json:
        print(json.dumps(summary))
    else:
        verb = "reused" if summary["reused"] else "wrote"
        pool = f" + {summary['pool_videos']} unlabeled (pool.csv)" if summary["pool_videos"] else ""
        print(f"{verb} {summary['train']} train + {summary['val']} val{pool} videos ({args.preset}) in {args.out}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from maskvid.data.prepare import PrepareConfig, prepare
    from maskvid.extract import shard_of

    config = PrepareConfig(short_side=args.short_side, gop=args.gop, bframes=args.bframes, crf=args.crf,
                           x264_preset=args.x264_preset)
    summary = prepare(args.list, args.out, config, root=args.root, workers=args.workers,
                      progress=progress_callback("preparing"), shard=shard_of(args.shard))
    if args.json:
        print(json.dumps(summary))
    else:
        index, count = summary["shard"]
        share = f" (shard {index}/{count})" if count > 1 else ""
        print(f"prepared {summary['videos']} videos{share} in {summary['seconds']} s: {summary['encoded']} encoded, "
              f"{summary['kept']} kept from an earlier run, {summary['failed']} failed")
        written = summary["list"] or "none from a shard: once every shard is done, run prepare once more without " \
                                     "--shard to write it"
        print(f"  new list: {written}\n  log: {summary['log']}")
        print_bad_videos("the list", summary["bad"])
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
        _resume_hint("pretrain", result.status, result.run_dir)
        print_bad_videos("training", result.bad_videos)
    return 0 if result.status == "finished" else 3


def _resume_hint(command: str, status: str, run_dir: str) -> None:
    if status == "interrupted":
        print(f"  stopped by a signal with this step saved: `maskvid {command} --resume {run_dir}` goes on")


def cmd_check_routing(args: argparse.Namespace) -> int:
    from maskvid.routing_check import check_routing, routing_text

    show = None if args.json else (lambda step, loss: print(f"  step {step}: {loss:.4f}", file=sys.stderr))
    report = check_routing(_run_config(args), steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                           progress=show, content=args.content)
    print(json.dumps(report.to_dict()) if args.json else routing_text(report))
    return 0


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
    from maskvid.finetune_recipes import finetune

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
        _resume_hint("finetune", t["status"], t["run_dir"])
        print_bad_videos("training", t["bad_videos"])
        if "eval" in report:
            print_eval(report["eval"])
    return 0 if report["train"]["status"] == "finished" else 3


def cmd_evaluate(args: argparse.Namespace) -> int:
    from maskvid.finetune_recipes import evaluate_checkpoint

    config = _finetune_config(args)
    report = evaluate_checkpoint(config, args.checkpoint)  # under torchrun the ranks share the videos
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
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

    result = run_demo(cache_dir=args.cache_dir, quick=args.quick, workers=args.workers)
    print(json.dumps(result) if args.json else result["table"])
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from maskvid.study import available, run_study

    if args.list or not args.pair:
        pairs = available()
        print(json.dumps(pairs) if args.json else "\n".join(f"{k:<24}{v}" for k, v in pairs.items()))
        return 0
    out = args.out or os.path.join(args.cache_dir, "studies", args.pair)
    report = run_study(args.pair, args.cache_dir, out, seeds=args.seeds, workers=args.workers)
    written = ", ".join(report["files"].values())
    print(json.dumps(report) if args.json else f"{report['markdown']}\n\nwritten: {written}")
    return 0


COMMANDS = {
    "synth": cmd_synth,
    "prepare": cmd_prepare,
    "probe-video": cmd_probe_video,
    "mask": cmd_mask,
    "pretrain": cmd_pretrain,
    "check-routing": cmd_check_routing,
    "train-tokenizer": cmd_train_tokenizer,
    "convert-tokenizer": cmd_convert_tokenizer,
    "finetune": cmd_finetune,
    "evaluate": cmd_evaluate,
    "extract": cmd_extract,
    "visualize": cmd_visualize,
    "bench": cmd_bench,
    "demo": cmd_demo,
    "study": cmd_study,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MaskvidError as e:
        print(f"maskvid {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
