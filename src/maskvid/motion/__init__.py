"""Motion sources: codec motion vectors and optical flow as dense fields, and their per-slice magnitudes for
guided masking (camera motion and trajectories to come).

Imports nothing of maskvid but errors.
"""

from maskvid.motion.flow import dis_flow
from maskvid.motion.guidance import slice_magnitude
from maskvid.motion.vectors import (
    MOTION_CELL,
    rasterize_motion_vectors,
    reference_distances,
    resize_field,
    rotate_field,
)

__all__ = ["MOTION_CELL", "dis_flow", "rasterize_motion_vectors", "reference_distances", "resize_field",
           "rotate_field", "slice_magnitude"]
