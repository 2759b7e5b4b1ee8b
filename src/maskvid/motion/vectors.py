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

from maskvid.motion.field_maps import apply_maps, resize_map

MOTION_CELL = 4
"""Side of a motion-field cell in output pixels: the field of an (H, W) frame is (ceil(H/4), ceil(W/4), 2)."""

AV_MOTION_VECTOR = np.dtype(
    [("source", np.int32), ("w", np.uint8), ("h", np.uint8), ("src_x", np.int16), ("src_y", np.int16),
     ("dst_x", np.int16), ("dst_y", np.int16), ("flags", np.uint64), ("motion_x", np.int32), ("motion_y", np.int32),
     ("motion_scale", np.uint16)],
    align=True,
)
"""FFmpeg's ``AVMotionVector`` record (40 bytes), as PyAV's ``MotionVectors.to_ndarray`` reads it; built once here
(PyAV builds the dtype on every call, half the cost of reading a frame's vectors)."""


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
    """Paint one frame's FFmpeg ``AVMotionVector`` records onto a grid of ``cell``-pixel cells.

    Args:
        vectors: structured array from ``frame.side_data['MOTION_VECTORS'].to_ndarray()`` with fields
            ``source, w, h, dst_x, dst_y, motion_x, motion_y, motion_scale``.
        frame_hw: coded frame size ``(H, W)`` the vectors refer to.
        past_distance / future_distance: display distance to the reference on each side (see module doc).
    Returns:
        ``(ceil(H/cell), ceil(W/cell), 2)`` float32 velocity ``(dx, dy)`` in pixels per frame; cells predicted from
        both sides average the two estimates; intra-coded cells are 0.
    """
    return rasterize_frames([vectors], frame_hw, np.array([past_distance]), np.array([future_distance]), cell)[0]


def rasterize_frames(
    vectors: list[np.ndarray],
    frame_hw: tuple[int, int],
    past_distance: np.ndarray,
    future_distance: np.ndarray,
    cell: int = MOTION_CELL,
) -> np.ndarray:
    """:func:`rasterize_motion_vectors` for T frames in one vectorized pass: ``(T, ceil(H/cell), ceil(W/cell), 2)``.

    Blocks are painted with a 2D difference array (+ at two corners, - at the other two, then prefix sums), so the
    cost grows with the number of blocks and cells, not with blocks × their area; a whole clip takes well under a
    millisecond.
    """
    if not any(len(v) for v in vectors):
        return np.zeros((len(vectors), *_cells(frame_hw, cell), 2), np.float32)
    return _paint_differences(_blocks(vectors, past_distance, future_distance), len(vectors), frame_hw, cell)


