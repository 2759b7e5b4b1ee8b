"""``maskvid convert-tokenizer``: a published tokenizer checkpoint → one maskvid ``.safetensors``, once.

    convert_tokenizer("vqgan_gumbel_f8/ckpts/last.ckpt", "vqgan.safetensors", "vqgan", trust_pickle=True)
    convert_tokenizer("encoder.pkl", "dalle.safetensors", "dalle", trust_pickle=True)

Both published formats are pickles: taming-transformers' Lightning ``last.ckpt`` (a dict whose ``state_dict`` holds
``encoder.*``, ``quant_conv.*``, ``quantize.*`` next to the decoder and GAN loss, and whose other entries hold
omegaconf and Lightning objects) and DALL-E's ``encoder.pkl`` (the whole pickled ``dall_e.encoder.Encoder``).
Unpickling can run arbitrary code, so it needs an explicit ``trust_pickle`` (``--trust-pickle``); without it only
files readable with ``weights_only=True`` (a bare state dict) or ``.safetensors`` are read. With it, classes that
are not installed (``dall_e``, ``omegaconf``, ``pytorch_lightning``) are stood in for, so neither taming nor DALL-E
has to be importable: a module's parameters are read from its pickled ``_parameters``/``_modules``.

The config is read off the checkpoint's key names and shapes; the weights are checked key by key against the
model they must fill, and a wrong file is a CheckpointError naming its first missing key.
"""

from __future__ import annotations

import os
import pickle
import types

import torch

from maskvid.errors import CheckpointError, ConfigError
from maskvid.models.dalle import infer_dalle_config
from maskvid.models.tokenizers import build_tokenizer, save_tokenizer
from maskvid.models.vqgan import infer_vqgan_config

CONVERTIBLE = ("vqgan", "dalle")
KEEP = {"vqgan": ("encoder.", "quant_conv.", "quantize."), "dalle": ("blocks.",)}
INFER = {"vqgan": infer_vqgan_config, "dalle": infer_dalle_config}


class StandIn:
    """Takes the place of a pickled object whose class is not installed; keeps the state it was pickled with."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


class StandInUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (StandIn,), {"__module__": module})


# torch.load takes a pickle *module*; this one differs from ``pickle`` only in its Unpickler
STAND_IN_PICKLE = types.SimpleNamespace(Unpickler=StandInUnpickler, load=pickle.load, __name__="stand_in_pickle")


def module_state(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """The parameters and persistent buffers of a pickled module — a real ``nn.Module`` or a :class:`StandIn` —
    under their dotted names, from the ``_parameters``/``_buffers``/``_modules`` every module pickles."""
    found = vars(obj) if hasattr(obj, "__dict__") else {}
    state: dict[str, torch.Tensor] = {}
    skipped = found.get("_non_persistent_buffers_set", set())
    for table in ("_parameters", "_buffers"):
        for name, value in (found.get(table) or {}).items():
            if isinstance(value, torch.Tensor) and name not in skipped:
                state[prefix + name] = value.detach()
    for name, child in (found.get("_modules") or {}).items():
        if child is not None:
            state.update(module_state(child, f"{prefix}{name}."))
    return state


def trusted_load(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=STAND_IN_PICKLE)
    except Exception as e:  # noqa: BLE001 — whatever unpickling raised, the file is the problem
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None


def read_source(path: str, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """Every tensor of ``path`` under its name: a ``.safetensors``, a state dict, a Lightning checkpoint's
    ``state_dict``, or a pickled module."""
    if not os.path.isfile(path):
        raise ConfigError("SRC", f"{path}: no such file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise ConfigError("--trust-pickle", f"{path} cannot be read as plain tensors: it pickles other objects "
                              "(unpickling those can run any code they carry) or is no checkpoint at all; if you "
                              "trust its source, convert it once with --trust-pickle") from None
        loaded = trusted_load(path)
    except Exception as e:  # noqa: BLE001 — truncated, not a torch file, …: one message
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if isinstance(loaded, dict):
        return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    state = module_state(loaded)
    if not state:
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, neither a state dict nor a module")
    return state


def convert_tokenizer(source: str, out: str, fmt: str, trust_pickle: bool = False) -> dict:
    """Convert ``source`` (a published ``fmt`` checkpoint) into ``out``; returns what was converted."""
    if fmt not in CONVERTIBLE:
        raise ConfigError("--format", f"{fmt!r} not in {CONVERTIBLE}")
    state = read_source(source, trust_pickle)
    kept = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k.startswith(KEEP[fmt])}
    try:
        config = INFER[fmt](kept)
    except KeyError as e:
        raise CheckpointError(f"{source}: missing key {e.args[0]!r} — not a {fmt} checkpoint "
                              f"({len(state)} tensors, e.g. {', '.join(list(state)[:3]) or 'none'})") from None
    import dataclasses

    tokenizer = build_tokenizer(fmt, dataclasses.asdict(config), kept, source)
    save_tokenizer(tokenizer, out)
    return {"out": out, "format": fmt, "factor": tokenizer.factor, "vocab_size": tokenizer.vocab_size,
            "tensors": len(kept), "dropped": len(state) - len(kept), "config": dataclasses.asdict(config)}
