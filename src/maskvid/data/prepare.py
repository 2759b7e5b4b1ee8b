"""``maskvid prepare``: re-encode the videos of a list into a training-friendly copy, and write the list of it.

What a GPU node's loader wants from a file, and what datasets ship instead (Something-Something's VP9 carries no
motion vectors; Kinetics' clips are 720p with audio; UCF101's are Xvid AVI): every video becomes

* H.264 in MP4 (libx264, ``crf`` quality, ``x264_preset`` speed) with B-frames (``bframes``) and a fixed GOP of
  ``gop`` frames (no scene-cut keyframes), so codec motion vectors exist (MGM) and every clip seeks to a keyframe
  at most ``gop - 1`` frames before it;
* short side ``short_side`` (aspect kept, even sides, never upscaled), turned upright (the display rotation is
  applied to the pixels, so no reader has to);
* ``faststart`` (the index first: a reader starts without seeking to the file's end), audio and subtitles dropped;
* the same frames, one for one: output frame ``i`` is frame ``i`` of a full sequential decode of the source, at
  the source's average frame rate (a variable rate becomes constant), so segment lists (``path start num_frames
  label``) keep pointing at the same frames.

Files are sharded across processes. A file already in the output is kept (outputs appear only once complete, so a
run stopped half-way resumes where it was). What happened to each file is appended to ``prepare.log.jsonl``; a
file that cannot be read is reported and left out of the new list, never stops the run — nor does one that takes
its process down (a crash inside the decoder on a hostile file): the files being encoded then are retried one at a
time, each in a process of its own, and the one that takes it down again is reported. With one worker the files are
encoded in the run's own process, which such a file ends; the rerun encodes it alone (:mod:`.isolated`).

Across machines, ``shard=(i, n)`` encodes every n-th video from the i-th, logs to ``prepare.shard-i-of-n.log.jsonl``
(shards on a shared file system never append to one file) and writes no list: a list needs every shard's copies.
One plain run afterwards keeps every copy, retries and reports what failed, and writes the list.

    summary = prepare("train.csv", "prepared/", PrepareConfig(short_side=320))
    # prepared/train.csv lists prepared/videos/...mp4 with the same labels; summary["bad"]: path -> why
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType

from maskvid.data.annotations import read_annotation_list, read_lines
from maskvid.data.decode import MIN_FRAMES
from maskvid.data.isolated import RUNNING, ProcessDied, marked, run_alone
from maskvid.data.video_file import open_video, quarter_turns
from maskvid.errors import ConfigError, MaskvidError, VideoDecodeError

SETTINGS_FILE, LOG_FILE = "prepare.json", "prepare.log.jsonl"


@dataclass(frozen=True)
class PrepareConfig:
    short_side: int = 320
    gop: int = 32  # frames between keyframes, fixed
    bframes: int = 3  # x264's default
    crf: int = 23  # x264's default quality
    x264_preset: str = "medium"  # x264's default speed

    def __post_init__(self):
        if self.short_side < 16 or self.short_side % 2:
            raise ConfigError("short_side", f"must be an even number >= 16, got {self.short_side}")
        if self.gop < 1:
            raise ConfigError("gop", f"must be >= 1, got {self.gop}")
        if not 0 <= self.bframes <= 16:
            raise ConfigError("bframes", f"must be in [0, 16], got {self.bframes}")
        if not 0 <= self.crf <= 51:
            raise ConfigError("crf", f"must be in [0, 51], got {self.crf}")
        presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
        if self.x264_preset not in presets:
            raise ConfigError("x264_preset", f"{self.x264_preset!r} not in {presets}")


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(H, W)`` with the short side at ``short_side`` (never enlarged), aspect kept, both rounded down to even
    (4:2:0 chroma)."""
    scale = min(1.0, short_side / min(height, width))
    return max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)


