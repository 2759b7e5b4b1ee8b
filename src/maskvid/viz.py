"""Pictures for people: masks over frames, trajectories, curves. matplotlib is imported lazily and drawn off-screen
(Agg); GIFs are drawn with Pillow."""

from __future__ import annotations

import os

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def draw_mask(
    frames: torch.Tensor, mask: torch.Tensor, motion: torch.Tensor, path: str | os.PathLike, title: str = ""
) -> str:
    """Write a PNG: one column per temporal slice, the slice's first frame with its masked tokens shaded (top row)
    and the slice's motion magnitude with the mask's outline (bottom row).

    Args:
        frames: uint8 ``(T, H, W, 3)``; mask: bool ``(T', H', W')``; motion: ``(T', h, w)`` magnitudes (NaN: none).
    """
    plt = _pyplot()
    slices, rows, cols = mask.shape
    tubelet = frames.shape[0] // slices
    height, width = frames.shape[1:3]
    finite = motion[torch.isfinite(motion)]
    top = float(finite.max()) if finite.numel() and float(finite.max()) > 0 else 1.0
    fig, axes = plt.subplots(2, slices, figsize=(1.6 * slices, 3.5), squeeze=False)
    extent = (0, width, height, 0)
    for s in range(slices):
        shade = mask[s].numpy().astype(np.float32)
        image = frames[s * tubelet].numpy().astype(np.float32) / 255.0
        big = np.kron(shade, np.ones((height // rows, width // cols), np.float32))[..., None]
        axes[0, s].imshow(image * (1 - 0.7 * big) + 0.7 * big * np.array([0.1, 0.3, 0.9], np.float32))
        axes[0, s].set_title(f"t'={s}: {int(mask[s].sum())}", fontsize=7)
        field = motion[s].numpy()
        if np.isfinite(field).all():
            axes[1, s].imshow(field, cmap="magma", vmin=0, vmax=top, extent=extent)
        else:
            axes[1, s].text(0.5, 0.5, "no motion", ha="center", va="center", transform=axes[1, s].transAxes,
                            fontsize=7)
        axes[1, s].contour(np.kron(shade, np.ones((8, 8))), levels=[0.5], colors="cyan", linewidths=0.6,
                           extent=(0, width, 0, height), origin="upper")
        axes[1, s].set_xlim(0, width)
        axes[1, s].set_ylim(height, 0)
        for ax in axes[:, s]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("masked (blue)", fontsize=7)
    axes[1, 0].set_ylabel("motion |v|", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, plt, path)


def draw_confusion(confusion, class_names: list[str] | None, path: str | os.PathLike, title: str = "") -> str:
    """Row-normalized confusion matrix (rows: true class, columns: predicted) as a PNG."""
    plt = _pyplot()
    matrix = np.asarray(confusion, dtype=np.float64)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    k = len(matrix)
    names = class_names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * k + 2), max(3.5, 0.45 * k + 1.5)))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, plt, path)


def draw_curves(curves: dict[str, tuple[list[int], list[float]]], path: str | os.PathLike, ylabel: str = "loss",
                title: str = "") -> str:
    """One line per run: ``{name: (steps, values)}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, (steps, values) in curves.items():
        ax.plot(steps, values, label=name, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, plt, path)


def draw_bars(groups: dict[str, dict[str, tuple[float, float]]], path: str | os.PathLike, title: str = "",
              ylabel: str = "", reference: float | None = None) -> str:
    """Grouped bars with error bars: ``{group: {bar: (mean, std)}}``; ``reference`` draws a dashed line (chance)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bars = list(dict.fromkeys(name for group in groups.values() for name in group))
    width = 0.8 / max(1, len(bars))
    for i, name in enumerate(bars):
        xs = [g + (i - (len(bars) - 1) / 2) * width for g, group in enumerate(groups.values()) if name in group]
        values = [group[name] for group in groups.values() if name in group]
        ax.bar(xs, [m for m, _ in values], width, yerr=[s for _, s in values], capsize=4, label=name)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, plt, path)


