"""The synthetic benchmark (``maskvid synth``): procedural scenes encoded as real H.264 MP4s with train/val lists.

Not data loading: the files it writes are read back through :mod:`maskvid.data` like any other video.
"""

from maskvid.synth.benchmark import SynthConfig, render_video, synthesize
from maskvid.synth.encode import write_video

__all__ = ["SynthConfig", "render_video", "synthesize", "write_video"]