def transcode(source: str, dest: str, config: PrepareConfig = PrepareConfig()) -> dict:
    """Re-encode ``source`` into ``dest`` (MP4); returns what was done. Raises ``VideoDecodeError`` naming the source
    when it cannot be read; ``dest`` appears only when complete."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    tmp = f"{dest}.part{os.getpid()}.mp4"
    container, stream = open_video(source)
    stream.thread_type, stream.thread_count = "SLICE", 1  # one process per file; slices never change the output
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    info = {
        "codec_in": stream.codec_context.name,
        "size_in": [stream.codec_context.height, stream.codec_context.width],
        "audio_dropped": len(container.streams.audio),
    }
    frames, out_size = 0, None
    try:
        with av.open(tmp, "w", options={"movflags": "+faststart"}) as output:
            encoder = None
            for frame in container.decode(stream):
                if encoder is None:
                    upright = _upright_size(frame)
                    out_size = output_size(*upright, config.short_side)
                    encoder = _add_encoder(output, rate, out_size, config)
                image = _resized(frame, out_size)
                image.pts, image.time_base = frames, encoder.codec_context.time_base
                image.pict_type = PictureType.NONE  # else x264 makes every source I-frame a keyframe too
                output.mux(encoder.encode(image))
                frames += 1
            if frames < MIN_FRAMES:  # what every reader would reject: report it here, not at training time
                raise VideoDecodeError(source, f"has {frames} frame(s); a clip needs at least {MIN_FRAMES}")
            output.mux(encoder.encode(None))
    except MaskvidError:
        _remove(tmp)
        raise
    except Exception as e:  # FFmpeg reports damaged data in many ways; all mean "this source cannot be prepared"
        _remove(tmp)
        raise VideoDecodeError(source, f"decode failed after {frames} frame(s): {type(e).__name__}: {e}") from e
    finally:
        container.close()
    os.replace(tmp, dest)
    return {**info, "frames": frames, "size_out": list(out_size), "fps": float(rate)}


def _upright_size(frame: av.VideoFrame) -> tuple[int, int]:
    return (frame.width, frame.height) if quarter_turns(frame) % 2 else (frame.height, frame.width)


def _add_encoder(output, rate: Fraction, size: tuple[int, int], config: PrepareConfig):
    stream = output.add_stream("libx264", rate=rate)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1) / rate
    stream.codec_context.options = {
        "threads": "1",
        "preset": config.x264_preset,
        "crf": str(config.crf),
        # keyint = min-keyint and no scene cuts: a keyframe exactly every gop frames
        "x264-params": f"keyint={config.gop}:min-keyint={config.gop}:scenecut=0:bframes={config.bframes}",
    }
    return stream


def _resized(frame: av.VideoFrame, size: tuple[int, int]) -> av.VideoFrame:
    """The frame upright at ``size`` in yuv420p: one swscale pass, or through RGB where a rotation is applied."""
    height, width = size
    turns = quarter_turns(frame)
    if not turns:
        return frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
    sideways = turns % 2
    rgb = frame.to_ndarray(
        width=height if sideways else width, height=width if sideways else height, format="rgb24", interpolation="AREA"
    )
    upright = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(rgb, turns)), format="rgb24")
    return upright.reformat(format="yuv420p")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _job(job: tuple[str, str, PrepareConfig]) -> dict:
    source, dest, config = job
    start = time.perf_counter()
    try:
        with marked(dest + RUNNING):  # left behind only if this process dies: it names the suspect
            result = {"status": "encoded", **transcode(source, dest, config)}
    except MaskvidError as e:
        result = {"status": "failed", "why": getattr(e, "reason", str(e))}
    return {"source": source, "output": dest, **result, "seconds": round(time.perf_counter() - start, 3)}


def _leftovers(dest: str) -> list[str]:
    """What a process that died while encoding ``dest`` leaves: its marker and its partial output."""
    return glob.glob(glob.escape(dest) + ".part*") + glob.glob(glob.escape(dest) + RUNNING)


def _pooled(jobs: list, workers: int, record: Callable[[dict], None]) -> None:
    """``jobs`` over ``workers`` processes, each result recorded as it comes. A job that kills its process breaks
    the pool; the jobs that were running then (their markers remain) are run again one at a time, each alone, and
    the rest go on in a new pool."""
    remaining = {job[0]: job for job in jobs}
    while remaining:
        try:
            with ProcessPoolExecutor(min(workers, len(remaining))) as pool:
                for future in as_completed([pool.submit(_job, job) for job in remaining.values()]):
                    result = future.result()
                    del remaining[result["source"]]
                    record(result)
        except BrokenProcessPool:
            suspects = [job for job in remaining.values() if os.path.exists(job[1] + RUNNING)]
            for job in suspects or list(remaining.values()):  # no marker: the crash came first; isolate all
                record(_alone(job))
                del remaining[job[0]]


def _alone(job: tuple[str, str, PrepareConfig]) -> dict:
    """``_job`` in a process of its own: if that process dies, the job is what killed it."""
    for path in _leftovers(job[1]):
        _remove(path)
    try:
        return run_alone(_job, job)
    except ProcessDied:
        for path in _leftovers(job[1]):
            _remove(path)
        return {"source": job[0], "output": job[1], "status": "failed",
                "why": "the process encoding it died (a crash in the decoder or encoder)"}


def prepare(
    list_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PrepareConfig = PrepareConfig(),
    root: str | os.PathLike | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict:
    """Re-encode every video of ``list_path`` into ``out_dir/videos/`` and write ``out_dir/<list name>`` pointing at
    the copies (same labels and fields; unreadable videos left out). Returns a summary with ``bad`` (path -> why).
    ``shard``: ``(i, n)`` encodes only this shard's share and writes no list (``summary["list"]`` is None)."""
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError("--shard", f"need 0 <= i < n, got {index}/{count}")
    list_path, out_dir = os.fspath(list_path), os.fspath(out_dir)
    root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(list_path))
    read_annotation_list(list_path, root, require_labels=False)  # every malformed line reported before any work
    _check_settings(out_dir, config)
    lines = _entries(list_path, root)
    outputs = _output_paths([source for _, source, _ in lines if source], root, out_dir)
    if count > 1:  # every n-th video; a video listed twice is one job, in one shard
        outputs = {source: dest for k, (source, dest) in enumerate(outputs.items()) if k % count == index}
    log = os.path.join(out_dir, LOG_FILE if count == 1 else f"prepare.shard-{index}-of-{count}.log.jsonl")
    start = time.perf_counter()
    results = _run(outputs, config, workers, progress, log)
    bad = {r["source"]: r["why"] for r in results.values() if r["status"] == "failed"}
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("encoded", "kept", "failed")}
    summary = {"list": None, "out_dir": out_dir, "videos": len(outputs), **counts, "bad": bad,
               "seconds": round(time.perf_counter() - start, 1), "log": log, "settings": asdict(config),
               "shard": [index, count]}
    if count > 1:
        return summary
    new_lines = []
    for raw, source, rest in lines:
        if source is None:
            new_lines.append(raw)
        elif source not in bad:
            rel = os.path.relpath(outputs[source], out_dir)
            new_lines.append(", ".join([rel, *rest]) if "," in raw else " ".join([rel, *rest]))
    summary["list"] = os.path.join(out_dir, os.path.basename(list_path))
    _write_atomic(summary["list"], "\n".join(new_lines) + "\n")
    return summary


