"""Benchmarks run with a chosen torch thread count and give the caller's back afterwards."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Use ``threads`` torch threads inside the block (None: leave the count as it is)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def one_core():
    """torch and OpenCV on one thread each inside the block, as one data-loader worker runs."""
    import cv2

    previous = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])
