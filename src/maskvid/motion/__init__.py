"""Motion sources: codec motion vectors (optical flow, camera motion and trajectories to come).

Imports nothing of maskvid but errors.
"""

from maskvid.motion.vectors import MOTION_CELL, rasterize_motion_vectors, reference_distances, resize_field

__all__ = ["MOTION_CELL", "rasterize_motion_vectors", "reference_distances", "resize_field"]
