"""Which video each data-loader worker is reading, so that a video that kills its worker can be named and skipped.

A corrupt file can crash FFmpeg itself (a segmentation fault, not a Python exception): the worker dies, and torch's
DataLoader raises ``RuntimeError: DataLoader worker (pid(s) …) exited unexpectedly`` in the main process, which
would end the run. Each worker notes in memory it shares with the main process the record it starts a sample of and
clears the note when the sample is made; a dead worker leaves its note behind. The main process reads it
(:meth:`WorkerWatch.died`), records the video as :attr:`WorkerWatch.crashed` and makes the loader again
(:func:`maskvid.engine.surviving_loader.surviving_batches`); the new workers, started from the main process's copy,
treat the video as a bad one (:class:`~maskvid.errors.VideoDecodeError`) without opening it.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

from maskvid.errors import VideoDecodeError


class WorkerWatch:
    """Notes shared by the main process and its loader workers: the record each worker is reading (:meth:`arm`
    makes the table before the workers start) and the videos known to kill a worker (``crashed``: path -> why)."""

    def __init__(self):
        self.table: torch.Tensor | None = None  # (workers, 2): pid, record index (-1: none)
        self.crashed: dict[str, str] = {}

    def arm(self, workers: int) -> None:
        """A fresh table for ``workers`` loader workers, in shared memory; call before the loader starts them."""
        self.table = torch.full((max(workers, 1), 2), -1, dtype=torch.int64).share_memory_()

    @contextlib.contextmanager
    def reading(self, path: str, index: int):
        """Around the making of one sample from record ``index`` (``path``): a video that killed a worker before is
        a :class:`~maskvid.errors.VideoDecodeError`; in a worker, the note that it is being read."""
        if path in self.crashed:
            raise VideoDecodeError(path, self.crashed[path])
        worker = torch.utils.data.get_worker_info()
        if self.table is None or worker is None or worker.id >= len(self.table):
            yield
            return
        self.table[worker.id] = torch.tensor([os.getpid(), index])
        try:
            yield
        finally:  # not reached when the process dies: the note stays for the main process to read
            self.table[worker.id, 1] = -1

    def died(self, wait: float = 0.0) -> list[int]:
        """Record indices that a worker, now dead, was reading when it died; none found, looked for again for up to
        ``wait`` seconds (a worker whose sockets closed may not have finished dying)."""
        deadline = time.monotonic() + wait
        while True:
            dead = [] if self.table is None else [
                int(index) for pid, index in self.table.tolist() if index >= 0 and not _alive(pid)]
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie — dead, not yet reaped by its parent — does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): it answered the signal, so it is taken to run
        return True
