"""What ``maskvid visualize trajectories`` shows: the dense trajectories of one clip, camera-motion removal on and
off, and — from a pretrained MME checkpoint — predicted against true trajectories of the masked patches (MME Fig. 4).

The clip goes through the dataset's own path (:meth:`maskvid.data.VideoDataset.clip`: decode with the raw frames
between sampled ones → centre crop → trajectories), so what is drawn is what a worker makes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from maskvid.data import ClipTransform, VideoDataset, VideoRecord, frame_count
from maskvid.data.sampling import dense_indices
from maskvid.errors import ConfigError
from maskvid.motion import grid_points
from maskvid.motion.trajectory_features import TrajectorySpec


@dataclass
class TrajectoryReport:
    """Trajectories of the tubelet at slice ``tubelet`` of a clip.

    frames: uint8 ``(L + 1, S, S, 3)`` the raw frames they run through, cropped as the clip; starts: ``(P, 2)``
    x, y in input pixels; tracks: name → ``(deltas (P, L, 2), valid (P,))`` (``camera removed``, ``as filmed``,
    or ``true`` / ``predicted`` from a checkpoint); masked: ``(P,)`` bool, the points of masked patches (or None).
    """

    video: str
    indices: list[int]
    tubelet: int
    frames: torch.Tensor
    starts: torch.Tensor
    tracks: dict[str, tuple[torch.Tensor, torch.Tensor]]
    masked: torch.Tensor | None = None

    def describe(self, picture: str | None = None) -> str:
        """What ``maskvid visualize trajectories`` prints."""
        summary = self.summary()
        lines = [f"{self.video}: {summary['points']} points from slice {self.tubelet} (frames {self.indices})"]
        lines += [f"  {name}: {summary[name]['valid']} valid, mean path {summary[name]['mean_path_px']:.2f} px"
                  for name in self.tracks]
        return "\n".join(lines + ([f"  picture: {picture}"] if picture else []))

    def summary(self) -> dict:
        out = {"video": self.video, "indices": self.indices, "tubelet": self.tubelet, "points": len(self.starts)}
        for name, (deltas, valid) in self.tracks.items():
            path = deltas.norm(dim=-1).sum(-1)
            out[name] = {"valid": int(valid.sum()), "mean_path_px": float(path[valid].mean()) if valid.any() else 0.0}
        return out


def _dataset(video: str, spec: TrajectorySpec, size: int, patch: tuple[int, int, int], frames: int, stride: int,
             **extra) -> VideoDataset:
    return VideoDataset([VideoRecord(video, -1)], transform=ClipTransform(size=size, crop="centre", flip=False),
                        num_frames=frames, stride=stride, patch=patch, trajectories=spec, **extra)


def _clip_indices(video: str, frames: int, stride: int, start: int | None) -> list[int]:
    total = frame_count(video)
    return dense_indices(total, frames, stride, start=start if start is not None else 0)


def _raw_frames(dataset: VideoDataset, video: str, indices: list[int], tubelet: int, size: int) -> torch.Tensor:
    from maskvid.data.decode import decode_clip

    first = indices[tubelet * dataset.patch[0]]
    last = frame_count(video) - 1
    raw = [min(i, last) for i in dataset.trajectories.raw_frames(first)]
    decoded = decode_clip(video, raw, dataset.decode_size).frames
    geometry = dataset.transform.geometry(*decoded.shape[1:3], torch.Generator())  # centre crop: no randomness
    top, left, height, width = geometry.pixel_box
    crop = decoded[:, top:top + height, left:left + width].permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def trajectory_clip(video: str, size: int = 224, patch: int = 16, frames: int = 16, stride: int = 2,
                    start: int | None = None, tubelet: int = 0, spec: TrajectorySpec | None = None) -> TrajectoryReport:
    """Trajectories of one tubelet with the camera's motion removed (``spec.camera``, default KLT) and as filmed."""
    spec = spec or TrajectorySpec()
    if not 0 <= tubelet < frames // 2:
        raise ConfigError("--tubelet", f"must be in [0, {frames // 2}), got {tubelet}")
    indices = _clip_indices(video, frames, stride, start)
    tracks = {}
    for name, camera in (("camera removed", spec.camera or "klt"), ("as filmed", None)):
        dataset = _dataset(video, dataclasses.replace(spec, camera=camera), size, (2, patch, patch), frames, stride)
        sample = dataset.clip(dataset.records[0], indices, torch.Generator().manual_seed(0))
        tracks[name] = _slice(sample["trajectory"], sample["trajectory_valid"], tubelet, size // patch)
    starts = grid_points((size // patch, size // patch), patch, spec.k)
    return TrajectoryReport(video, indices, tubelet, _raw_frames(dataset, video, indices, tubelet, size), starts,
                            tracks)


def _slice(features: torch.Tensor, valid: torch.Tensor, tubelet: int, side: int):
    """Slice ``tubelet``'s ``(P, L, 2)`` deltas and ``(P,)`` validity, points in :func:`grid_points` order."""
    tokens = side * side
    deltas = features[tubelet * tokens:(tubelet + 1) * tokens, ..., :2]  # (H'W', K, L, 2)
    return deltas.flatten(0, 1), valid[tubelet * tokens:(tubelet + 1) * tokens].flatten()


def predicted_trajectories(video: str, run: str, start: int | None = None, tubelet: int = 0,
                           seed: int = 0) -> TrajectoryReport:
    """True vs predicted trajectories of the masked patches of one clip, from a pretraining run (or checkpoint) whose
    method has a ``trajectory`` head. Predictions of a patch-normalized target are mapped back to pixels with the
    true trajectories' per-patch mean and std (as MAE shows normalized-pixel reconstructions)."""
    from maskvid.recipes import build_mask
    from maskvid.run_loading import load_run

    config, method = load_run(run)
    head = next((h for h in method.heads if h.target.name == "trajectory"), None)
    if head is None:
        raise ConfigError("--checkpoint", f"{run}: the method has no trajectory head")
    target, d = head.target, config.data
    dataset = _dataset(video, target.spec, d.size, tuple(config.model.patch), d.num_frames, d.stride,
                       mask=build_mask(config, inference=True), decode_size=d.decode_size)
    indices = _clip_indices(video, d.num_frames, d.stride, start)
    sample = dataset.clip(dataset.records[0], indices, torch.Generator().manual_seed(seed))
    batch = {"video": sample["video"][None], "trajectory": sample["trajectory"][None],
             "trajectory_valid": sample["trajectory_valid"][None]}
    mask = sample["mask"].flatten()[None]
    with torch.no_grad():
        pred = method(batch["video"], mask, **batch).preds[head.name][0]  # (M, dim), masked tokens in order
    true_deltas = sample["trajectory"][..., :2]  # (N, K, L, 2)
    predicted = true_deltas.clone()
    masked_ids = mask[0].nonzero().flatten()
    k, length = target.k, target.length
    if target.merge is not None:
        raise ConfigError("--checkpoint", "merged trajectories have no per-point prediction to draw")
    position = pred[:, : k * length * 2].reshape(-1, k, length, 2)
    if target.patch_norm:
        truth = true_deltas[masked_ids]
        weight = sample["trajectory_valid"][masked_ids][..., None, None].float().expand_as(truth)
        count = weight.sum((1, 2, 3), keepdim=True)
        mean = (truth * weight).sum((1, 2, 3), keepdim=True) / count.clamp(min=1)
        std = (((truth - mean) ** 2 * weight).sum((1, 2, 3), keepdim=True) / (count - 1).clamp(min=1)).sqrt()
        position = position * (std + target.eps) + mean
    predicted[masked_ids] = position
    side = d.size // config.model.patch[1]
    valid = sample["trajectory_valid"]
    tracks = {"true": _slice(sample["trajectory"], valid, tubelet, side),
              "predicted": _slice(torch.cat([predicted, sample["trajectory"][..., 2:]], -1), valid, tubelet, side)}
    token_masked = mask[0].reshape(-1, side * side)[tubelet]  # (H'W',)
    starts = grid_points((side, side), config.model.patch[1], k)
    return TrajectoryReport(video, indices, tubelet, _raw_frames(dataset, video, indices, tubelet, d.size), starts,
                            tracks, token_masked.repeat_interleave(k))
