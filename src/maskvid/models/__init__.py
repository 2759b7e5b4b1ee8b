"""Plain nn.Modules: the video ViT encoder (stems, block layouts), decoders, heads, a classifier. No losses here
(DESIGN.md).

Imports nothing of maskvid but the bottom floor (errors, registry).
"""

from maskvid.models.blocks import Attention, Block, DividedBlock, Mlp, TokenLayout, init_weights
from maskvid.models.classifier import VideoClassifier
from maskvid.models.decoders import DecoderConfig, MAEDecoder
from maskvid.models.frozen import Frozen, frozen_parts
from maskvid.models.heads import BridgingClassifier, ProbeHead, masked_mean
from maskvid.models.layouts import LAYOUTS
from maskvid.models.stems import STEMS, FrameStem, TokenStem, TubeletStem
from maskvid.models.tokens import MaskOrder, fill_masked, gather_tokens, order_ids
from maskvid.models.vit import PRESETS, PositionEmbedding, VideoViT, ViTConfig, sincos_table, visible_layout

__all__ = [
    "LAYOUTS", "PRESETS", "STEMS", "Attention", "Block", "BridgingClassifier", "DecoderConfig", "DividedBlock",
    "FrameStem", "Frozen", "MAEDecoder", "MaskOrder", "Mlp", "PositionEmbedding", "ProbeHead", "TokenLayout",
    "TokenStem", "TubeletStem", "frozen_parts",
    "VideoClassifier", "VideoViT", "ViTConfig", "fill_masked", "gather_tokens", "init_weights", "masked_mean",
    "order_ids", "sincos_table", "visible_layout",
]
