"""Dense trajectories (MME eq. 4, 6, 7) through real optical flow on a scene with known motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import moving_square_frames
from maskvid.errors import ConfigError, InputError
from maskvid.motion import forward_flow, grid_points, track_points

L = 6  # MME's default trajectory length


def square_scene(flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """7 frames of the textured square moving +2 px/frame right (x0 = 16 + 2t, rows 48..79) and grid points."""
    frames = np.stack(moving_square_frames(n=L + 1, size=128, speed=2))
    if flip:
        frames = np.ascontiguousarray(frames[:, :, ::-1])
    return torch.from_numpy(frames), grid_points((8, 8), patch=16, k=4)


def test_points_on_the_moving_square_move_two_pixels_a_frame_and_the_background_stays():
    frames, points = square_scene()
    track = track_points(forward_flow(frames), points)
    assert track.positions.shape == (L + 1, 8 * 8 * 4, 2) and track.deltas.shape == (L, 256, 2)
    x, y = points[:, 0], points[:, 1]
    # ≥ 8 px inside its first position (x 16..47, y 48..79): within ~4 px of the motion boundary DIS smooths the flow
    # across it and points read 1.7-1.85 px a frame (measured), as dense flow does at object borders
    on_square = (x >= 24) & (x <= 40) & (y >= 56) & (y <= 72)
    far = (y < 36) | (y > 92)  # rows the square never comes near
    assert int(on_square.sum()) == 4 and int(far.sum()) >= 100
    moving = track.deltas[:, on_square].mean((0, 1))
    assert abs(float(moving[0]) - 2.0) < 0.1 and abs(float(moving[1])) < 0.1
    assert float(track.deltas[:, far].abs().max()) < 0.1
    assert bool(track.valid.all())


def test_a_flipped_clip_negates_the_horizontal_movement():
    frames, points = square_scene(flip=True)
    track = track_points(forward_flow(frames), points)
    x, y = points[:, 0], points[:, 1]
    on_square = (127 - x >= 24) & (127 - x <= 40) & (y >= 56) & (y <= 72)  # the mirrored first position
    moving = track.deltas[:, on_square].mean((0, 1))
    assert abs(float(moving[0]) + 2.0) < 0.1 and abs(float(moving[1])) < 0.1


def test_eq6_steps_by_the_median_filtered_flow_and_a_point_that_leaves_the_frame_is_invalid():
    flows = torch.zeros(3, 16, 16, 2)
    flows[..., 0] = 3.0
    flows[1, 4, 8] = torch.tensor([40.0, 40.0])  # an outlier where point 2 is at step 1: the median removes it
    points = torch.tensor([[2.0, 5.0], [12.0, 8.0], [5.0, 4.0]])
    track = track_points(flows, points)
    torch.testing.assert_close(track.positions[:, 0, 0], torch.tensor([2.0, 5.0, 8.0, 11.0]))
    assert track.valid.tolist() == [True, False, True]  # 12 → 15 → 18: out of a 16-pixel-wide frame
    torch.testing.assert_close(track.deltas[:, 2], torch.tensor([[3.0, 0.0]] * 3))
    unfiltered = track_points(flows, points, median=False)
    assert float(unfiltered.deltas[1, 2, 1]) > 0  # without the median the outlier drags the point down


def test_flow_is_bounded_and_bad_input_is_refused():
    frames, _ = square_scene()
    flow = forward_flow(frames[:2], bound=1.0)
    assert flow.shape == (1, 128, 128, 2) and float(flow.abs().max()) <= 1.0
    farneback = forward_flow(frames[:3], method="farneback")
    assert farneback.shape == (2, 128, 128, 2)
    with pytest.raises(ConfigError, match="target.k"):
        grid_points((2, 2), patch=16, k=3)
    with pytest.raises(InputError, match="frames"):
        forward_flow(frames[:1])
    with pytest.raises(ConfigError, match="data.flow_method"):
        forward_flow(frames, method="raft")
    with pytest.raises(InputError, match="flows"):
        track_points(torch.zeros(3, 16, 16), torch.zeros(1, 2))
