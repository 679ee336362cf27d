"""Writing videos people can open: MP4 (upscaled for viewing), raw npz frames, image grids."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from ..common.weights import atomic_write


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale of uint8 [T, H, W, 3] so tiny toy frames stay crisp when viewed."""
    return frames.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8, scale: int = 8) -> None:
    """H.264 MP4 of uint8 [T, H, W, 3], written atomically."""
    big = upscale(np.asarray(frames, dtype=np.uint8), scale)
    atomic_write(
        Path(path),
        lambda tmp: iio.imwrite(tmp, big, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1),
    )


def write_npz(path: Path, frames: np.ndarray) -> None:
    """Raw frames, key `frames`: uint8 [T, H, W, 3], written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, frames=np.asarray(frames, dtype=np.uint8))

    atomic_write(Path(path), write)


def read_video(path: str | Path, size: int | tuple[int, int]) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] of an npz (key `frames`, as `generate` writes) or an MP4; an MP4 whose frames are
    a whole multiple of `size` (as `write_mp4` upscales them) is averaged back down to it."""
    path = Path(path)
    h, w = (size, size) if isinstance(size, int) else size
    if not path.exists():
        raise FileNotFoundError(f"video {path} does not exist; give an .npz or .mp4 file")
    if path.suffix == ".npz":
        with np.load(path) as data:
            if "frames" not in data:
                raise ValueError(f"{path} has no `frames` array; give an npz written by `stream-r1 generate`")
            frames = np.asarray(data["frames"])
    elif path.suffix == ".mp4":
        frames = np.asarray(iio.imread(path))
    else:
        raise ValueError(f"video {path}: unknown type {path.suffix!r}; give an .npz or .mp4 file")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video {path} has shape {frames.shape}; expected frames [T, H, W, 3]")
    big_h, big_w = frames.shape[1:3]
    if (big_h, big_w) != (h, w):
        if big_h % h or big_w % w or big_h // h != big_w // w:
            raise ValueError(f"video {path} has {big_h}x{big_w} frames; the checkpoint makes {h}x{w} (or a whole "
                             "multiple of it)")
        k = big_h // h
        frames = frames.reshape(len(frames), h, k, w, k, 3).astype(np.float64).mean(axis=(2, 4)).round()
    return frames.astype(np.uint8)


def frame_strip(videos: list[np.ndarray], scale: int = 4, gap: int = 1, labels: list[str] | None = None,
                label_width: int = 120) -> np.ndarray:
    """One image: a row per video, its frames side by side (uint8 [H', W', 3]); with `labels`, each row's name is
    written in a margin on the left, so a grid of videos and heat maps says which row is which."""
    rows = []
    for v in videos:
        v = upscale(np.asarray(v, dtype=np.uint8), scale)
        t, h, w, _ = v.shape
        row = np.full((h, t * (w + gap) - gap, 3), 128, np.uint8)
        for i in range(t):
            row[:, i * (w + gap) : i * (w + gap) + w] = v[i]
        rows.append(row)
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"{len(labels)} labels for {len(rows)} rows; give one label per video")
    margin = label_width if labels else 0
    width = max(r.shape[1] for r in rows)
    out = np.full((sum(r.shape[0] + gap for r in rows) - gap, margin + width, 3), 128, np.uint8)
    y, starts = 0, []
    for r in rows:
        out[y : y + r.shape[0], margin : margin + r.shape[1]] = r
        starts.append((y, r.shape[0]))
        y += r.shape[0] + gap
    if labels:
        from PIL import Image, ImageDraw

        image = Image.fromarray(out)
        draw = ImageDraw.Draw(image)
        for text, (top, height) in zip(labels, starts, strict=True):
            draw.text((4, top + height // 2), text, fill=(255, 255, 255), anchor="lm")
        out = np.asarray(image).copy()
    return out
