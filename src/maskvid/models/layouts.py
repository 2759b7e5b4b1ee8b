"""How an encoder's (or MAM² decoder's) blocks attend over the token grid, by ``model.attention`` name:
``joint`` (one attention over all tokens, ViT/VideoMAE), ``divided`` (time, then space; TimeSformer), ``t_hw``
(VIMPAC's T,H|W: time, then rows and columns, post-LN) and ``thw_split`` (T|H|W: the three axes in one
block, each on a third of the width)."""

from __future__ import annotations

from functools import partial

from maskvid.models.axial import AxialBlock
from maskvid.models.blocks import Block, DividedBlock
from maskvid.registry import Registry

AXIAL = ("t_hw", "thw_split")  # attend along grid lines: every token must be there (hide: replace)
LAYOUTS = Registry("attention layout", "model.attention", {
    "joint": Block, "divided": DividedBlock,
    "t_hw": partial(AxialBlock, layout="t,h|w"), "thw_split": partial(AxialBlock, layout="t|h|w")})