def draw_trajectories(frames: torch.Tensor, starts: torch.Tensor, tracks: dict, path: str | os.PathLike,
                      masked: torch.Tensor | None = None, title: str = "") -> str:
    """Trajectories over their first frame, one panel per entry of ``tracks`` side by side (PNG), or drawn step by
    step over their raw frames (``.gif``). Colours run from dark to light in time, as MME's Fig. 4; only valid
    trajectories are drawn, and with ``masked`` only those of masked patches (which are shaded).

    Args:
        frames: uint8 ``(L + 1, S, S, 3)``; starts: ``(P, 2)`` x, y; tracks: name → ``(deltas (P, L, 2), valid
        (P,))``; masked: ``(P,)`` bool or None.
    """
    paths = {name: torch.cat([starts[:, None], starts[:, None] + deltas.cumsum(1)], 1).numpy()
             for name, (deltas, _) in tracks.items()}  # (P, L + 1, 2)
    keep = {name: (valid & masked if masked is not None else valid).numpy() for name, (_, valid) in tracks.items()}
    if os.fspath(path).lower().endswith(".gif"):
        return _trajectory_gif(frames, paths, keep, path)
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    fig, axes = plt.subplots(1, len(tracks), figsize=(3.6 * len(tracks), 3.9), squeeze=False)
    steps = frames.shape[0] - 1
    colours = plt.get_cmap("viridis")(np.linspace(0.05, 0.95, steps))
    side = frames.shape[1]
    shade = None
    if masked is not None:  # shade each masked point's own cell (points of a patch are one cell apart in x)
        half = float(starts[1, 0] - starts[0, 0]) / 2 if len(starts) > 1 else 4.0
        shade = np.zeros((side, side), np.float32)
        for x, y in starts[masked].numpy():
            shade[max(round(y - half + 0.5), 0):round(y + half + 0.5), max(round(x - half + 0.5), 0):
                  round(x + half + 0.5)] = 1.0
    for ax, name in zip(axes[0], tracks, strict=True):
        image = frames[0].numpy().astype(np.float32) / 255.0
        if shade is not None:
            image = image * (1 - 0.5 * shade[..., None]) + 0.5 * shade[..., None] * np.array([0.1, 0.3, 0.9])
        ax.imshow(image)
        ax.set_xlim(-0.5, side - 0.5)
        ax.set_ylim(side - 0.5, -0.5)
        drawn = paths[name][keep[name]]
        segments = np.stack([drawn[:, :-1], drawn[:, 1:]], 2).reshape(-1, 2, 2)  # (P·L, 2, 2)
        ax.add_collection(LineCollection(segments, colors=np.tile(colours, (len(drawn), 1)), linewidths=0.8))
        ax.scatter(drawn[:, 0, 0], drawn[:, 0, 1], s=1.5, c="white", linewidths=0)
        ax.set_title(f"{name} ({len(drawn)} tracks)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, plt, path)


def _trajectory_gif(frames: torch.Tensor, paths: dict, keep: dict, path) -> str:
    from PIL import Image, ImageDraw

    images = []
    for step in range(frames.shape[0]):
        panels = []
        for name, points in paths.items():
            panel = Image.fromarray(frames[step].numpy())
            draw = ImageDraw.Draw(panel)
            for track in points[keep[name]]:
                if step:
                    draw.line([tuple(p) for p in track[: step + 1]], fill=(255, 220, 0), width=1)
                x, y = track[step]
                draw.point((float(x), float(y)), fill=(255, 255, 255))
            draw.text((3, 3), name, fill=(255, 255, 255))
            panels.append(panel)
        sheet = Image.new("RGB", (sum(p.width for p in panels), panels[0].height))
        for i, panel in enumerate(panels):
            sheet.paste(panel, (i * panel.width, 0))
        images.append(sheet)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=250, loop=0)
    return path


def draw_panels(panels: dict[str, torch.Tensor], path: str | os.PathLike, title: str = "", columns: int = 4) -> str:
    """Rows of pictures, one row per ``panels`` entry (``(T, 3, H, W)`` in [0, 1]), ``columns`` frames evenly
    spaced through the clip."""
    plt = _pyplot()
    frames = next(iter(panels.values())).shape[0]
    picks = np.linspace(0, frames - 1, min(columns, frames)).round().astype(int)
    fig, axes = plt.subplots(len(panels), len(picks), figsize=(2.2 * len(picks), 2.2 * len(panels)), squeeze=False)
    for row, (name, pictures) in zip(axes, panels.items(), strict=True):
        for ax, t in zip(row, picks, strict=True):
            ax.imshow(pictures[t].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(name, fontsize=8)
    for ax, t in zip(axes[0], picks, strict=True):
        ax.set_title(f"frame {t}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, plt, path)


def _save(fig, plt, path) -> str:
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
