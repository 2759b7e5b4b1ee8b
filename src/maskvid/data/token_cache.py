"""An on-disk cache of VQ token ids per frame and spatial view (``maskvid extract tokens``, ``data.tokens_cache``).

A large tokenizer costs more than the video model it feeds (DALL-E's dVAE: 417 GMAC per 16-frame clip at 112², see
``maskvid bench tokens``), so VIMPAC pre-extracts its tokens and trains on a fixed set of spatial views (its App. C:
resize to the frame size or 1.25×, crop top-left, centre or bottom-right, flip or not). This cache holds, for every
frame of a video and every such view, the ids of the view's ``grid × grid`` patches; a training clip draws one
view, gets its frames' ids, and its pixels are cropped and flipped by the same view, so tokens and pixels agree.

    DIR/cache.json                     the options every entry shares: tokenizer (path, size, mtime), size, grid,
                                       views, decode size
    DIR/ab/abcdef…/meta.json           the video's path, size, mtime, frames
                   tokens.npy          (views, frames, grid, grid) uint16 (int32 past 65536 codes), memory-mapped

A stale or unreadable entry is reported (:attr:`TokenCache.problems`), rebuilt with the tokenizer, and the clip is
served. Sharded, resumable filling: :func:`maskvid.data.cache_entries.fill`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from maskvid.data.cache_entries import entry_dir, stored_meta, video_meta, write_entry
from maskvid.data.decode import decode_clip, frame_count
from maskvid.data.transforms import Geometry
from maskvid.errors import CheckpointError, ConfigError

LAYOUT_VERSION = 1
CHUNK = 64  # frames decoded and tokenized at a time
POSITIONS = ("center", "top_left", "bottom_right")


@dataclass(frozen=True)
class TokenView:
    """Resize the short side to ``scale × size``, crop ``size × size`` at ``position`` (along both sides),
    flip."""

    scale: float = 1.0
    position: str = "center"
    flip: bool = False

    def __post_init__(self):
        if self.position not in POSITIONS:
            raise ConfigError("--crops", f"{self.position!r} not in {POSITIONS}")
        if self.scale < 1.0:
            raise ConfigError("--scales", f"a view scale below 1 crops outside the frame: {self.scale}")

    def geometry(self, height: int, width: int, size: int) -> Geometry:
        """The view as a crop box of the decoded ``height × width`` frame, output at ``size``."""
        side = min(height, width) / self.scale
        where = {"center": 0.5, "top_left": 0.0, "bottom_right": 1.0}[self.position]
        return Geometry(((height - side) * where, (width - side) * where, side, side), self.flip, size)


def token_views(scales: Sequence[float] = (1.0,), positions: Sequence[str] = ("center",),
                flip: bool = False) -> list[TokenView]:
    """Every combination, VIMPAC's 12 being ``token_views((1.0, 1.25), POSITIONS, flip=True)``."""
    return [TokenView(s, p, f) for s in scales for p in positions for f in ((False, True) if flip else (False,))]


