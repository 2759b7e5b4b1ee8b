"""``maskvid bench data``: decoded + augmented clips/s of maskvid's loader vs a loader written the way VideoMAE's
is (decord ``VideoReader.get_batch`` + per-frame PIL ``GroupMultiScaleCrop`` + ``ToTorchFormatTensor`` +
``GroupNormalize``), on the same videos and the same 16-frame stride-4 indices, 224² output, each in one
DataLoader worker.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from maskvid.constants import IMAGENET_MEAN, IMAGENET_STD
from maskvid.data import ClipTransform, VideoDataset, VideoRecord, collate
from maskvid.data.decode import frame_count
from maskvid.data.sampling import dense_indices
from maskvid.data.transforms import MULTISCALE, multiscale_crop_box
from maskvid.errors import MaskvidError
from maskvid.rng import sample_generator
from maskvid.synth import SynthConfig, synthesize

CLIP_LEN, STRIDE, SIZE = 16, 4, 224


class VideoMAEReferenceLoader(torch.utils.data.Dataset):
    """VideoMAE's pretraining pipeline (``datasets.VideoMAE`` + ``DataAugmentationForVideoMAE``) over decord."""

    def __init__(self, records: list[VideoRecord]):
        import decord  # noqa: F401  (fail early, in the main process)

        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        import decord

        g = sample_generator(0, 0, index)
        path = self.records[index].path
        indices = dense_indices(len(decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))), CLIP_LEN, STRIDE, g)
        return {"video": videomae_sample(path, indices, g), "label": 0, "skipped": []}


def videomae_sample(path: str, indices: list[int], g: torch.Generator) -> torch.Tensor:
    """One pretraining clip the way VideoMAE makes it: decord ``get_batch``, then per-frame PIL ``GroupMultiScaleCrop``,
    ``Stack``, ``ToTorchFormatTensor``, ``GroupNormalize``; ``(C, T, H, W)`` as its collate sees it."""
    import decord
    from PIL import Image

    reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
    buffer = reader.get_batch(indices).asnumpy()
    images = [Image.fromarray(frame).convert("RGB") for frame in buffer]
    top, left, h, w = multiscale_crop_box(images[0].height, images[0].width, g, MULTISCALE)
    box = (int(left), int(top), int(left + w), int(top + h))
    images = [img.crop(box).resize((SIZE, SIZE), Image.BILINEAR) for img in images]  # GroupMultiScaleCrop
    stacked = np.concatenate([np.asarray(img) for img in images], axis=2)  # Stack(roll=False): (H, W, 3T)
    tensor = torch.from_numpy(stacked).permute(2, 0, 1).contiguous().float().div(255)  # ToTorchFormatTensor
    length = len(indices)
    mean = torch.tensor(IMAGENET_MEAN).repeat(length).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD).repeat(length).view(-1, 1, 1)
    tensor = (tensor - mean) / std  # GroupNormalize
    return tensor.view(length, 3, SIZE, SIZE).transpose(0, 1)


def _clips_per_second(dataset, clips: int, batch_size: int = 4) -> float:
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=clips + batch_size, generator=torch.Generator().manual_seed(0)
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=1, collate_fn=collate, prefetch_factor=4
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up and the first batch are not timed
    start, seen = time.perf_counter(), 0
    for batch in iterator:
        seen += batch["video"].shape[0]
    return seen / (time.perf_counter() - start)


def bench_data(clips: int = 40, videos: int = 8, workdir: str | None = None, rounds: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir or tmp
        config = SynthConfig(
            preset="appearance",
            classes=2,
            train_per_class=(videos + 1) // 2,
            val_per_class=0,
            size=256,
            frames=96,
            seed=0,
        )
        synthesize(root, config)
        paths = sorted(os.path.join(root, "videos", f) for f in os.listdir(os.path.join(root, "videos")))
        records = [VideoRecord(p, 0) for p in paths]
        ours = VideoDataset(
            records,
            ClipTransform(size=SIZE, crop="multiscale", flip=False),
            num_frames=CLIP_LEN,
            stride=STRIDE,
            decode_threads=1,
        )
        try:
            reference = VideoMAEReferenceLoader(records)
        except ImportError as e:
            raise MaskvidError("bench data needs decord for its reference loader: pip install 'maskvid[bench]'") from e
        result = {"maskvid": 0.0, "videomae_decord": 0.0}
        for _ in range(rounds):  # alternate, keep each loader's best round: less noise from a busy machine
            result["maskvid"] = max(result["maskvid"], _clips_per_second(ours, clips))
            result["videomae_decord"] = max(result["videomae_decord"], _clips_per_second(reference, clips))
        return {
            "clips_per_s": result,
            "ratio": result["maskvid"] / result["videomae_decord"],
            "setup": {
                "source": f"{len(records)} H.264 videos 256x256x{frame_count(paths[0])}",
                "clip": f"{CLIP_LEN}x{STRIDE}",
                "output": f"{SIZE}x{SIZE}",
                "workers": 1,
                "torch_threads": torch.get_num_threads(),
            },
        }
