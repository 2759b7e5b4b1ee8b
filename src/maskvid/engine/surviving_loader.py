"""Data loading that survives a loader worker's death: a video that crashes FFmpeg is skipped, not the run's end.

A bad file is normally a Python exception in the worker (:class:`~maskvid.errors.VideoDecodeError`), reported and
replaced by the dataset. A file that crashes the decoder itself kills the worker process instead, and the
DataLoader raises in the main process — that the worker died, or, when it died just after making a batch, that the
batch could not be fetched from it. Here that loader is shut down, the videos its dead workers were reading are
marked crashed (:class:`~maskvid.data.worker_watch.WorkerWatch`; the reason is :data:`CRASHED`), and a new loader
goes on from the first batch not yet handed out — the same batches, in the same order, as the samples are seeded
by their keys; in them the crashed video is a bad video like any other: substituted (training) or skipped
(evaluation), reported in the batch's ``skipped`` and counted against ``data.max_bad_fraction``.

A worker that dies while no video is being read (the kernel's OOM killer between samples) is not a video's fault:
the loader's error is raised as before. With ``num_workers=0`` a crash in the decoder ends the main process itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

log = logging.getLogger(__name__)
CRASHED = "a loader worker died reading it (a crash in the decoder, or the OOM killer)"


def surviving_batches(dataset, make_loader: Callable[[int], Iterable[dict]], num_workers: int) -> Iterator[dict]:
    """The batches of ``make_loader(0)``; where a worker dies reading a video, those of ``make_loader(taken)``, a
    loader from the ``taken``-th batch on, after the video is marked crashed in ``dataset.watch``."""
    watch = getattr(dataset, "watch", None)
    if watch is None or num_workers == 0:
        yield from make_loader(0)
        return
    taken, quiet = 0, _QuietChildSignal()
    try:
        while True:
            watch.arm(num_workers)
            batches = iter(make_loader(taken))
            quiet.enter()  # after the loader's start, where torch sets its handler
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                except (RuntimeError, OSError, EOFError) as e:
                    # RuntimeError: the loader found the dead worker. OSError / EOFError: a batch the worker made
                    # just before it died could not be fetched from it (its shared memory goes by its socket)
                    dead = watch.died(wait=1.0)
                    if not dead:
                        raise
                    for path in dict.fromkeys(dataset.records[index].path for index in dead):
                        watch.crashed[path] = CRASHED
                        log.warning("%s: a loader worker died reading it; it is skipped from now on (the loader "
                                    "said %s: %s)", path, type(e).__name__, e)
                    break
                taken += 1
                yield batch
            batches = None  # the old loader shuts its other workers down before the new one starts its own
    finally:
        quiet.leave()


class _QuietChildSignal:
    """torch's SIGCHLD handler raises a worker's death in the main thread wherever it is — in a forward, in an
    optimizer's update — where no step can be recovered. While batches are drawn here SIGCHLD is left at its default
    (ignored), and the loader finds the dead worker itself, from ``next()``: it checks its workers each time it has
    waited 5 s for a batch. (A SIGCHLD handler of the program's own, which torch's calls, is also set aside.)"""

    def __init__(self):
        self.previous = None
        self.number = getattr(signal, "SIGCHLD", None)  # none on Windows, where torch sets no handler either

    def enter(self) -> None:
        if self.number is None or threading.current_thread() is not threading.main_thread():
            return
        handler = signal.signal(self.number, signal.SIG_DFL)
        if self.previous is None:
            self.previous = handler

    def leave(self) -> None:
        if self.previous is not None:
            signal.signal(self.number, self.previous)
            self.previous = None


def batches_in_order(dataset, batch_size: int, num_workers: int = 0, indices: Sequence[int] | None = None,
                     **options) -> Iterator[dict]:
    """Every sample of ``dataset`` (or those of ``indices``) once, in order and in batches (evaluation, feature
    extraction), surviving a worker's death; ``options`` go to the DataLoader."""
    indices = range(len(dataset)) if indices is None else indices

    def loader(taken: int) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                           sampler=indices[taken * batch_size :], **options)

    return surviving_batches(dataset, loader, num_workers)
