"""``maskvid prepare --workers 1`` and ``maskvid extract`` work in their own process, which a video that crashes
FFmpeg ends. The rerun — the same command, which resumes — takes that video alone in a process of its own and
reports it when that one dies too, so a hostile file can never block a list."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys

from maskvid.data.cache_entries import entry_dir, fill, write_entry
from maskvid.data.isolated import RUNNING
from video_corpus import encode, scene

TESTS = os.path.dirname(os.path.abspath(__file__))


class CrashingCache:
    """A cache of empty entries whose ``build`` kills its process on ``victim`` (as FFmpeg's crash would)."""

    def __init__(self, root: str, victim: str):
        self.root, self.victim = root, victim

    def entry(self, path: str) -> str:
        return entry_dir(self.root, path)

    def check(self, path: str) -> str | None:
        return None if os.path.isdir(self.entry(path)) else "no entry"

    def build(self, path: str) -> None:
        if path == self.victim:
            faulthandler.disable()  # a crash, not a traceback of pytest's in the test's output
            os.kill(os.getpid(), signal.SIGSEGV)
        write_entry(self.entry(path), {"path": path}, {})


def _fill_in_a_process(root: str, paths: list[str], victim: str) -> subprocess.CompletedProcess:
    script = (f"import json, sys; sys.path.insert(0, {TESTS!r}); from test_isolated import CrashingCache; "
              f"from maskvid.data.cache_entries import fill; "
              f"print(json.dumps(fill(CrashingCache({root!r}, {victim!r}), {paths!r})))")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_extract_gets_past_a_video_that_crashed_it(tmp_path):
    root, paths = str(tmp_path / "cache"), [f"/videos/{name}.mp4" for name in ("a", "victim", "b")]
    first = _fill_in_a_process(root, paths, paths[1])
    assert first.returncode == -signal.SIGSEGV  # the crash ends the run: a's entry was written before it
    assert os.path.isdir(entry_dir(root, paths[0])) and os.path.exists(entry_dir(root, paths[1]) + RUNNING)
    again = _fill_in_a_process(root, paths, paths[1])
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["already_valid"], report["built"]) == (1, 1)
    assert [path for path, _ in report["bad"]] == [paths[1]] and "died" in report["bad"][0][1]
    # reported, not forgotten: every later run tries it alone again, and the run goes on
    third = fill(CrashingCache(root, paths[1]), paths)
    assert third["already_valid"] == 2 and [path for path, _ in third["bad"]] == [paths[1]]


def test_a_marker_left_by_a_killed_run_does_not_condemn_a_good_video(tmp_path):
    root, path = str(tmp_path / "cache"), "/videos/good.mp4"
    marker = entry_dir(root, path) + RUNNING
    os.makedirs(os.path.dirname(marker))
    open(marker, "w").close()  # SLURM killed the last run while it built this one
    report = fill(CrashingCache(root, victim="none"), [path])
    assert (report["built"], report["bad"]) == (1, [])
    assert os.path.isdir(entry_dir(root, path)) and not os.path.exists(marker)


def test_prepare_in_one_process_gets_past_a_file_that_crashed_it(tmp_path):
    for name in ("a", "crash", "b"):
        encode(str(tmp_path / f"{name}.mp4"), frames=scene(12))
    (tmp_path / "list.txt").write_text("a.mp4 0\ncrash.mp4 1\nb.mp4 2\n")
    script = ("import json, os, signal, sys; import maskvid.data.prepare as p; real = p.transcode\n"
              "def crashing(source, dest, config):\n"
              "    if source.endswith('crash.mp4'): os.kill(os.getpid(), signal.SIGSEGV)\n"
              "    return real(source, dest, config)\n"
              "p.transcode = crashing  # the process that encodes it alone is forked: it crashes too\n"
              "summary = p.prepare(sys.argv[1], sys.argv[2], p.PrepareConfig(short_side=32, gop=8), workers=1)\n"
              "print(json.dumps(summary))")
    run = [sys.executable, "-c", script, str(tmp_path / "list.txt"), str(tmp_path / "out")]
    first = subprocess.run(run, capture_output=True, text=True)
    assert first.returncode == -signal.SIGSEGV
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["kept"], summary["encoded"], summary["failed"]) == (1, 1, 1)
    assert "died" in summary["bad"][str(tmp_path / "crash.mp4")]
    assert (tmp_path / "out" / "list.txt").read_text() == "videos/a.mp4 0\nvideos/b.mp4 2\n"
    assert not list((tmp_path / "out" / "videos").glob("crash*"))  # its marker and partial output are gone
