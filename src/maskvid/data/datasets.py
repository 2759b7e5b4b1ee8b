"""Video datasets: records → decoded, sampled, augmented sample dicts; bad videos skipped, counted and reported.

A sample is a dict: ``video`` float ``(C, T, H, W)`` (``(V, C, T, H, W)`` for multi-view evaluation), ``label``,
``index``, ``path``, and with motion ``motion`` ``(T, h, w, 2)`` + ``motion_valid`` ``(T,)``; with a trajectory spec
(MME) ``trajectory`` ``(N, K, L, 2 + bins)`` + ``trajectory_valid`` ``(N, K)``, tracked through the raw frames after
each tubelet's first frame, which are decoded with the clip; sampling ``pair`` adds ``video2`` (and ``…2`` of each).
With a masking strategy (``mask``) each clip also gets its ``mask``: bool ``(T', H', W')`` on the token grid
of ``patch`` (``mask2`` for ``video2``), made here in the worker from the transformed clip's motion — codec
vectors or DIS flow, whichever ``motion_source`` says — so crops and flips are already applied.
Every sample also carries ``skipped``: the ``(path, reason)`` of bad videos met while making it, so the
main process learns about them whatever worker hit them (:class:`BadVideoLog`). With ``num_repeats > 1`` one decoded
video yields that many differently augmented samples (VideoMAE's ``num_sample``); :func:`collate` flattens them.

All randomness of a sample comes from a generator seeded by (seed, epoch, index): a resumed or re-sharded run sees
the same clips and crops.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from maskvid.constants import PAD_TOKEN
from maskvid.data import sampling
from maskvid.data.annotations import VideoRecord, read_annotation_list, read_class_names, scan_class_folders
from maskvid.data.decode import decode_clip, frame_count
from maskvid.data.flow_cache import FlowCache
from maskvid.data.raw_motion import RawMotion
from maskvid.data.token_cache import TokenCache
from maskvid.data.transforms import ClipTransform, normalize_video
from maskvid.data.worker_watch import WorkerWatch
from maskvid.errors import ConfigError, DataError, VideoDecodeError
from maskvid.masking import MaskStrategy
from maskvid.models.tokens import MaskOrder, token_grid
from maskvid.motion import dis_flow, slice_magnitude
from maskvid.motion.flow_fields import FlowFieldSpec
from maskvid.motion.hog_cells import DenseHOGSpec
from maskvid.motion.trajectory_features import TrajectorySpec
from maskvid.rng import sample_generator, substitute_generator

SAMPLINGS = ("dense", "segments", "multiview", "pair")
BAD_VIDEOS = ("substitute", "skip")
MOTION_SOURCES = ("codec", "flow")


@dataclass
class VideoDataset(torch.utils.data.Dataset):
    """Clips from a list of :class:`VideoRecord`.

    sampling: ``dense`` (``num_frames`` × ``stride``), ``segments`` (TSN), ``multiview`` (``views`` = (temporal
    clips, spatial crops), stacked), ``pair`` (two clips at most ``pair_distance`` frames apart).
    decode_size: short side the decoder resizes to (None: native), before the crop.
    motion_vectors: samples carry the motion field (``motion``, ``motion_valid``); motion_source: where motion comes
    from, for them and for a guided mask — ``codec`` vectors or ``flow`` (DIS, preset ``flow_preset``).
    mask: a strategy from :func:`maskvid.masking.build`; patch: the model's tubelet ``(t, p, p)``, which sets the
    token grid ``(num_frames/t, size/p, size/p)``.
    trajectories: MME's dense trajectories to compute in the worker (a target's ``spec``), or None; cache: a
    :class:`~maskvid.data.flow_cache.FlowCache` their flows are read from (None: computed online); flow_fields:
    the per-pixel flows of the ``flow``/``hof``/``mbh`` targets (``flow``), or None; dense_hog: the per-frame
    patch HOG of every raw frame (``dense_hog``), or None; tokens: a
    :class:`~maskvid.data.token_cache.TokenCache` — each clip is cropped and flipped as one of its views, drawn at
    random, and carries that view's ``tokens`` ``(T, g, g)`` (frames past a short video's end: ``PAD_TOKEN``) —
    or None; clip_order: each clip carries
    ``clip_order`` ``(H'·W',)``, a random order (0 or 1) per spatial position for MAM²'s clip-order target.
    bad_videos: what a video that cannot be decoded becomes — ``substitute`` (training: another video, drawn by
    :func:`~maskvid.rng.substitute_generator`, takes its place, up to ``max_retries`` in a row) or ``skip``
    (evaluation: the sample is left out of its batch, so no video is scored twice and none in another's name).
    Either way it is reported in the batch's ``skipped``. A video that crashed a loader worker
    (:mod:`~maskvid.data.worker_watch`) is a bad video from then on.
    """

    records: Sequence[VideoRecord]
    transform: ClipTransform = field(default_factory=ClipTransform)
    num_frames: int = 16
    stride: int = 4
    sampling: str = "dense"
    decode_size: int | None = None
    motion_vectors: bool = False
    num_repeats: int = 1
    views: tuple[int, int] = (1, 1)
    pair_distance: int = 32
    max_retries: int = 10
    seed: int = 0
    decode_threads: int = 1
    epoch: int = 0
    mask: MaskStrategy | None = None
    patch: tuple[int, int, int] = (2, 16, 16)
    motion_source: str = "codec"
    flow_preset: str = "medium"
    trajectories: TrajectorySpec | None = None
    cache: FlowCache | None = None
    flow_fields: FlowFieldSpec | None = None
    dense_hog: DenseHOGSpec | None = None
    tokens: TokenCache | None = None
    clip_order: bool = False
    bad_videos: str = "substitute"
    watch: WorkerWatch = field(default_factory=WorkerWatch, init=False, repr=False, compare=False)  # see worker_watch

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ConfigError("data.sampling", f"{self.sampling!r} not in {SAMPLINGS}")
        if self.bad_videos not in BAD_VIDEOS:
            raise ConfigError("data.bad_videos", f"{self.bad_videos!r} not in {BAD_VIDEOS}")
        for key in ("num_frames", "stride", "num_repeats"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.motion_source not in MOTION_SOURCES:
            raise ConfigError("data.motion_source", f"{self.motion_source!r} not in {MOTION_SOURCES}")
        if not self.records:
            raise ConfigError("data.train_list", "the dataset has no videos")
        if self.mask is not None:
            self._check_mask()
        self.raw_motion = None
        if any(spec is not None for spec in (self.trajectories, self.flow_fields, self.dense_hog)):
            token_grid(self.patch, self.num_frames, self.transform.size)
            if self.sampling not in ("dense", "pair"):
                raise ConfigError("data.sampling", f"trajectories and flows need dense or pair clips, not "
                                  f"{self.sampling}")
            self.raw_motion = RawMotion(tuple(self.patch), self.stride, self.trajectories, self.flow_fields,
                                        self.cache, self.dense_hog)

    def _check_mask(self) -> None:
        token_grid(self.patch, self.num_frames, self.transform.size)  # the tubelet divides the clip
        if self.sampling == "multiview" and self.mask.needs_motion:
            raise ConfigError("mask.strategy", f"{self.mask.name} needs motion; multi-view sampling does not carry it")

    @property
    def grid(self) -> tuple[int, int, int]:
        """The token grid ``(T', H', W')`` masks are made on."""
        return token_grid(self.patch, self.num_frames, self.transform.size)

    @property
    def needs_motion(self) -> bool:
        return self.motion_vectors or (self.mask is not None and self.mask.needs_motion)

    @classmethod
    def from_list(cls, path: str, root: str | None = None, classes: str | None = None, require_labels=True, **kw):
        names = read_class_names(classes) if classes else None
        return cls(read_annotation_list(path, root, names, require_labels=require_labels), **kw)

    @classmethod
    def from_folders(cls, root: str, **kw) -> VideoDataset:
        records, _ = scan_class_folders(root)
        return cls(records, **kw)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def on_device(self, batch: dict, device: torch.device) -> dict:
        """``batch`` with the clips the workers left uint8 (``transform.normalize`` False) moved to ``device`` and
        normalized there, as the workers would have; other keys as they were (the method moves what it reads)."""
        for key in ("video", "video2"):
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = normalize_video(batch[key].to(device, non_blocking=True), self.transform.mean,
                                             self.transform.std)
        return batch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | list[dict]:
        """Sample ``index`` of the current epoch (:meth:`set_epoch`), or ``(epoch, index)``: the training loop's
        loader names the epoch with each index, its workers outliving epochs."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        skipped: list[tuple[str, str]] = []
        for attempt in range(self.max_retries + 1):
            g = sample_generator(self.seed, epoch, index, attempt)
            record = self.records[index]
            try:
                with self.watch.reading(record.path, index):
                    samples = self._load(record, index, g)
            except VideoDecodeError as e:
                skipped.append((e.path, e.reason))
                if self.bad_videos == "skip":
                    return {"skipped": skipped}  # a placeholder: collate leaves it out of the batch
                g = substitute_generator(self.seed, epoch, index, attempt)
                index = int(torch.randint(len(self.records), (), generator=g))  # retry with another video
                continue
            samples[0]["skipped"] = skipped
            for s in samples[1:]:
                s["skipped"] = []
            return samples[0] if len(samples) == 1 else samples
        listed = "\n".join(f"  {p}: {r}" for p, r in skipped)
        raise DataError(f"{len(skipped)} bad videos in a row, giving up (max_retries={self.max_retries}):\n{listed}")

    def _frame_range(self, record: VideoRecord) -> tuple[int, int]:
        total = frame_count(record.path)
        if record.start >= total:
            raise VideoDecodeError(record.path, f"segment start {record.start} beyond the video's {total} frames")
        length = total - record.start if record.num_frames is None else min(record.num_frames, total - record.start)
        return record.start, length

    def _indices(self, length: int, g: torch.Generator) -> list[list[int]]:
        if self.sampling == "dense":
            return [sampling.dense_indices(length, self.num_frames, self.stride, g)]
        if self.sampling == "segments":
            return [sampling.segment_indices(length, self.num_frames, g)]
        if self.sampling == "pair":
            return list(sampling.pair_indices(length, self.num_frames, self.stride, self.pair_distance, g))
        return sampling.multiview_indices(length, self.num_frames, self.stride, self.views[0])

    def _load(self, record: VideoRecord, index: int, g: torch.Generator) -> list[dict]:
        start, length = self._frame_range(record)
        clips = self._indices(length, g)
        flat = [start + i for clip in clips for i in clip]
        raw = self.raw_motion.frames_needed([[start + i for i in c] for c in clips], start + length - 1) \
            if self.raw_motion is not None else {}
        source = self.motion_source if self.needs_motion else None
        decoded = decode_clip(record.path, flat + list(raw.values()), self.decode_size, source == "codec",
                              self.decode_threads)
        n = self.num_frames
        parts = [self._part(decoded, k, n, source) for k in range(len(clips))]
        origins = [(record.path, [start + i for i in clip]) for clip in clips]
        if raw:  # raw frame index → its decoded frame (past the end: the last frame)
            frames = dict(zip(raw, decoded.frames[len(flat):].numpy(), strict=True))
            parts = [(*part, ([start + i for i in clip], frames, record.path))
                     for part, clip in zip(parts, clips, strict=True)]
        samples = []
        for _ in range(self.num_repeats):
            sample = {"label": record.label, "index": index, "path": record.path}
            if self.sampling == "multiview":
                sample["video"] = self._views(parts, g)
                if self.mask is not None:
                    sample["mask"] = torch.stack([self.mask(self.grid, g) for _ in range(len(sample["video"]))])
            else:
                for suffix, part, origin in zip(("", "2"), parts, origins, strict=False):
                    self._add_clip(sample, suffix, *part, g=g, origin=origin)
            samples.append(sample)
        return samples

    def clip(self, record: VideoRecord, indices: list[int], g: torch.Generator) -> dict:
        """One clip of ``record`` at display ``indices`` through the samples' path: decode → motion → transform →
        mask (``maskvid mask`` shows exactly what a worker would make)."""
        source = self.motion_source if self.needs_motion else None
        raw = {}
        if self.raw_motion is not None:
            raw = self.raw_motion.frames_needed([list(indices)], frame_count(record.path) - 1)
        decoded = decode_clip(record.path, list(indices) + list(raw.values()), self.decode_size, source == "codec",
                              self.decode_threads)
        sample = {"label": record.label, "path": record.path}
        part = self._part(decoded, 0, len(indices), source)
        if raw:
            part = (*part, (list(indices), dict(zip(raw, decoded.frames[len(indices):].numpy(), strict=True)),
                            record.path))
        self._add_clip(sample, "", *part, g=g, origin=(record.path, list(indices)))
        return sample

    def _part(self, decoded, k: int, n: int, source: str | None):
        """Frames, motion field and its validity of the k-th clip of a decode."""
        frames = decoded.frames[k * n : (k + 1) * n]
        if source == "flow":
            motion, valid = dis_flow(frames, frame_distance=float(self.stride), preset=self.flow_preset)
        elif decoded.motion is not None:
            motion, valid = decoded.motion[k * n : (k + 1) * n], decoded.motion_valid[k * n : (k + 1) * n]
        else:
            motion = valid = None
        return frames, motion, valid

    def _add_clip(self, sample: dict, suffix: str, frames, motion, valid, raw=None, *, g: torch.Generator,
                  origin: tuple[str, list[int]]) -> None:
        """Transform one clip into ``sample`` (keys suffixed ``suffix``); ``origin``: its path and frame indices."""
        if self.tokens is not None:  # the clip takes a cached view's crop and flip, and that view's ids
            view = int(torch.randint(len(self.tokens.views), (), generator=g))
            geometry = self.tokens.views[view].geometry(*frames.shape[1:3], self.transform.size)
            ids = self.tokens.load(*origin, view)
            if self.sampling in ("dense", "pair"):  # frames past the video's end are [PAD]
                ids[past_end(origin[1], self.stride)] = PAD_TOKEN
            sample["tokens" + suffix] = ids
        else:
            geometry = self.transform.geometry(*frames.shape[1:3], g)
        video, motion = self.transform(frames, g, motion, geometry=geometry)
        sample["video" + suffix] = video
        if raw is not None:  # (the clip's absolute indices, raw frames, path): trajectories, flows
            fields = self.raw_motion.fields(*raw, geometry.pixel_box, geometry.flip, self.transform.size)
            sample.update({key + suffix: value for key, value in fields.items()})
        if motion is not None and self.motion_vectors:
            sample["motion" + suffix], sample["motion_valid" + suffix] = motion, valid
        if self.mask is not None:
            guide = slice_magnitude(motion, valid, self.patch[0]) if self.mask.needs_motion else None
            sample["mask" + suffix] = self.mask(self.grid, g, guide)
        if self.clip_order:
            sample["clip_order" + suffix] = torch.randint(2, (self.grid[1] * self.grid[2],), generator=g)

    def _views(self, parts, g: torch.Generator) -> torch.Tensor:
        """(clips × crops, C, T, S, S): each temporal view at each spatial crop position."""
        out = []
        for frames, *_ in parts:
            height, width = frames.shape[1:3]
            side = min(height, width)
            for top, left in sampling.spatial_offsets(height, width, side, self.views[1]):
                out.append(self.transform(frames, g, box=(top, left, side, side))[0])
        return torch.stack(out)


def past_end(indices: list[int], stride: int) -> torch.Tensor:
    """``(T,)`` bool, True where a strided clip ran past its video's end: the samplers clamp such indices to the
    last frame (:func:`~maskvid.data.sampling.clamp`), so they differ from ``first + k·stride``."""
    index = torch.tensor(indices)
    return index != indices[0] + stride * torch.arange(len(indices))


def collate(samples: list[dict | list[dict]]) -> dict:
    """Batch sample dicts: flatten repeated-augmentation lists, stack tensors, list the rest, merge ``skipped``;
    a skipped video's placeholder adds only to ``skipped`` (a batch of nothing else has no other key).

    Masks ``(T', H', W')`` become ``(B, N)`` in ``(t h w)`` order, the layout models take (DESIGN.md); the
    training mask's :class:`~maskvid.models.MaskOrder` is worked out here, in the loader's workers, as ``mask_order``
    (a GPU forward then never reads the mask back).
    """
    flat = [s for item in samples for s in (item if isinstance(item, list) else [item])]
    batch: dict = {"skipped": [bad for s in flat for bad in s.get("skipped", [])]}
    flat = [s for s in flat if s.keys() != {"skipped"}]  # a bad video's placeholder (``bad_videos="skip"``)
    if not flat:
        return batch  # every video of the batch was bad: only ``skipped``
    for key in flat[0]:
        if key == "skipped":
            continue
        values = [s[key] for s in flat]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
            if key in ("mask", "mask2"):
                batch[key] = batch[key].flatten(-3)
        elif isinstance(values[0], int):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    if isinstance(batch.get("mask"), torch.Tensor) and batch["mask"].dim() == 2:  # (B, V, N) views: not trained on
        batch["mask_order"] = MaskOrder.of(batch["mask"])
    return batch


class BadVideoLog:
    """Main-process tally of bad videos reported through batches; stops the run past ``max_fraction``.

    The fraction is bad attempts / all attempts, checked once ``min_attempts`` have been seen so that one bad
    file among the first few does not end a run.
    """

    def __init__(self, max_fraction: float = 0.1, min_attempts: int = 50):
        if not 0.0 <= max_fraction <= 1.0:
            raise ConfigError("data.max_bad_fraction", f"must be in [0, 1], got {max_fraction}")
        self.max_fraction = max_fraction
        self.min_attempts = min_attempts
        self.bad: dict[str, str] = {}  # path -> first reason, in the order met
        self.bad_attempts = 0
        self.good = 0

    def update(self, batch: dict) -> None:
        self.record(batch)
        self.check(self.bad_attempts, self.good)

    def record(self, batch: dict) -> None:
        """Count a batch's good samples and its skipped videos (no check: see :meth:`check`)."""
        self.good += len(batch["label"]) if "label" in batch else 0
        for path, reason in batch["skipped"]:
            self.bad_attempts += 1
            self.bad.setdefault(path, reason)

    def check(self, bad_attempts: int, good: int) -> None:
        """Raise DataError when ``bad_attempts`` of all reads pass ``max_fraction`` (counts of this process, or
        summed over the ranks of a distributed run so that all of them stop together)."""
        total = good + bad_attempts
        if total >= self.min_attempts and bad_attempts > self.max_fraction * total:
            raise DataError(
                f"{bad_attempts} of {total} video reads failed ({len(self.bad)} distinct files here), above "
                f"data.max_bad_fraction={self.max_fraction}.\n{self.report()}"
            )

    def report(self) -> str:
        if not self.bad:
            return "no bad videos"
        lines = [f"{len(self.bad)} bad video(s) skipped:"] + [f"  {p}: {r}" for p, r in self.bad.items()]
        return "\n".join(lines)


def folder_or_list(source: str, root: str | None = None, classes: str | None = None, **kw) -> VideoDataset:
    """A dataset from an annotation list file or a folder-per-class tree, whichever ``source`` is."""
    if os.path.isdir(source):
        return VideoDataset.from_folders(source, **kw)
    return VideoDataset.from_list(source, root=root, classes=classes, **kw)
