"""MME's motion-trajectory target (§3.3, Tab. 5 and 7): per token, the K·L position deltas Δp (eq. 4) and the K·L
trajectory-aligned HOG histograms (eq. 5) of the K trajectories starting in the token's patch, each part
normalized over the patch (Tab. 7b), with trajectories that leave the frame left out of the loss (eq. 7).

The trajectories themselves are made in the data-loader workers from the raw frames between the clip's sampled
frames (:mod:`maskvid.motion.trajectory_features`); they reach this target as the batch keys ``trajectory``
``(B, N, K, L, 2 + bins)`` and ``trajectory_valid`` ``(B, N, K)``. The options that decide how they are made
(``k``, ``length``, ``flow_stride``, ``camera``, ``flow``, ``flow_preset``, ``bins``) are this target's options too:
:attr:`Trajectory.spec` hands them to the dataset, so one ``heads`` entry configures the whole target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from maskvid.errors import ConfigError, InputError
from maskvid.motion.trajectory_features import TrajectorySpec
from maskvid.targets.base import Target

MERGES = ("mean", "max")


@dataclass(eq=False)
class Trajectory(Target):
    """``(B, N, K'·L·2 [+ K'·L·bins])``: position part, then shape part (K' = K, or 1 when merged).

    shape: include the HOG part (False: Tab. 5 "Traj. w/o shape"); merge: ``mean`` or ``max`` folds the K
    trajectories into one (Tab. 7c: the mean, or the most salient — largest path length); patch_norm: each part
    normalized to zero mean, unit variance over the patch's valid trajectories (Tab. 7b; unbiased, as VideoMAE's
    pixels). The other options are :class:`~maskvid.motion.trajectory_features.TrajectorySpec`'s.
    """

    name = "trajectory"
    inputs = ("trajectory", "trajectory_valid")

    patch: tuple[int, int, int] = (2, 16, 16)
    k: int = 4
    length: int = 6
    flow_stride: int = 1
    camera: str | None = "klt"
    flow: str = "dis"
    flow_preset: str = "medium"
    raft_weights: str | None = None
    bins: int = 9
    shape: bool = True
    merge: str | None = None
    patch_norm: bool = True
    eps: float = 1e-6

    def __post_init__(self):
        super().__init__()
        self.patch = tuple(self.patch)
        if self.merge not in (None, *MERGES):
            raise ConfigError("target.merge", f"{self.merge!r} not in {MERGES} or null")
        for key in ("shape", "patch_norm"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"target.{key}", f"must be true or false, got {getattr(self, key)!r}")
        self.spec = TrajectorySpec(self.k, self.length, self.flow_stride, self.camera, self.flow, self.flow_preset,
                                   bins=self.bins, raft_weights=self.raft_weights, hog=self.shape)
        if self.patch[1] % math.isqrt(self.k) or self.patch[1] != self.patch[2]:
            raise ConfigError("target.k", f"{self.k} points do not split a {self.patch[1]}×{self.patch[2]} patch "
                              "evenly (trajectories need square patches)")

    @property
    def dim(self) -> int:
        per_step = 2 + (self.bins if self.shape else 0)
        return (1 if self.merge else self.k) * self.length * per_step

    def _checked(self, trajectory: torch.Tensor, trajectory_valid: torch.Tensor):
        # without shape the worker makes Δp alone; full features (from another spec) have their HOG dropped
        accepted = {(self.k, self.length, c) for c in (self.spec.channels, 2 + self.bins)}
        if trajectory.dim() != 5 or tuple(trajectory.shape[2:]) not in accepted:
            expected = (self.k, self.length, self.spec.channels)
            raise InputError("trajectory", f"expected (B, N, {', '.join(map(str, expected))}), got "
                             f"{tuple(trajectory.shape)}")
        if tuple(trajectory_valid.shape) != tuple(trajectory.shape[:3]) or trajectory_valid.dtype != torch.bool:
            raise InputError("trajectory_valid", f"expected bool {tuple(trajectory.shape[:3])}, got "
                             f"{trajectory_valid.dtype} {tuple(trajectory_valid.shape)}")
        values = trajectory[..., : self.spec.channels].float()
        return self._merged(values, trajectory_valid) if self.merge else (values, trajectory_valid)

    def _merged(self, values: torch.Tensor, valid: torch.Tensor):
        """Fold the K trajectories of a patch into one; it is valid when any of them is."""
        weight = valid[..., None, None].float()
        if self.merge == "mean":
            counted = weight.sum(2).clamp(min=1)
            merged = torch.where(valid.any(2)[..., None, None], (values * weight).sum(2) / counted, values.mean(2))
        else:  # the most salient: the longest path among the valid ones
            length = values[..., :2].norm(dim=-1).sum(-1).masked_fill(~valid, -1.0)  # (B, N, K)
            pick = length.argmax(2)[..., None, None, None].expand(-1, -1, 1, *values.shape[3:])
            merged = values.gather(2, pick).squeeze(2)
        return merged[:, :, None], valid.any(2, keepdim=True)

    @torch.no_grad()
    def forward(self, trajectory: torch.Tensor, trajectory_valid: torch.Tensor, **aux) -> torch.Tensor:
        values, valid = self._checked(trajectory, trajectory_valid)  # (B, N, K', L, C), (B, N, K')
        parts = [values[..., :2], values[..., 2:]] if self.shape else [values]
        if self.patch_norm:
            parts = [self._normalized(p, valid) for p in parts]
        return torch.cat([p.flatten(2) for p in parts], -1)

    def _normalized(self, part: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Zero mean, unit (unbiased) variance over the entries of a patch's valid trajectories."""
        weight = valid[..., None, None].float().expand_as(part)
        count = weight.sum((2, 3, 4), keepdim=True)
        mean = (part * weight).sum((2, 3, 4), keepdim=True) / count.clamp(min=1)
        var = ((part - mean) ** 2 * weight).sum((2, 3, 4), keepdim=True) / (count - 1).clamp(min=1)
        return (part - mean) / (var.sqrt() + self.eps)

    def validity(self, trajectory: torch.Tensor, trajectory_valid: torch.Tensor, **aux) -> torch.Tensor:
        """``(B, N, dim)``: an entry counts when its trajectory stayed in the frame."""
        _, valid = self._checked(trajectory, trajectory_valid)  # (B, N, K')
        widths = (2, self.bins) if self.shape else (2,)  # entries per step of each part, in forward's order
        return torch.cat([valid[..., None].expand(*valid.shape, self.length * w).flatten(2) for w in widths], -1)