def _entries(list_path: str, root: str) -> list[tuple[str, str | None, list[str]]]:
    """Each line as ``(raw, source path or None, the other fields)``; None: a comment, blank or header line."""
    entries = []
    for number, raw in enumerate(read_lines(list_path), 1):
        line = raw.strip()
        fields = [x.strip() for x in line.split(",")] if "," in line else line.split()
        if not line or line.startswith("#") or (number == 1 and fields[-1].lower() in ("label", "labels", "class")):
            entries.append((raw, None, []))
        else:
            entries.append((raw, fields[0], fields[1:]))
    return [(raw, None if src is None else _resolve(src, root), rest) for raw, src, rest in entries]


def _resolve(path: str, root: str) -> str:
    return os.path.normpath(os.path.join(root, path))


def _output_paths(sources: list[str], root: str, out_dir: str) -> dict[str, str]:
    """source -> ``out_dir/videos/<path below root, .mp4>``; sources outside root keep their name only."""
    outputs, taken = {}, {}
    for source in dict.fromkeys(sources):  # a video listed twice (two segments) is encoded once
        rel = os.path.relpath(source, root)
        if rel.startswith(os.pardir):
            rel = os.path.basename(source)
        dest = os.path.join(out_dir, "videos", os.path.splitext(rel)[0] + ".mp4")
        if dest in taken:
            raise ConfigError("list", f"{taken[dest]} and {source} would both become {dest}; rename one")
        taken[dest] = source
        outputs[source] = dest
    return outputs


def _check_settings(out_dir: str, config: PrepareConfig) -> None:
    """A directory holds copies made one way: reusing it with other settings would mix them."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
        changed = {k: (before.get(k), v) for k, v in asdict(config).items() if before.get(k) != v}
        if changed:
            what = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
            raise ConfigError("out_dir", f"{out_dir} was prepared with other settings ({what}); use a new directory")
    else:
        _write_atomic(path, json.dumps(asdict(config), indent=2) + "\n")


def _run(outputs: dict[str, str], config: PrepareConfig, workers: int, progress, log_path: str) -> dict[str, dict]:
    results, jobs = {}, []
    for source, dest in outputs.items():
        if os.path.exists(dest):
            results[source] = {"source": source, "output": dest, "status": "kept"}
        else:
            jobs.append((source, dest, config))
    total = len(outputs)

    def record(result: dict) -> None:
        results[result["source"]] = result
        with open(log_path, "a") as log:
            log.write(json.dumps(result) + "\n")
        if progress:
            progress(len(results), total)

    for kept in list(results.values()):
        record(kept)
    # a marker left by the last run: its process died on this file (or was killed), so it runs alone first
    suspects = [job for job in jobs if os.path.exists(job[1] + RUNNING)]
    for job in suspects:
        record(_alone(job))
    jobs = [job for job in jobs if job not in suspects]
    for _, dest, _ in jobs:  # what a run killed mid-file left behind
        for path in _leftovers(dest):
            _remove(path)
    if workers <= 1:  # in this process: simplest to debug; a crash in the decoder ends the run, and the rerun
        for job in jobs:  # takes that file alone
            record(_job(job))
    else:
        _pooled(jobs, workers, record)
    return results


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.part{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
