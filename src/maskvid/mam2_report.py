"""What ``maskvid visualize mam2 VIDEO --checkpoint RUN`` shows: one clip through a pretrained MAM², its masked
patches predicted — the appearance decoder's tokens (decoded back to pixels when the tokenizer has a decoder, else
as id maps) and the motion decoder's RGB difference — against the truth, with the masked-patch token accuracy and
motion error next to what predicting no motion at all would score.

The clip goes through the dataset's own path (decode → centre crop → the run's mask at inference), so what is
drawn is what training saw, less the augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from maskvid.data import ClipTransform, VideoDataset, VideoRecord, frame_count
from maskvid.data.sampling import dense_indices
from maskvid.errors import ConfigError
from maskvid.targets.patchify import frames_of, unnormalize


@dataclass
class Mam2Report:
    """panels: row name → ``(T, 3, S, S)`` pictures in [0, 1]; mask: ``(N,)`` bool; metrics: masked-patch
    figures."""

    panels: dict[str, torch.Tensor]
    mask: torch.Tensor
    indices: list[int]
    metrics: dict[str, float]

    def describe(self, picture: str | None) -> str:
        lines = [f"frames {self.indices[0]}..{self.indices[-1]}: {int(self.mask.sum())}/{self.mask.numel()} "
                 "patches masked"]
        lines += [f"  {k}: {v:.4f}" for k, v in self.metrics.items()]
        return "\n".join(lines + ([f"  picture: {picture}"] if picture else []))


def _difference_picture(diff: torch.Tensor, grid, patch) -> torch.Tensor:
    """RGB differences in [-1, 1] as pictures: grey is no change, contrast doubled."""
    return (0.5 + 2 * frames_of(diff, grid, patch)).clamp(0, 1)


def _tokens_panels(head_target, pred: torch.Tensor, video: torch.Tensor, mask: torch.Tensor, grid) -> tuple:
    """True and predicted (visible: true) token ids of every frame patch, as pictures; and the masked accuracy."""
    true = head_target(video=video[None])[0] if head_target.frozen is not None else None
    if true is None:
        raise ConfigError("--checkpoint", "the appearance tokens come from a token cache: nothing to tokenize the "
                          "clip with here")
    predicted = true.clone()
    predicted[mask] = pred.argmax(-1)
    accuracy = float((predicted[mask] == true[mask]).float().mean())
    tokenizer = head_target.frozen.module
    size = video.shape[-1]
    pictures = []
    for ids in (true, predicted):
        ids = ids.reshape(grid[0], grid[1], grid[2])
        if tokenizer.can_decode:
            frames = tokenizer.decode(ids)  # (T', 3, h·f, w·f)
        else:  # no decoder: the ids themselves, coloured by a fixed hash of each code
            hues = (ids.float() * 0.618034) % 1.0
            frames = torch.stack([hues, (hues + 0.33) % 1.0, (hues + 0.66) % 1.0], 1)
        pictures.append(F.interpolate(frames.float(), size=(size, size), mode="nearest"))
    return pictures, accuracy


def mam2_clip(video: str, run: str, start: int | None = None, seed: int = 0) -> Mam2Report:
    """One clip of ``video`` through the MAM² of ``run`` (a run directory or checkpoint)."""
    from maskvid.methods.mam2 import MAM2
    from maskvid.recipes import build_mask
    from maskvid.run_loading import load_run

    config, method = load_run(run)
    if not isinstance(method, MAM2):
        raise ConfigError("--checkpoint", f"{run}: method {config.method!r}, not mam2")
    d = config.data
    dataset = VideoDataset([VideoRecord(video, -1)], transform=ClipTransform(size=d.size, crop="centre", flip=False),
                           num_frames=d.num_frames, stride=d.stride, patch=tuple(config.model.patch),
                           decode_size=d.decode_size, mask=build_mask(config, inference=True),
                           clip_order="clip_order" in method.inputs)
    indices = dense_indices(frame_count(video), d.num_frames, d.stride, start=start or 0)
    sample = dataset.clip(dataset.records[0], indices, torch.Generator().manual_seed(seed))
    mask = sample["mask"].flatten()
    inputs = {k: sample[k][None] for k in method.inputs if k in sample and k != "mask"}
    with torch.no_grad():
        preds = method(mask=mask[None], **inputs).preds
    clip = sample["video"]
    grid, patch = method.encoder.config.grid, method.encoder.config.patch
    pixels = unnormalize(clip[None])[0].transpose(0, 1).clamp(0, 1)  # (T, 3, S, S)
    hidden = frames_of(mask[:, None].float().expand(-1, patch[0] * patch[1] * patch[2] * 3), grid, patch)
    panels = {"input": pixels, "masked input": pixels * (1 - hidden) + 0.5 * hidden}
    metrics = {}
    for task in method.token_tasks:
        pred = preds[task.name][0]  # (M, dim): the masked tokens, in order
        if task.target.name == "tokens":
            (true, predicted), metrics[f"{task.name} token accuracy"] = _tokens_panels(task.target, pred, clip, mask,
                                                                                       grid)
            panels[f"{task.name}: true tokens"], panels[f"{task.name}: predicted"] = true, predicted
        elif task.target.name == "rgb_diff":
            true = task.target(video=clip[None])[0]  # (N, t·p·p·3)
            valid = task.target.validity(video=clip[None])[0][mask].float()
            error = ((pred - true[mask]) ** 2 * valid).sum() / valid.sum()
            metrics[f"{task.name} MSE"] = float(error)
            metrics[f"{task.name} MSE predicting no motion"] = float((true[mask] ** 2 * valid).sum() / valid.sum())
            composed = true.clone()
            composed[mask] = pred
            panels[f"{task.name}: true RGB difference"] = _difference_picture(true, grid, patch)
            panels[f"{task.name}: predicted"] = _difference_picture(composed, grid, patch)
    return Mam2Report(panels, mask, indices, metrics)
