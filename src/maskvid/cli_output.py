"""What ``maskvid`` prints: progress bars, result summaries and the bad-video lists (cli.py parses and dispatches)."""

from __future__ import annotations

import sys


def progress_callback(description: str):
    """A rich progress callback ``(done, total)``; silent when stdout is not a terminal."""
    from rich.progress import Progress

    progress = Progress(disable=not sys.stderr.isatty())
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task(description, total=total)
        progress.update(task, completed=done)
        if done == total:
            progress.stop()

    return update


def score_text(score: float | None, inside: float | None) -> str:
    if score is not None:
        return f"{score:.3f}"
    return "inf (nothing visible moves)" if inside else "n/a (no motion to judge by)"


def print_bad_videos(where: str, bad: dict[str, str]) -> None:
    """Every video a run skipped, once, with why (also in --json as ``bad_videos`` and in metrics.jsonl)."""
    if not bad:
        print(f"  bad videos in {where}: none")
        return
    print(f"  bad videos in {where}: {len(bad)} skipped")
    for path, reason in bad.items():
        print(f"    {path}: {reason}")


def print_eval(report: dict) -> None:
    print(f"  top-1 {report['top1']:.4f}  top-5 {report['top5']:.4f}  on {report['videos']} videos x "
          f"{report['views_per_video']} views ({report['clips_per_s']:.1f} clips/s)")
    print(f"  confusion matrix: {report['confusion_png']}")
    print_bad_videos("evaluation", report["bad_videos"])


def tokenizer_text(report: dict) -> str:
    """``maskvid train-tokenizer``'s summary."""
    return (f"{report['status']} at step {report['step']}: loss {report['first_loss']} -> {report['last_loss']}\n"
            f"  reconstruction MSE {report['recon_mse']:.5f}; codes used {100 * report['codes_used']:.1f}%, "
            f"perplexity {report['perplexity']:.1f}\n  tokenizer: {report['tokenizer']}")


def extract_text(report: dict) -> str:
    """``maskvid extract``'s summary line."""
    index, count = report["shard"]
    return (f"extract {report['kind']}: {report['built']} built ({report['rebuilt_stale']} were stale), "
            f"{report['already_valid']} already valid, of {report['videos']} videos in shard {index}/{count} "
            f"-> {report['out']}")
