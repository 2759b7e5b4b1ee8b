"""`maskvid demo` and `maskvid study` end to end on tiny budgets: every stage reported, every figure in the JSON,
the pictures written, the videos reused on a second run, every study pair's configs valid."""

from __future__ import annotations

import json
import os

import pytest

from maskvid.cli import main
from maskvid.experiment import Benchmark, Budget, beats, finetune_config, mean_std, merged, pretrain_config
from maskvid.study import PAIRS, run_study

TINY = Budget(pool=12, train_per_class=2, val_per_class=2, pretrain_steps=3, batch_size=4, finetune_epochs=1,
              seeds=2)


def test_merged_replaces_nested_keys_without_touching_its_inputs():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert merged(base, {"a": {"b": 5}, "e": {"f": 1}}) == {"a": {"b": 5, "c": 2}, "d": 3, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


def test_beats_needs_two_seeds_and_a_gap_over_two_std():
    assert beats(mean_std([0.5, 0.52, 0.48]), mean_std([0.3, 0.31, 0.29]))
    assert not beats(mean_std([0.5, 0.6, 0.4]), mean_std([0.4, 0.41, 0.39]))  # gap 0.1 < 2 × 0.1
    assert not beats(mean_std([0.9]), mean_std([0.1]))  # one seed: no spread to judge by
    assert mean_std([0.2, 0.4]) == {"mean": pytest.approx(0.3), "std": pytest.approx(0.1414, abs=1e-4),
                                    "values": [0.2, 0.4]}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_study_arm_builds_valid_configs(name, tmp_path):
    from maskvid.models.tokenizer import VQVAE, VQVAEConfig
    from maskvid.models.tokenizers import save_tokenizer

    tokenizer = save_tokenizer(VQVAE(VQVAEConfig(factor=8, codebook_size=256, code_dim=8, width=16)),
                               str(tmp_path / "tokenizer.safetensors"))
    bench = Benchmark(str(tmp_path), "motion", reused=False, seconds=0.0, tokenizer=tokenizer)
    for arm in PAIRS[name].arms:
        if arm.pretrain is not None:
            config = pretrain_config(bench, arm, 0, TINY, str(tmp_path / "p"), workers=0, progress=False)
            assert config.method in ("mae", "vimpac", "mam2")
        config = finetune_config(bench, arm, 0, TINY, str(tmp_path / "f"), None, workers=0, progress=False)
        assert config.train.epochs == TINY.finetune_epochs


def test_the_demo_pretrains_mme_on_the_position_part_with_random_masks_and_motion_longer(tmp_path):
    from maskvid.demo import ARMS, BUDGETS, MME, PIXELS
    from maskvid.recipes import build_method

    full = BUDGETS["full"]
    assert (full["motion"].pretrain_steps, full["appearance"].pretrain_steps) == (800, 400)
    bench = Benchmark(str(tmp_path), "motion", reused=False, seconds=0.0)
    mme = pretrain_config(bench, MME, 0, full["motion"], str(tmp_path / "p"), workers=0, progress=False)
    assert (mme.optim.lr, mme.train.max_steps, mme.mask.strategy, mme.mask.ratio) == (4e-4, 800, "random", 0.75)
    target = build_method(mme).heads[0].target
    assert (target.shape, target.patch_norm, target.spec.hog, target.dim) == (False, False, False, 4 * 6 * 2)
    pixels = pretrain_config(bench, PIXELS, 0, full["appearance"], str(tmp_path / "q"), workers=0, progress=False)
    assert (pixels.optim.lr, pixels.train.max_steps, pixels.mask.strategy) == (4e-4, 400, "tube")
    assert MME in ARMS["motion"] and MME not in ARMS["appearance"]


@pytest.mark.slow
def test_demo_end_to_end_then_reuse(tmp_path):
    from maskvid.demo import run_demo

    lines = []
    report = run_demo(str(tmp_path), budget=TINY, say=lines.append, progress=False)
    json.dumps(report)  # --json prints it
    assert set(report["results"]) == {"motion", "appearance"}
    assert set(report["results"]["motion"]) == {"random init", "pixel MAE", "MME trajectory"}
    for table in report["results"].values():
        for arm in table.values():
            for stage in ("probe", "finetune"):
                assert len(arm[stage]["values"]) == 2 and all(0 <= v <= 1 for v in arm[stage]["values"])
    assert len(report["runs"]) == 2 * 5 and all(r["probe"]["videos"] == 20 for r in report["runs"])
    assert len(report["goals"]) == 3 and all(isinstance(g["reached"], bool) for g in report["goals"])
    assert {"loss_curves", "mask_mgm", "mask_tube", "reconstruction", "trajectories"} <= set(report["pictures"])
    assert all(os.path.exists(p) for p in report["pictures"].values())
    starts = [line for line in lines if line.startswith("…")]
    ends = [line for line in lines if line.startswith("✓")]
    assert len(starts) == len(ends) > 20 and "goals" in report["table"] and "NOT reached" in report["table"]
    assert "what we measured and tried toward the goals not reached: docs/demo.md" in report["table"]
    assert not any("reused" in line for line in lines)

    lines.clear()  # a second run reuses the videos, and says so
    for preset in ("motion", "appearance"):
        assert Benchmark.prepare(str(tmp_path), preset, TINY, lines.append).reused
    assert sum("reused the videos" in line for line in lines) == 2


def test_study_list_and_bad_pair(capsys):
    assert main(["study", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PAIRS) and "MME Tab. 5" in out
    assert main(["study", "no-such-pair", "--seeds", "1"]) == 2
    assert "no-such-pair" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["trajectory-vs-pixels", "running-cell-vs-random", "two-decoders-vs-one",
                                  "block-vs-iid"])
def test_study_runs_and_writes_its_table_and_chart(name, tmp_path):
    report = run_study(name, str(tmp_path / "cache"), str(tmp_path / "out"), seeds=2, budget=TINY,
                       say=lambda line: None, progress=False)
    pair = PAIRS[name]
    assert set(report["table"]) == {arm.name for arm in pair.arms}
    assert all(len(x[s]["values"]) == 2 for x in report["table"].values() for s in pair.stages)
    assert all(os.path.exists(p) for p in report["files"].values())
    with open(report["files"]["markdown"]) as f:
        text = f.read()
    assert pair.source in text and "±" in text and all(arm.name in text for arm in pair.arms)
