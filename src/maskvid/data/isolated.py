"""Work on one video that may take its process down (a crash inside FFmpeg on a hostile file), for the offline
commands that go through a list — ``maskvid prepare`` and ``maskvid extract``.

A marker file sits beside the output while a video is worked on (:func:`marked`); only a process that dies in the
middle leaves it behind. The next run — the same command again, which resumes — finds it and works on that video in
a process of its own (:func:`run_alone`), so that a second crash is the video's report, not the run's end.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

RUNNING = ".running"  # the marker's suffix


class ProcessDied(Exception):
    """The process working on one video alone died."""


@contextlib.contextmanager
def marked(marker: str):
    """``marker`` exists while the block runs, and after it only if the process died in it."""
    os.makedirs(os.path.dirname(marker) or ".", exist_ok=True)
    open(marker, "w").close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(marker)


def run_alone(function: Callable, *args):
    """``function(*args)`` in a process of its own, its result; :class:`ProcessDied` if that process died. Forked
    where it can be, spawned where this process has started CUDA (a forked child cannot use it)."""
    import torch

    method = "spawn" if torch.cuda.is_initialized() or "fork" not in multiprocessing.get_all_start_methods() else "fork"
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)) as pool:
            return pool.submit(function, *args).result()
    except BrokenProcessPool:
        raise ProcessDied() from None
