"""The on-disk cache of decoded frame indices: one decoding pass per file, ever, not one per worker and epoch.

Only indices that needed a decoding pass are stored (a packets index costs one demux, about as much as reading the
cache). Entries are keyed by path, size, mtime, the layout version and FFmpeg's libavcodec version (another decoder
release may output frames differently); they are written atomically and read without pickle, and an unreadable entry
is simply rebuilt. ``$MASKVID_INDEX_CACHE`` sets the directory (``off`` disables the cache).
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import av
import numpy as np

LAYOUT_VERSION = 3  # 3: the disposable packets


def cache_dir() -> str | None:
    """``$MASKVID_INDEX_CACHE`` (``off``, ``0`` or empty: no cache), else ``$XDG_CACHE_HOME/maskvid/frame-index``
    (``~/.cache/maskvid/frame-index``)."""
    configured = os.environ.get("MASKVID_INDEX_CACHE")
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "none") else configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "maskvid", "frame-index")


def entry_path(path: str, size: int, mtime_ns: int) -> str | None:
    """Where the index of the file ``path`` (with that size and mtime) is kept; None when caching is off."""
    root = cache_dir()
    if root is None:
        return None
    ffmpeg = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    key = hashlib.sha1(f"{LAYOUT_VERSION}\0{ffmpeg}\0{path}\0{size}\0{mtime_ns}".encode()).hexdigest()
    return os.path.join(root, key[:2], key + ".npz")


def load(entry: str | None) -> dict[str, np.ndarray] | None:
    """The stored arrays (0-d for scalars), or None when absent or unreadable."""
    if entry is None or not os.path.exists(entry):
        return None
    try:
        with np.load(entry, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError):
        return None


def store(entry: str | None, values: dict) -> None:
    """Write ``values`` (arrays and scalars) atomically; a cache that cannot be written costs only a decode."""
    if entry is None:
        return
    try:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=os.path.dirname(entry))
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{name: np.asarray(value) for name, value in values.items()})
        os.replace(tmp, entry)
    except OSError:
        pass
