"""``bench model --workloads``: the model-FLOP count agrees with transformers' own models of the same shape, MFU is
reported against a spec-sheet peak or, where none is known (a CPU), the matmul rate measured in the same run, and
the largest-batch search finds the boundary."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from maskvid.bench.workloads import (
    WORKLOADS,
    bench_workloads,
    device_peak,
    largest_batch,
    matmul_tflops,
    max_batch,
)
from maskvid.cli import main


@pytest.fixture(scope="module")
def micro():
    return bench_workloads("micro", batch=2, steps=1)


def test_every_workload_is_timed_and_counted(micro):
    assert set(micro["workloads"]) == set(WORKLOADS)
    for r in micro["workloads"].values():
        assert r["clips_per_s"] > 0 and r["gflops_per_clip"] > 0
        assert r["device_reads_per_step"] is None  # nothing waits for a CPU
    assert set(micro["vs_hf"]) == {"videomae", "finetune"}


def test_on_a_cpu_mfu_is_against_the_matmul_rate_measured_in_the_run(micro):
    setup = micro["setup"]
    assert setup["peak_source"] == "measured matmul" and setup["peak_tflops"] == setup["matmul_tflops"] > 0
    for r in micro["workloads"].values():
        assert r["mfu"] == pytest.approx(r["achieved_tflops"] / setup["matmul_tflops"])
    # the ceiling over transformers is the matmul rate over transformers' achieved rate, on the task's FLOPs
    w = micro["workloads"]
    for ours in ("videomae", "finetune"):
        theirs = w[f"hf_{ours}"]["achieved_tflops"]
        assert micro["ceiling_vs_hf"][ours] == pytest.approx(setup["matmul_tflops"] / theirs)
        assert micro["ceiling_vs_hf"][ours] == pytest.approx(w[ours]["achieved_tflops"] / theirs / w[ours]["mfu"])


def test_matmul_rate_counts_two_flops_a_multiply_add(monkeypatch):
    """A matmul timed at exactly 1 s gives 2·n³ FLOP/s: the rate is computed, not assumed."""
    from maskvid.bench import workloads

    clock = iter(range(100))
    monkeypatch.setattr(workloads.time, "perf_counter", lambda: float(next(clock)))
    assert matmul_tflops(torch.device("cpu"), size=64, repeats=2) == pytest.approx(2 * 64**3 / 1e12)
    assert matmul_tflops(torch.device("cpu"), precision="bf16", size=128, repeats=1) > 0


def test_flops_match_the_hugging_face_models_of_the_same_shape(micro):
    w = micro["workloads"]
    # the same function computed by two implementations: all tokens, the same count exactly
    assert w["finetune"]["gflops_per_clip"] == pytest.approx(w["hf_finetune"]["gflops_per_clip"], rel=1e-9)
    # pretraining: transformers also embeds the masked tubelets (forward and weight gradient), maskvid does not
    embed = 2 * (3 * 2 * 16 * 16) * 96 / 1e9  # GFLOPs to embed one tubelet of the micro model
    masked = round(0.9 * 64)
    extra = w["hf_videomae"]["gflops_per_clip"] - w["videomae"]["gflops_per_clip"]
    assert 0 < extra <= 2 * embed * masked
    assert w["hf_videomae"]["model_gflops_per_clip"] == w["videomae"]["gflops_per_clip"]  # MFU on the task's FLOPs


def test_base_pretraining_flops_are_videomaes():
    """ViT-B VideoMAE at 16x224², 90% masked: ~57 GMAC encoder + decoder forward, x3 with backward (our own count
    against a hand count: 2·params·tokens for the linears plus attention)."""
    from maskvid.bench.workloads import model_flops

    flops = model_flops("videomae", "base", torch.device("cpu"), "fp32")
    visible, total = 157, 1568  # tokens the encoder and the decoder see
    encoder = 12 * (2 * 12 * 768**2 * visible + 4 * visible**2 * 768)
    decoder = 4 * (2 * 12 * 384**2 * total + 4 * total**2 * 384)
    hand = 3 * (encoder + decoder)  # backward costs twice the forward
    assert flops == pytest.approx(hand, rel=0.08)


@given(st.integers(0, 3000), st.integers(1, 2048))
def test_largest_batch_finds_the_boundary(threshold, limit):
    calls = []

    def fits(batch):
        calls.append(batch)
        return batch <= threshold

    assert largest_batch(fits, limit) == min(threshold, limit)
    assert max(calls) <= 2 * limit and len(calls) <= 2 * limit.bit_length() + 2


def test_cpu_has_no_spec_sheet_peak_and_no_memory_search():
    assert device_peak(torch.device("cpu")) == (None, "cpu")
    assert max_batch("videomae", "micro", "cpu", grad_checkpointing=False) is None


def test_cli_rejects_unknown_workloads(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "model", "--workloads", "videomae,sora"])
    assert "choose from" in capsys.readouterr().err


def test_bf16_autocast_and_checkpointing_paths_run_on_cpu():
    result = bench_workloads("micro", batch=2, steps=1, precision="bf16", names=("videomae", "finetune"),
                             grad_checkpointing=True)
    assert result["setup"]["precision"] == "bf16" and result["setup"]["grad_checkpointing"]
    assert all(r["clips_per_s"] > 0 for r in result["workloads"].values())


def test_beside_workloads_the_fp32_reference_check_takes_few_clips(capsys):
    """A large workload batch must not take three fp32 models' activations with it (it ran out of memory on an
    80 GB GPU at batch 128)."""
    import json

    from maskvid.bench import REFERENCE_BATCH

    main(["bench", "model", "--shape", "micro", "--batch", str(REFERENCE_BATCH + 2), "--steps", "1",
          "--workloads", "videomae", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["setup"]["batch"] == REFERENCE_BATCH
    assert report["workloads"]["setup"]["batch"] == REFERENCE_BATCH + 2
    assert report["loss_gap"] < 1e-4


@pytest.mark.parametrize("name", WORKLOADS)
def test_a_batch_costs_batch_times_one_clip_and_fused_attention_is_not_charged_its_recompute(name):
    """FLOPs are counted on one clip; counting a 3-clip batch under the math kernel gives 3x. Counted under the
    fused kernel, the backward's recomputed scores come on top, which MFU must not count."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from maskvid.bench.workloads import build_workload, model_flops

    one = model_flops(name, "micro", torch.device("cpu"), "fp32")
    counts = []
    for kernel in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        torch.manual_seed(0)
        model, loss_of = build_workload(name, "micro", 3)
        with sdpa_kernel([kernel, SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            loss_of(model).backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == 3 * one
    assert counts[1] > counts[0]


def test_device_reads_count_the_sync_debug_modes_warnings_and_restore_the_mode(monkeypatch):
    """What a GPU step's count rests on, without a GPU: torch warns at each synchronizing call in "warn" mode."""
    import warnings

    from maskvid.bench.workloads import SYNCHRONIZING, device_reads

    modes = ["default"]
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: modes[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def step():
        assert modes[-1] == "warn"
        for message in (SYNCHRONIZING, "something else", SYNCHRONIZING):
            warnings.warn(message, stacklevel=1)

    assert device_reads(step, torch.device("cuda")) == 2 and modes[-1] == "default"

    def failing():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        device_reads(failing, torch.device("cuda"))
    assert modes[-1] == "default"
    assert device_reads(step, torch.device("cpu")) is None