def _paint_differences(blocks, frames: int, frame_hw: tuple[int, int], cell: int) -> np.ndarray:
    """:func:`_blocks`' records painted on ``cell``-pixel cells: ``(T, ceil(H/cell), ceil(W/cell), 2)`` float32."""
    frame, left, top, width, height, velocity = blocks
    gh, gw = _cells(frame_hw, cell)
    x0 = np.clip(left // cell, 0, gw)
    y0 = np.clip(top // cell, 0, gh)
    x1 = np.minimum(x0 + np.maximum(width // cell, 1), gw)
    y1 = np.minimum(y0 + np.maximum(height // cell, 1), gh)
    plane = (gh + 1) * (gw + 1)
    base = frame * plane
    top_left = base + y0 * (gw + 1) + x0
    # a bi-predicted block comes as two records (past and future) on the same cells: paint their mean
    shared = np.bincount(top_left, minlength=frames * plane)[top_left].astype(np.float32)
    values = velocity.T / shared  # (2, n)
    flat = np.concatenate([top_left, base + y0 * (gw + 1) + x1, base + y1 * (gw + 1) + x0, base + y1 * (gw + 1) + x1])
    weights = np.concatenate([values, -values, -values, values], axis=1)  # the corners' signs
    size = frames * plane
    diff = np.bincount(np.concatenate([flat, flat + size]), weights.ravel(), 2 * size)  # both channels, one pass
    # prefix sums (in place) turn corner marks into painted blocks; torch's cumsum is ~3x numpy's at this size
    field = torch.from_numpy(diff).view(2, frames, gh + 1, gw + 1)
    torch.cumsum(field, 2, out=field)
    torch.cumsum(field, 3, out=field)
    field = field[:, :, :gh, :gw]
    # one copy to a compact channel-last float32 array: reductions over a strided view were 5x slower
    return torch.empty((frames, gh, gw, 2), dtype=torch.float32).copy_(field.permute(1, 2, 3, 0)).numpy()


def _aligned(grid: int, left: np.ndarray, top: np.ndarray, width: np.ndarray, height: np.ndarray) -> bool:
    """Whether every block lies on a ``grid``-pixel grid (its corner and size multiples of ``grid``)."""
    if (left < 0).any() or (top < 0).any():
        return False
    if grid & (grid - 1) == 0:  # a power of two: one pass over the OR of all four
        return not ((left | top | width | height) & (grid - 1)).any()
    return all(not (a % grid).any() for a in (left, top, width, height))


def _cells(hw: tuple[int, int], cell: int) -> tuple[int, int]:
    return -(-hw[0] // cell), -(-hw[1] // cell)


def _blocks(vectors: list[np.ndarray], past_distance: np.ndarray, future_distance: np.ndarray):
    """Every record of T frames' vectors as columns: frame, left, top, width, height (coded pixels, int32) and
    velocity ``(n, 2)`` (dx, dy) in pixels per frame."""
    sizes = [len(v) for v in vectors]
    present = [v for v in vectors if len(v)]
    # concatenating structured arrays field by field is slow; their raw bytes concatenate at memcpy speed
    v = np.concatenate([p.view(np.uint8).reshape(len(p), -1) for p in present]).view(present[0].dtype).ravel()
    frame = np.repeat(np.arange(len(vectors), dtype=np.int32), sizes)
    # motion = (src - dst) * scale; a past reference (source < 0) shows where the block came from, so velocity =
    # -(src - dst)/d, a future one where it goes, +(src - dst)/d: a factor per frame and side (d unknown or <= 0: 1)
    distance = np.array([past_distance, future_distance], np.float64).reshape(2, len(vectors))
    distance[~np.isfinite(distance) | (distance <= 0)] = 1.0
    per_side = np.array([[-1.0], [1.0]]) / distance
    factor = per_side[(v["source"] >= 0).view(np.int8), frame] / np.maximum(v["motion_scale"], 1)
    velocity = np.stack([v["motion_x"] * factor, v["motion_y"] * factor], axis=-1)
    width, height = v["w"].astype(np.int32), v["h"].astype(np.int32)
    return frame, v["dst_x"] - width // 2, v["dst_y"] - height // 2, width, height, velocity


def motion_field(
    vectors: list[np.ndarray],
    coded_hw: tuple[int, int],
    out_hw: tuple[int, int],
    past_distance: np.ndarray,
    future_distance: np.ndarray,
    cell: int = MOTION_CELL,
) -> np.ndarray:
    """:func:`rasterize_frames` then :func:`resize_field` to ``out_hw`` in one pass (equal to them up to float
    rounding): ``(T, ceil(out_h/cell), ceil(out_w/cell), 2)`` float32.

    The blocks of H.264 and MPEG video are multiples of 8 pixels on an 8-pixel grid. Such blocks are painted on
    cells twice the size — each then covers at most 2×2 cells, so painting is a scatter rather than prefix sums —
    and one small resampling map per axis takes that grid to the output: the ×2 upsampling, the crop to
    ``ceil(H/cell)`` cells and ``resize_field``'s area or nearest resampling, composed. Other blocks are painted by
    :func:`rasterize_frames` and resampled alike. A 16-frame clip of 340×256 H.264 to a 224 short side: 0.7 ms
    one core, 1.7 ms the two-pass way (most of it prefix sums and area pooling over the fine grid).
    """
    gh, gw = _cells(coded_hw, cell)
    oh, ow = _cells(out_hw, cell)
    if not any(len(v) for v in vectors):
        return np.zeros((len(vectors), oh, ow, 2), np.float32)
    frame, left, top, width, height, velocity = _blocks(vectors, past_distance, future_distance)
    scale = np.array([out_hw[1] / coded_hw[1], out_hw[0] / coded_hw[0]])  # vectors scale with the frame
    blocks = (frame, left, top, width, height, velocity * scale)
    coarse = 2 * cell
    if _aligned(coarse, left, top, width, height):
        painted, factor = _scatter(blocks, len(vectors), coded_hw, coarse), 2
    else:
        painted, factor = _paint_differences(blocks, len(vectors), coded_hw, cell), 1
    shrinking = oh < gh or ow < gw  # resize_field's one mode for both axes
    rows = resize_map(painted.shape[1], factor, gh, oh, shrinking)
    return apply_maps(painted, rows, resize_map(painted.shape[2], factor, gw, ow, shrinking))


def _scatter(blocks, frames: int, coded_hw: tuple[int, int], coarse: int) -> np.ndarray:
    """``(T, ceil(H/coarse), ceil(W/coarse), 2)`` float64: blocks on a ``coarse``-pixel grid they are aligned to."""
    frame, left, top, width, height, velocity = blocks
    ch, cw = _cells(coded_hw, coarse)
    x0, y0 = np.minimum(left // coarse, cw), np.minimum(top // coarse, ch)
    x1, y1 = np.minimum(x0 + width // coarse, cw), np.minimum(y0 + height // coarse, ch)
    size = frames * ch * cw
    top_left = (frame * ch + y0) * cw + x0
    # a bi-predicted block comes as two records (past and future) on the same cells: paint their mean (a block past
    # the frame's last cell covers none; its top_left is another row's first cell, so it is not counted there)
    counted = np.where((x0 < x1) & (y0 < y1), top_left, size)
    shared = np.bincount(counted, minlength=size + 1)[counted]
    vx, vy = velocity[:, 0] / shared, velocity[:, 1] / shared
    cells, along_x, along_y = [np.zeros(0, np.int64)], [np.zeros(0)], [np.zeros(0)]  # (no block may cover a cell)
    for dy in range(int((y1 - y0).max())):
        for dx in range(int((x1 - x0).max())):
            covered = (y0 + dy < y1) & (x0 + dx < x1)  # weight 0 where the block is narrower than the offset
            cells.append(np.minimum(top_left + dy * cw + dx, size - 1))
            along_x.append(vx * covered)
            along_y.append(vy * covered)
    cells = np.concatenate(cells)
    painted = [np.bincount(cells, np.concatenate(along), size) for along in (along_x, along_y)]
    return np.stack(painted, axis=-1).reshape(frames, ch, cw, 2)


def resize_field(
    field: np.ndarray, out_hw: tuple[int, int], in_hw: tuple[int, int], cell: int = MOTION_CELL
) -> np.ndarray:
    """Resample a ``(h, w, 2)`` or ``(T, h, w, 2)`` field of an ``in_hw`` frame to the cell grid of ``out_hw``.

    Vectors are in pixels, so they are rescaled by the same factors as the frame (x by W'/W, y by H'/H).
    """
    gh, gw = -(-out_hw[0] // cell), -(-out_hw[1] // cell)
    if field.shape[-3:-1] != (gh, gw):
        # torch keeps this free of OpenCV's own thread pool inside data-loader workers
        shrinking = gh < field.shape[-3] or gw < field.shape[-2]
        # pooling a compact (N, 2, h, w) tensor took 1.1 ms a clip; the channel-last view of the same, 1.7 ms
        grid = torch.from_numpy(np.ascontiguousarray(field)).reshape(-1, *field.shape[-3:]).permute(0, 3, 1, 2)
        grid = grid.contiguous()
        mode = "area" if shrinking else "nearest"
        resized = torch.nn.functional.interpolate(grid, size=(gh, gw), mode=mode).permute(0, 2, 3, 1)
        field = resized.reshape(*field.shape[:-3], gh, gw, 2).numpy()
    if tuple(out_hw) == tuple(in_hw) and field.dtype == np.float32:
        return field
    scale = np.array([out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]], np.float32)
    return (field * scale).astype(np.float32)


def rotate_field(field: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Rotate a ``(..., h, w, 2)`` field counter-clockwise by ``quarter_turns`` × 90°, as ``np.rot90`` rotates the
    frames it belongs to; the vectors turn with the grid (90°: ``(dx, dy) → (dy, -dx)`` in image coordinates)."""
    k = quarter_turns % 4
    if k == 0:
        return field
    grid = np.rot90(field, k, axes=(-3, -2))
    dx, dy = grid[..., 0], grid[..., 1]
    turned = {1: (dy, -dx), 2: (-dx, -dy), 3: (-dy, dx)}[k]
    return np.ascontiguousarray(np.stack(turned, axis=-1), dtype=np.float32)
