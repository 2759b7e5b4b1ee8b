"""What the on-disk caches of ``maskvid extract`` share: one directory per video named by a hash of its path,
written atomically, and a sharded, resumable fill that reports bad videos instead of stopping.

A cache is any object with ``check(path) -> str | None`` (why the video's entry cannot be used; None: it can),
``build(path)`` (compute and write it) and ``entry(path)`` (its directory): :class:`~maskvid.data.flow_cache.FlowCache`,
:class:`~maskvid.data.token_cache.TokenCache`. A video that crashed the process building it (FFmpeg on a hostile
file) left a marker beside its entry; the next fill builds it in a process of its own and reports it if that one
dies too (:mod:`~maskvid.data.isolated`), so a rerun always gets past it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from maskvid.data.isolated import RUNNING, ProcessDied, marked, run_alone
from maskvid.errors import VideoDecodeError


def entry_dir(root: str, path: str) -> str:
    """``root/ab/abcdef…``: the entry of the video at ``path`` (sha1 of its absolute path)."""
    key = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()
    return os.path.join(root, key[:2], key)


def video_meta(path: str, layout: int) -> dict:
    """What ties an entry to one file: the layout version, the absolute path, the file's size and mtime."""
    stat = os.stat(path)
    return {"layout": layout, "path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def stored_meta(entry: str, expected: dict) -> tuple[str | None, dict]:
    """``(problem, meta)`` of ``entry``: "no entry", "stale entry (… changed)" against ``expected``, or None with
    the stored ``meta.json``. Unreadable JSON raises (the caller reports a corrupted entry)."""
    if not os.path.isdir(entry):
        return "no entry", {}
    with open(os.path.join(entry, "meta.json")) as f:
        stored = json.load(f)
    changed = [k for k, v in expected.items() if stored.get(k) != v]
    return (f"stale entry ({', '.join(changed)} changed)" if changed else None), stored


def write_entry(entry: str, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta.json`` and one ``NAME.npy`` per array into a temporary directory, then rename it into place,
    so a killed writer leaves no half entry; a stale entry there is replaced."""
    parent = os.path.dirname(entry)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        for name, array in arrays.items():
            np.save(os.path.join(tmp, f"{name}.npy"), array)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f)
        if os.path.isdir(entry):  # a stale entry: replace it (another worker may be doing the same)
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(entry):
            raise


def fill(cache, paths: Sequence[str], shard: tuple[int, int] = (0, 1),
         progress: Callable[[int, int], None] | None = None) -> dict:
    """Build the entries of this shard's videos (``paths[i::n]`` for shard ``(i, n)``); videos whose entry is
    already valid are skipped, so an interrupted extraction resumes where it stopped. Bad videos are reported,
    never fatal. Returns counts and the bad videos."""
    index, count = shard
    mine = list(paths)[index::count]
    report = {"videos": len(mine), "built": 0, "already_valid": 0, "rebuilt_stale": 0, "bad": []}
    for done, path in enumerate(mine, 1):
        problem = cache.check(path)
        marker = cache.entry(path) + RUNNING
        try:
            if problem is None:
                report["already_valid"] += 1
            else:
                if os.path.exists(marker):  # the last fill's process died building it: alone this time
                    _build_alone(cache, path, marker)
                else:
                    with marked(marker):
                        cache.build(path)
                report["built"] += 1
                report["rebuilt_stale"] += problem != "no entry"
        except (VideoDecodeError, OSError) as e:
            report["bad"].append((path, getattr(e, "reason", str(e))))
        if progress is not None:
            progress(done, len(mine))
    return report


def _build_alone(cache, path: str, marker: str) -> None:
    """Build the entry in a process of its own; a VideoDecodeError if the video is bad or that process died too
    (the marker then stays: every later fill tries the video alone)."""
    try:
        why = run_alone(_build, cache, path)
    except ProcessDied:
        raise VideoDecodeError(path, "the process building its entry died, and so did one of its own (a crash in "
                                     "the decoder)") from None
    os.remove(marker)
    if why is not None:
        raise VideoDecodeError(path, why)


def _build(cache, path: str) -> str | None:
    """``cache.build(path)`` in a process of its own: None, or why the video is bad (exceptions of the library's
    own types do not cross processes whole)."""
    try:
        cache.build(path)
    except (VideoDecodeError, OSError) as e:
        return getattr(e, "reason", str(e))
    return None
