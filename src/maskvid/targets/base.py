"""The target protocol every prediction target follows (DESIGN.md, "Methods").

A target is a parameter-free module that says what it needs and what it gives:

- ``inputs``: the batch keys it reads, e.g. ``("video",)``, ``("video", "flow")``, ``("tokens",)``; a method
  forwards exactly these (and the dataset produces them in its workers);
- ``kind``: ``"regression"`` (values ``(B, N, D)``) or ``"classes"`` (class ids ``(B, N)``, ``dim`` classes);
- ``dim``: entries per token, or the number of classes;
- ``target(**inputs)`` → the per-token values; ``target.validity(**inputs)`` → ``(B, N)`` or ``(B, N, D)`` bool
  per sample (False: leave this token or entry out of the loss), or None when everything counts;
- ``target.check_batch(batch)``: the checks that must read the batch's values (an id out of range), made by the
  method's ``prepare`` on the host batch before it is sent. On a GPU the same read inside the step would make the
  host wait for the device, so there a target reads nothing (:func:`maskvid.models.tokens.reads_freely`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from maskvid.errors import InputError

KINDS = ("regression", "classes")


@dataclass
class TargetValues:
    """values: ``(B, N, D)`` float or ``(B, N)`` long class ids; valid: ``(B, N[, D])`` bool or None."""

    values: torch.Tensor
    valid: torch.Tensor | None = None


class Target(nn.Module):
    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("video",)
    kind: ClassVar[str] = "regression"

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def validity(self, **inputs) -> torch.Tensor | None:
        """Per-sample validity ``(B, N)`` or ``(B, N, D)``; None when every token and entry counts."""
        return None

    def check_batch(self, batch: dict) -> None:
        """Check what this target reads in ``batch`` (host tensors, before they are sent); InputError naming the
        key. Default: nothing to check by value."""

    @torch.no_grad()
    def compute(self, batch: dict) -> TargetValues:
        """Values and validity from the batch keys this target declares."""
        missing = [k for k in self.inputs if k not in batch]
        if missing:
            raise InputError(missing[0], f"the {type(self).__name__} target needs it; the batch has "
                             f"{', '.join(sorted(batch))}")
        inputs = {k: batch[k] for k in self.inputs}
        return TargetValues(self(**inputs), self.validity(**inputs))
