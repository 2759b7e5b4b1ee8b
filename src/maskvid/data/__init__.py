"""Video data: decoding, clip sampling, transforms, datasets, synthetic benchmark data."""

from maskvid.data.decode import Clip, VideoInfo, decode_clip, probe_video

__all__ = ["Clip", "VideoInfo", "decode_clip", "probe_video"]
