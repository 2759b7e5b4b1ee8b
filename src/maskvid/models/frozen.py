"""Frozen parts: modules a method uses but never trains — a VQ tokenizer, RAFT — loaded from a local path.

A :class:`Frozen` is a plain object, not an ``nn.Module``: assigned as an attribute of a module it stays outside
the parameter tree, so it is never handed to the optimizer and never written into a method's checkpoint. It is
always in eval mode and runs without gradients; :meth:`maskvid.methods.base.MaskedPrediction.to` (any ``_apply``)
moves it with the method.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from maskvid.errors import CheckpointError


class Frozen:
    def __init__(self, module: nn.Module, source: str | None = None):
        self.module = module.eval().requires_grad_(False)
        self.source = source  # where its weights came from, for reports

    @classmethod
    def load(cls, module: nn.Module, path: str | os.PathLike) -> Frozen:
        """``module`` with the weights of a local ``.safetensors`` or ``.pt`` file (``weights_only``); every key must
        match. Nothing is downloaded."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such file (frozen weights load from a local path)")
        try:
            if path.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 — unreadable, unsafe or mismatched: one CheckpointError
            raise CheckpointError(f"{path}: cannot be loaded into {type(module).__name__} ({type(e).__name__}: "
                                  f"{e})") from e
        return cls(module, path)

    def __call__(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def apply(self, fn) -> None:
        """Apply a tensor function (``.to(device)``, ``.half()``) to the frozen weights, as ``nn.Module._apply``."""
        self.module._apply(fn)


def frozen_parts(module: nn.Module) -> list[Frozen]:
    """Every :class:`Frozen` held as an attribute by ``module`` or its submodules."""
    return [v for m in module.modules() for v in vars(m).values() if isinstance(v, Frozen)]


class CarriesFrozenParts(nn.Module):
    """A module whose :class:`Frozen` parts (a target's tokenizer, RAFT) move with it — ``.to(device)``,
    ``.half()`` — though they are not among its parameters, never trained and never saved."""

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for part in frozen_parts(self):
            part.apply(fn)
        return self
