"""Plain nn.Modules: the video ViT encoder, the MAE decoder, a classifier. No losses here (DESIGN.md).

Imports nothing of maskvid but errors.
"""

from maskvid.models.blocks import Attention, Block, DividedBlock, Mlp, TokenLayout
from maskvid.models.classifier import VideoClassifier
from maskvid.models.decoders import DecoderConfig, MAEDecoder
from maskvid.models.heads import BridgingClassifier, ProbeHead, masked_mean
from maskvid.models.vit import PRESETS, PositionEmbedding, VideoViT, ViTConfig, sincos_table, visible_layout

__all__ = [
    "PRESETS", "Attention", "Block", "BridgingClassifier", "DecoderConfig", "DividedBlock", "MAEDecoder", "Mlp",
    "PositionEmbedding", "ProbeHead", "TokenLayout", "VideoClassifier", "VideoViT", "ViTConfig", "masked_mean",
    "sincos_table", "visible_layout",
]
