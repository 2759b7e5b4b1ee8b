"""Motion sources: codec motion vectors and optical flow as dense fields, and their per-slice magnitudes for
guided masking, and dense trajectories (MME; camera-motion removal to come).

Imports nothing of maskvid but errors.
"""

from maskvid.motion.flow import FLOW_BOUND, dis_flow, forward_flow
from maskvid.motion.guidance import slice_magnitude
from maskvid.motion.trajectories import Trajectories, grid_points, track_points
from maskvid.motion.vectors import (
    MOTION_CELL,
    rasterize_motion_vectors,
    reference_distances,
    resize_field,
    rotate_field,
)

__all__ = ["FLOW_BOUND", "MOTION_CELL", "Trajectories", "dis_flow", "forward_flow", "grid_points",
           "rasterize_motion_vectors", "reference_distances", "resize_field", "rotate_field", "slice_magnitude",
           "track_points"]