class TokenCache:
    """The token cache under ``root``; its options come from ``root/cache.json`` (:meth:`create` writes it)."""

    def __init__(self, root: str, device: str = "cpu"):
        path = os.path.join(root, "cache.json")
        if not os.path.isfile(path):
            raise ConfigError("data.tokens_cache", f"{root}: no cache.json — not a token cache (make one with "
                              "maskvid extract tokens)")
        with open(path) as f:
            self.options = json.load(f)
        self.root, self.device = root, device
        self.views = [TokenView(**v) for v in self.options["views"]]
        self.size, self.grid = self.options["size"], self.options["grid"]
        self.decode_size = self.options["decode_size"]
        self.problems: list[tuple[str, str]] = []
        self._tokenizer = None

    @classmethod
    def create(cls, root: str, tokenizer: str, size: int, grid: int, views: Sequence[TokenView],
               decode_size: int | None, device: str = "cpu") -> TokenCache:
        """Open the cache at ``root`` for these options, writing ``cache.json`` if it is new; a cache of other
        options is a ConfigError (its entries would mean something else)."""
        if size % grid:
            raise ConfigError("--size", f"{size} is not a multiple of the {grid} tokens per side")
        stat = os.stat(tokenizer) if os.path.isfile(tokenizer) else None
        if stat is None:
            raise ConfigError("--tokenizer", f"{tokenizer}: no such file")
        options = {"layout": LAYOUT_VERSION, "tokenizer": os.path.abspath(tokenizer), "tokenizer_size": stat.st_size,
                   "tokenizer_mtime_ns": stat.st_mtime_ns, "size": size, "grid": grid,
                   "views": [asdict(v) for v in views], "decode_size": decode_size}
        path = os.path.join(root, "cache.json")
        if os.path.isfile(path):
            with open(path) as f:
                stored = json.load(f)
            changed = [k for k in options if stored.get(k) != options[k]]
            if changed:
                raise ConfigError("--out", f"{root} holds tokens made with other {', '.join(changed)}; extract into "
                                  "another directory")
        else:
            os.makedirs(root, exist_ok=True)
            with open(f"{path}.tmp", "w") as f:
                json.dump(options, f)
            os.replace(f"{path}.tmp", path)
        return cls(root, device)

    def entry(self, path: str) -> str:
        return entry_dir(self.root, path)

    def check(self, path: str) -> str | None:
        """Why the entry of ``path`` cannot be used (None: it can)."""
        entry = self.entry(path)
        try:
            problem, stored = stored_meta(entry, video_meta(path, LAYOUT_VERSION))
            if problem is not None:
                return problem
            tokens = np.load(os.path.join(entry, "tokens.npy"), mmap_mode="r")
            if tokens.shape != (len(self.views), stored["frames"], self.grid, self.grid):
                return f"corrupted entry (tokens {tokens.shape})"
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            return f"corrupted entry ({type(e).__name__}: {e})"
        return None

    def load(self, path: str, indices: Sequence[int], view: int) -> torch.Tensor:
        """``(len(indices), grid, grid)`` long ids of frames ``indices`` of ``path`` in view ``view``; a missing,
        stale or corrupted entry is reported and rebuilt first."""
        problem = self.check(path)
        if problem is not None:
            if problem != "no entry":
                self.problems.append((path, problem))
            self.build(path)
        tokens = np.load(os.path.join(self.entry(path), "tokens.npy"), mmap_mode="r")
        last = tokens.shape[1] - 1
        return torch.from_numpy(np.array(tokens[view, [min(i, last) for i in indices]])).long()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}  # another process loads its own (a GPU's does not cross)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from maskvid.models.tokenizers import load_tokenizer

            self._tokenizer = load_tokenizer(self.options["tokenizer"]).to(self.device)
        return self._tokenizer

    def tokenize(self, frames: torch.Tensor, view: TokenView) -> torch.Tensor:
        """uint8 frames ``(T, H, W, 3)`` → ``(T, grid, grid)`` ids of ``view``: the view's crop, resized to
        ``grid × factor`` so the tokenizer gives one id per patch."""
        from torchvision.transforms.v2 import functional as TF

        side = self.grid * self.tokenizer.factor
        geometry = view.geometry(frames.shape[1], frames.shape[2], side)
        video = TF.resized_crop(frames.permute(0, 3, 1, 2), *geometry.pixel_box, [side, side], antialias=True)
        if view.flip:
            video = TF.horizontal_flip(video)
        pixels = video.to(self.device, torch.float32) / 255.0
        return self.tokenizer.encode(pixels).cpu()

    def build(self, path: str) -> str:
        """Tokenize every frame of ``path`` in every view and write its entry; returns its directory.

        Raises:
            VideoDecodeError: the video cannot be decoded (the dataset skips and reports it, as any bad video).
        """
        total = frame_count(path)
        dtype = np.uint16 if self.tokenizer.vocab_size <= 65536 else np.int32
        tokens = np.zeros((len(self.views), total, self.grid, self.grid), dtype)
        for start in range(0, total, CHUNK):
            indices = list(range(start, min(start + CHUNK, total)))
            frames = decode_clip(path, indices, self.decode_size).frames
            for v, view in enumerate(self.views):
                tokens[v, indices] = self.tokenize(frames, view).numpy().astype(dtype)
        write_entry(self.entry(path), {**video_meta(path, LAYOUT_VERSION), "frames": total}, {"tokens": tokens})
        return self.entry(path)

    def check_run(self, size: int, patch: Sequence[int], decode_size: int | None,
                  vocab_size: int | None = None) -> None:
        """A ConfigError naming ``data.tokens_cache`` unless the cache serves clips of this size, patch and decode
        size (one id per ``(1, p, p)`` patch) from a vocabulary of ``vocab_size`` (None: any)."""
        expected = {"size": size, "grid": size // patch[-1] if patch[0] == 1 else None, "decode_size": decode_size}
        actual = {"size": self.size, "grid": self.grid, "decode_size": self.decode_size}
        if patch[0] != 1 or expected != actual:
            raise ConfigError("data.tokens_cache", f"{self.root} holds {actual} (one id per 1×p×p patch); this run "
                              f"needs {expected} for patch {tuple(patch)}")
        if vocab_size is not None:
            try:
                held = self.tokenizer.vocab_size
            except CheckpointError as e:
                raise ConfigError("data.tokens_cache", f"{self.root}: its tokenizer cannot be read ({e})") from None
            if held != vocab_size:
                raise ConfigError("data.tokens_cache", f"{self.root} holds ids of {held} codes; the model embeds "
                                  f"{vocab_size} (model.vocab_size)")

