"""Codec motion vectors (FFmpeg ``export_mvs``) → a dense motion field in pixels per frame.

MGM (§3.2) defines the motion vector of pixel (x, y) at frame t as its displacement from frame t-1, read from the
H.264 stream at block resolution. FFmpeg exports, per predicted block, the block centre in the current frame
(``dst``), the matching position in the reference frame (``src = dst + motion/motion_scale``) and whether that
reference lies in the past (``source < 0``) or the future (``source > 0``). Two facts turn these into velocities:

* a B-frame block predicted from the future points the other way, so its sign flips;
* a reference is rarely the previous frame (x264's default mini-GOP puts P-frames 2–4 frames apart), so the
  displacement is divided by the display distance to the reference. FFmpeg does not export which reference a block
  used; we take the nearest frame on that side that was decoded earlier and can be a reference (I/P frames and the
  B-frames of a B-pyramid) — :func:`reference_distances` — which is what x264 picks for ref 0. A block that used an
  older reference (x264's ``ref=3``) is over-estimated by that factor; the field is guidance, not flow.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

MOTION_CELL = 4
"""Side of a motion-field cell in output pixels: the field of an (H, W) frame is (ceil(H/4), ceil(W/4), 2)."""


def reference_distances(decode_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Display distance from each frame to its nearest possible past and future reference.

    Args:
        decode_order: ``(N,)`` display index of each frame, in decoding order (packets sorted by dts).
    Returns:
        ``(past, future)``, each ``(N,)`` float in display order; ``inf`` where no reference exists on that side.
    """
    order = [int(i) for i in decode_order]
    n = len(order)
    is_reference = [True] * n  # indexed by position in decode order
    seen_max = -1
    for pos, shown in enumerate(order):
        out_of_order = shown < seen_max  # decoded after a later-shown frame: a B-frame
        seen_max = max(seen_max, shown)
        if out_of_order:
            # In a B-run only pyramid references are followed (in decode order) by a B shown before them.
            run_end = pos + 1
            while run_end < n and order[run_end] < seen_max:
                run_end += 1
            is_reference[pos] = any(order[q] < shown for q in range(pos + 1, run_end))
    past = np.full(n, np.inf)
    future = np.full(n, np.inf)
    refs: list[int] = []
    for pos, shown in enumerate(order):
        k = bisect.bisect_left(refs, shown)
        if k > 0:
            past[shown] = shown - refs[k - 1]
        if k < len(refs):
            future[shown] = refs[k] - shown
        if is_reference[pos]:
            bisect.insort(refs, shown)
    return past, future


def rasterize_motion_vectors(
    vectors: np.ndarray,
    frame_hw: tuple[int, int],
    past_distance: float,
    future_distance: float,
    cell: int = MOTION_CELL,
) -> np.ndarray:
    """Paint FFmpeg ``AVMotionVector`` records onto a grid of ``cell``-pixel cells.

    Args:
        vectors: structured array from ``frame.side_data['MOTION_VECTORS'].to_ndarray()`` with fields
            ``source, w, h, dst_x, dst_y, motion_x, motion_y, motion_scale``.
        frame_hw: coded frame size ``(H, W)`` the vectors refer to.
        past_distance / future_distance: display distance to the reference on each side (see module doc).
    Returns:
        ``(ceil(H/cell), ceil(W/cell), 2)`` float32 velocity ``(dx, dy)`` in pixels per frame; cells predicted from
        both sides average the two estimates; intra-coded cells are 0.
    """
    gh, gw = -(-frame_hw[0] // cell), -(-frame_hw[1] // cell)
    if len(vectors) == 0:
        return np.zeros((gh, gw, 2), np.float32)
    source = vectors["source"].astype(np.int64)
    scale = np.maximum(vectors["motion_scale"].astype(np.float32), 1.0)
    distance = np.where(source < 0, past_distance, future_distance)
    distance = np.where(np.isfinite(distance) & (distance > 0), distance, 1.0).astype(np.float32)
    # motion = (src - dst) * scale; a past reference shows where the block came from, so velocity = -(src - dst)/d.
    sign = np.where(source < 0, -1.0, 1.0).astype(np.float32)
    vx = sign * vectors["motion_x"].astype(np.float32) / scale / distance
    vy = sign * vectors["motion_y"].astype(np.float32) / scale / distance

    bw = np.maximum(vectors["w"].astype(np.int64) // cell, 1)
    bh = np.maximum(vectors["h"].astype(np.int64) // cell, 1)
    x0 = (vectors["dst_x"].astype(np.int64) - vectors["w"].astype(np.int64) // 2) // cell
    y0 = (vectors["dst_y"].astype(np.int64) - vectors["h"].astype(np.int64) // 2) // cell
    # Expand each block into its cells: block b covers bh[b]*bw[b] cells.
    per_block = bh * bw
    block = np.repeat(np.arange(len(vectors)), per_block)
    within = np.arange(block.size) - np.repeat(np.cumsum(per_block) - per_block, per_block)
    cy = np.clip(y0[block] + within // bw[block], 0, gh - 1)
    cx = np.clip(x0[block] + within % bw[block], 0, gw - 1)
    flat = cy * gw + cx
    count = np.bincount(flat, minlength=gh * gw)
    field = np.stack(
        [
            np.bincount(flat, weights=vx[block], minlength=gh * gw),
            np.bincount(flat, weights=vy[block], minlength=gh * gw),
        ],
        axis=-1,
    )
    field /= np.maximum(count, 1)[:, None]
    return field.reshape(gh, gw, 2).astype(np.float32)


def resize_field(
    field: np.ndarray, out_hw: tuple[int, int], in_hw: tuple[int, int], cell: int = MOTION_CELL
) -> np.ndarray:
    """Resample a ``(h, w, 2)`` field of an ``in_hw`` frame to the cell grid of an ``out_hw`` frame.

    Vectors are in pixels, so they are rescaled by the same factors as the frame (x by W'/W, y by H'/H).
    """
    gh, gw = -(-out_hw[0] // cell), -(-out_hw[1] // cell)
    if field.shape[:2] != (gh, gw):
        # torch keeps this free of OpenCV's own thread pool inside data-loader workers
        shrinking = gh < field.shape[0] or gw < field.shape[1]
        grid = torch.from_numpy(np.ascontiguousarray(field)).permute(2, 0, 1)[None]
        mode = "area" if shrinking else "nearest"
        field = torch.nn.functional.interpolate(grid, size=(gh, gw), mode=mode)[0].permute(1, 2, 0).numpy()
    scale = np.array([out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]], np.float32)
    return (field * scale).astype(np.float32)
