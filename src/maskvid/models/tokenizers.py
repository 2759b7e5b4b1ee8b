"""Every frozen image tokenizer maskvid reads, behind one interface, in one file format.

A tokenizer has ``factor`` (one id per ``factor × factor`` pixels), ``vocab_size``, ``encode(frames)`` (``(B, 3, H,
W)`` in [0, 1] → ``(B, H/f, W/f)`` ids), ``can_decode`` (with ``decode(ids)`` back to frames when true) and
``memory_format`` (the layout its convolutions run in: channels-last where that was measured faster):

- ``vqvae``: maskvid's trainable VQ-VAE (:mod:`maskvid.models.tokenizer`, ``maskvid train-tokenizer``);
- ``vqgan``: taming-transformers' VQGAN encoder + plain or Gumbel quantizer (:mod:`maskvid.models.vqgan`);
- ``dalle``: the DALL-E dVAE encoder (:mod:`maskvid.models.dalle`).

All are stored as one ``.safetensors`` whose metadata ``maskvid_tokenizer`` holds the format and config; the
published pickles become one with ``maskvid convert-tokenizer`` (:mod:`maskvid.tokenizer_convert`), and maskvid
itself only ever loads safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import os

from torch import nn

from maskvid.errors import CheckpointError
from maskvid.models.dalle import DALLEConfig, DALLETokenizer
from maskvid.models.tokenizer import VQVAE, VQVAEConfig
from maskvid.models.vqgan import VQGANConfig, VQGANTokenizer

FORMATS: dict[str, tuple[type[nn.Module], type]] = {
    "vqvae": (VQVAE, VQVAEConfig),
    "vqgan": (VQGANTokenizer, VQGANConfig),
    "dalle": (DALLETokenizer, DALLEConfig),
}
METADATA_KEY = "maskvid_tokenizer"
LEGACY_METADATA_KEY = "maskvid_vqvae"  # files written before the published formats were added


def format_of(tokenizer: nn.Module) -> str:
    for name, (cls, _) in FORMATS.items():
        if isinstance(tokenizer, cls):
            return name
    raise TypeError(f"{type(tokenizer).__name__} is not a maskvid tokenizer ({', '.join(FORMATS)})")


def check_state(module: nn.Module, state: dict, source: str) -> None:
    """Raise a CheckpointError naming ``source`` and the first key of ``module`` that ``state`` lacks or holds in
    another shape, or the first key it has that ``module`` does not."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r} (expected by {type(module).__name__})")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: {key!r} has shape {tuple(state[key].shape)}, expected "
                                  f"{tuple(value.shape)}")
    extra = [k for k in state if k not in own]
    if extra:
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r} ({len(extra)} in all) for "
                              f"{type(module).__name__}")


def build_tokenizer(fmt: str, config: dict, state: dict, source: str) -> nn.Module:
    """A ``fmt`` tokenizer of ``config`` holding ``state`` (checked key by key), frozen in eval mode."""
    if fmt not in FORMATS:
        raise CheckpointError(f"{source}: unknown tokenizer format {fmt!r}; known: {', '.join(FORMATS)}")
    cls, config_cls = FORMATS[fmt]
    tokenizer = cls(config_cls(**config))
    check_state(tokenizer, state, source)
    tokenizer.load_state_dict(state)
    return tokenizer.eval().requires_grad_(False)


def save_tokenizer(tokenizer: nn.Module, path: str) -> str:
    """Write ``tokenizer``'s weights, format and config to one ``.safetensors``."""
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in tokenizer.state_dict().items()}
    meta = {"format": format_of(tokenizer), "config": dataclasses.asdict(tokenizer.config)}
    tmp = f"{path}.tmp"
    save_file(state, tmp, metadata={METADATA_KEY: json.dumps(meta)})
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def load_tokenizer(path: str) -> nn.Module:
    """A tokenizer written by :func:`save_tokenizer` (or ``maskvid convert-tokenizer``), in eval mode; anything
    else is a CheckpointError naming the file and what is wrong."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 — safe_open has no items()
    except Exception as e:  # noqa: BLE001 — a missing or unreadable file is one problem to the user
        raise CheckpointError(f"{path}: not a readable tokenizer file ({type(e).__name__}: {e})") from None
    if METADATA_KEY in meta:
        header = json.loads(meta[METADATA_KEY])
        fmt, config = header.get("format"), header.get("config", {})
    elif LEGACY_METADATA_KEY in meta:
        fmt, config = "vqvae", json.loads(meta[LEGACY_METADATA_KEY])
    else:
        raise CheckpointError(f"{path}: no {METADATA_KEY} header in its metadata (not written by maskvid "
                              "train-tokenizer or convert-tokenizer)")
    return build_tokenizer(fmt, config, state, path)
