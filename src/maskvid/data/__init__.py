"""Video data: decoding, clip sampling, transforms, datasets, synthetic benchmark data."""

from maskvid.data.annotations import VideoRecord, read_annotation_list, read_class_names, scan_class_folders
from maskvid.data.datasets import BadVideoLog, VideoDataset, collate
from maskvid.data.decode import Clip, VideoInfo, decode_clip, frame_count, probe_video
from maskvid.data.transforms import ClipTransform

__all__ = [
    "BadVideoLog",
    "Clip",
    "ClipTransform",
    "VideoDataset",
    "VideoInfo",
    "VideoRecord",
    "collate",
    "decode_clip",
    "frame_count",
    "probe_video",
    "read_annotation_list",
    "read_class_names",
    "scan_class_folders",
]
