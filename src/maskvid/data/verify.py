"""Check ``decode_clip`` on a user's file against a plain sequential decode (``maskvid probe-video --verify``).

The reference is PyAV's ``container.decode`` from the first frame to the last, frames turned upright by their
display matrix; maskvid must give the same frame count and, for every call, the same pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from maskvid.data.decode import decode_clip, frame_count
from maskvid.data.video_file import quarter_turns
from maskvid.errors import VideoDecodeError


@dataclass
class Verification:
    path: str
    frames: int  # maskvid's count
    sequential_frames: int  # a sequential decode's count
    calls: int = 0
    exact: int = 0
    wrong: list[str] = field(default_factory=list)  # what differed, e.g. "frame 12" or "clip 0..60 (motion)"

    @property
    def ok(self) -> bool:
        return self.frames == self.sequential_frames and self.exact == self.calls


def sequential_frames(path: str) -> np.ndarray:
    """Every frame of a sequential decode, upright; stops (keeping what came) where the decoder rejects data."""
    frames = []
    scaler = VideoReformatter()  # owned here, one thread: nothing threaded outlives this call (see decode.py)
    with av.open(path) as container:
        try:
            for frame in container.decode(video=0):
                rgb = scaler.reformat(frame, format="rgb24", threads=1).to_ndarray()
                frames.append(np.rot90(rgb, quarter_turns(frame)))
        except av.error.FFmpegError:
            pass
    if not frames:
        raise VideoDecodeError(path, "a sequential decode gives no frame")
    return np.stack(frames)


def verify_decoding(path: str | os.PathLike, singles: int = 100, clip: int = 16, stride: int = 4) -> Verification:
    """Compare maskvid with a sequential decode: the frame count, up to ``singles`` single frames spread evenly,
    and ``clip`` × ``stride`` clips at the start, middle and end, decoded with and without motion vectors."""
    path = os.fspath(path)
    reference = sequential_frames(path)
    result = Verification(path, frame_count(path), len(reference))
    n = min(result.frames, len(reference))
    for i in sorted({int(i) for i in np.linspace(0, n - 1, min(singles, n))}):
        _check(result, f"frame {i}", reference, path, [i], False)
    span = (clip - 1) * stride + 1
    if n >= span:
        for first in (0, (n - span) // 2, n - span):
            indices = list(range(first, first + span, stride))
            for motion in (False, True):
                _check(result, f"clip {first}..{first + span - 1}" + (" (motion)" if motion else ""), reference,
                       path, indices, motion)
    return result


def _check(result: Verification, name: str, reference: np.ndarray, path: str, indices: list[int],
           motion: bool) -> None:
    result.calls += 1
    try:
        frames = decode_clip(path, indices, motion_vectors=motion).frames.numpy()
    except VideoDecodeError as e:
        result.wrong.append(f"{name}: {e.reason}")
        return
    if np.array_equal(frames, reference[indices]):
        result.exact += 1
    else:
        result.wrong.append(name)
