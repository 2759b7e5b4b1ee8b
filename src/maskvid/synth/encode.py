"""Write frames to a video file with PyAV (synthetic data, test corpora, cached clips)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 25,
    codec: str = "libx264",
    lossless: bool = False,
    options: dict[str, str] | None = None,
) -> None:
    """Encode uint8 ``(H, W, 3)`` RGB frames into ``path`` (container from the extension).

    ``libx264`` keeps x264's defaults (3 B-frames, B-pyramid) so the file carries real P/B motion vectors, but for
    the macroblock-tree rate control, which is off: with it, identical frames gave different bytes from one process
    to another (the seed-determinism of ``maskvid synth``);
    ``lossless=True`` encodes RGB exactly (``libx264rgb``, qp 0) for tests that compare pixels.
    The file appears only once complete (written beside it, then renamed).
    """
    path = os.fspath(path)
    tmp = f"{path}.part{os.getpid()}{os.path.splitext(path)[1]}"
    opts = {"threads": "1"}  # and mbtree off (above): identical bytes for identical frames
    if codec == "libx264":
        opts["x264-params"] = "mbtree=0"
    if lossless:
        codec, opts["qp"] = "libx264rgb", "0"
    opts.update(options or {})
    frames = iter(frames)
    first = next(frames)
    with av.open(tmp, "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "rgb24" if codec == "libx264rgb" else _pix_fmt(codec)
        stream.codec_context.options = opts
        # one scaler for the video (``frame.reformat`` set a new one up for every frame: 0.28 ms of a 64² frame)
        scaler = VideoReformatter()
        for image in _chain(first, frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if frame.format.name != stream.pix_fmt:
                # converted here, into a frame of its own: left to encode(), PyAV's conversion into a buffer it
                # reuses made repeated encodes of the same frames differ within one process
                frame = scaler.reformat(frame, format=stream.pix_fmt)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    os.replace(tmp, path)


def _pix_fmt(codec: str) -> str:
    return {"mjpeg": "yuvj420p"}.get(codec, "yuv420p")


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]):
    yield first
    yield from rest
