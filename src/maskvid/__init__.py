"""maskvid: masked video pretraining and cheap fine-tuning for action recognition."""

from maskvid.errors import (
    AnnotationError,
    CheckpointError,
    ConfigError,
    DataError,
    MaskvidError,
    VideoDecodeError,
)

__version__ = "0.1.0"

__all__ = [
    "AnnotationError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MaskvidError",
    "VideoDecodeError",
    "__version__",
]
