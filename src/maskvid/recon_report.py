"""What a pixel-target MAE run predicts on one clip: input, masked input, the reconstruction (visible patches kept,
masked ones predicted) and the target alone — the demo's reconstruction picture.

For ``norm_pixels`` the prediction is in per-patch normalized units; it is shown with the true patch's mean and
standard deviation put back (as MAE's and VideoMAE's visualizations do), so the picture judges the structure
predicted, not the patch statistics the loss never asked for.
"""

from __future__ import annotations

import torch

from maskvid.data import ClipTransform, VideoDataset, VideoRecord, frame_count
from maskvid.data.sampling import dense_indices
from maskvid.errors import ConfigError
from maskvid.targets.patchify import frames_of, patchify, unnormalize


def reconstruction_panels(video: str, run: str, start: int = 0, seed: int = 0) -> tuple[dict, dict]:
    """``(panels, metrics)``: ``(T, 3, S, S)`` pictures in [0, 1] and the masked-patch MSE (in [0, 1] pixels) of the
    prediction and of predicting each masked patch as the clip's mean colour."""
    from maskvid.recipes import build_mask
    from maskvid.run_loading import load_run

    config, method = load_run(run)
    heads = [h for h in getattr(method, "heads", ()) if h.target.name in ("pixels", "norm_pixels")]
    if not heads:
        raise ConfigError("--checkpoint", f"{run}: no pixels or norm_pixels head to reconstruct with")
    head, d = heads[0], config.data
    patch = tuple(config.model.patch)
    dataset = VideoDataset([VideoRecord(video, -1)], transform=ClipTransform(size=d.size, crop="centre", flip=False),
                           num_frames=d.num_frames, stride=d.stride, patch=patch, decode_size=d.decode_size,
                           mask=build_mask(config, inference=True), motion_vectors=config.mask.strategy == "mgm")
    indices = dense_indices(frame_count(video), d.num_frames, d.stride, start=start)
    sample = dataset.clip(dataset.records[0], indices, torch.Generator().manual_seed(seed))
    mask = sample["mask"].flatten()  # (N,)
    inputs = {k: sample[k][None] for k in method.inputs if k in sample and k != "mask"}
    with torch.no_grad():
        pred = method(mask=mask[None], **inputs).preds[head.name][0]  # (M, t·p·p·3), the masked tokens in order
    clip = unnormalize(sample["video"][None])  # (1, C, T, S, S) in [0, 1]
    true = patchify(clip, patch)[0]  # (N, t·p·p, 3)
    predicted = pred.view(-1, true.shape[1], 3)
    if head.target.name == "norm_pixels":
        hidden = true[mask]
        predicted = predicted * (hidden.var(1, unbiased=True, keepdim=True).sqrt() + 1e-6) + hidden.mean(1, True)
    composed, hidden_only = true.clone(), torch.full_like(true, 0.5)
    composed[mask] = predicted.clamp(0, 1)
    hidden_only[mask] = predicted.clamp(0, 1)
    grid = method.encoder.config.grid

    def picture(tokens: torch.Tensor) -> torch.Tensor:  # (N, t·p·p, 3) -> (T, 3, S, S)
        return frames_of(tokens.flatten(1), grid, patch)

    grey = true.clone()
    grey[mask] = 0.5
    panels = {"input": picture(true), "masked input": picture(grey), "reconstruction": picture(composed),
              "predicted patches": picture(hidden_only)}
    mean_colour = true.mean((0, 1), keepdim=True)
    metrics = {"masked MSE": float(((predicted - true[mask]) ** 2).mean()),
               "masked MSE of the mean colour": float(((mean_colour - true[mask]) ** 2).mean())}
    return panels, metrics
