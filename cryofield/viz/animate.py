"""Animations over the snapshots: GIF (through Pillow), or MP4 when imageio-ffmpeg is installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from cryofield.errors import InputError


def has_mp4() -> bool:
    """Whether MP4 can be written here (the optional ``imageio-ffmpeg`` package is installed)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def animation_format(requested: str) -> str:
    """``gif`` or ``mp4`` for a requested ``auto``, ``gif`` or ``mp4``; MP4 without imageio-ffmpeg is bad input."""
    if requested == "auto":
        return "mp4" if has_mp4() else "gif"
    if requested == "mp4" and not has_mp4():
        raise InputError("MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); or use GIF",
                         key="--animation-format")
    return requested


def write_animation(frames: Iterable[np.ndarray], path: Path, fps: float = 4.0) -> int:
    """Write (H, W, 3) uint8 frames to ``path`` (format from its suffix); return the number of frames.

    The file appears only when complete (it is written under a temporary name first).
    """
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        count = _write_mp4(frames, partial, fps) if path.suffix == ".mp4" else _write_gif(frames, partial, fps)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    images = [Image.fromarray(np.asarray(frame, np.uint8)) for frame in frames]
    if not images:
        raise ValueError("no frames to animate")
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return len(images)


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    import imageio_ffmpeg

    writer = None
    count = 0
    for frame in frames:
        # H.264 in yuv420p needs even sides: drop a last row or column if needed
        frame = np.ascontiguousarray(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
        if writer is None:
            writer = imageio_ffmpeg.write_frames(str(path), (frame.shape[1], frame.shape[0]), fps=fps,
                                                 codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1)
            writer.send(None)
        writer.send(frame)
        count += 1
    if writer is None:
        raise ValueError("no frames to animate")
    writer.close()
    return count
