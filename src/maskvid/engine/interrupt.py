"""Stopping on a signal without losing the steps since the last checkpoint.

A cluster ends a job by signal: SLURM sends SIGTERM on preemption or at the time limit (then SIGKILL some 30 s
later), and ``#SBATCH --signal=USR1@120`` sends SIGUSR1 two minutes before the limit; torchrun passes SIGTERM on to
its ranks. Killed outright, a run would lose every step since its last checkpoint (``train.checkpoint_every``, often
an hour of GPU time). While a run trains, these signals only raise a flag; the loop sees it at the next step
boundary, every rank agreeing on the step, and saves a checkpoint there before it ends with status
``interrupted``. ``--resume`` goes on from it exactly.

Data-loader workers ignore the signals (:func:`ignore_stop_signals`): a worker killed by SIGTERM would make the
loader raise in the middle of a step; the loader shuts them down itself when the run ends.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    """While entered (in the main thread; elsewhere it does nothing), :data:`STOP_SIGNALS` set :attr:`received`, the
    signal's name, instead of ending the process; the previous handlers come back on exit."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number: int, frame) -> None:
        self.received = signal.Signals(number).name


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker outlives the signal its run is stopping for."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
