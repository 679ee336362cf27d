"""Differentiable Qwen2-VL video preprocessing in torch (docs/method.md §5.2).

What Qwen2-VL's video processor does to frames, written as torch ops so that the reward's gradient
reaches the pixels (the saliency of DESIGN.md §3 step 3):
  1. frames are sampled uniformly (indices round(linspace(0, T−1, n)), n even);
  2. each frame is resized (bicubic, antialiased) to (h, w), both multiples of 28, with h·w kept in
     [min_pixels, max_pixels] ("smart resize");
  3. values in [0, 1] are normalised with the CLIP mean/std;
  4. an odd frame count is padded by repeating the last frame (temporal patch 2);
  5. the clip is cut into 2×14×14 patches, and the patch rows are ordered 2×2 merge window by merge
     window (not raster order): row = ((t·gh/2 + i)·gw/2 + j)·4 + 2·a + b for merge window (i, j) and
     position (a, b) inside it, gh × gw the 14-pixel patch grid; each row is (channel, time, y, x)
     flattened, 3·2·14·14 = 1176 values.
`patch_rows_to_grid` undoes step 5 for any per-row quantity (e.g. a saliency norm), so a map computed
on patch rows lands on the right cell of the (t, y, x) patch grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PATCH = 14
TEMPORAL_PATCH = 2
MERGE = 2
FACTOR = PATCH * MERGE  # 28


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = 128 * 28 * 28,
                 max_pixels: int = 768 * 28 * 28) -> tuple[int, int]:
    """Target (h, w): multiples of `factor`, aspect kept, h·w within [min_pixels, max_pixels] (§5.2 step 2)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"frame {height}x{width} is too elongated for Qwen2-VL (aspect ratio must be ≤ 200)")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def sample_frame_indices(total: int, video_fps: float, fps: float | None, min_frames: int = 4,
                         max_frames: int = 768) -> torch.Tensor:
    """Frames sampled at `fps` from a clip of `total` frames at `video_fps` (§5.2 step 1); None keeps all."""
    if fps is None:
        return torch.arange(total)
    lo = math.ceil(min_frames / TEMPORAL_PATCH) * TEMPORAL_PATCH
    hi = math.floor(min(max_frames, total) / TEMPORAL_PATCH) * TEMPORAL_PATCH
    n = min(max(total / video_fps * fps, lo), hi)
    n = max(TEMPORAL_PATCH, min(total, round(n / TEMPORAL_PATCH) * TEMPORAL_PATCH))
    return torch.linspace(0, total - 1, n).round().long()


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased resize of [..., 3, H, W] (what torchvision does to float tensors); no-op at size."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:])
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return x.reshape(*lead, *x.shape[-3:])


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """CLIP normalisation of [..., 3, H, W] in [0, 1] (§5.2 step 3)."""
    mean = torch.tensor(CLIP_MEAN, device=frames.device, dtype=frames.dtype).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=frames.device, dtype=frames.dtype).view(3, 1, 1)
    return (frames - mean) / std


def pad_time(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] -> T rounded up to a multiple of 2 by repeating the last frame (§5.2 step 4)."""
    pad = -frames.shape[1] % TEMPORAL_PATCH
    if pad:
        frames = torch.cat([frames, frames[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
    return frames


def patchify(frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """[B, T, 3, H, W] (T even, H and W multiples of 28) -> rows [B, N, 1176] in merge-window order, grid."""
    b, t, c, h, w = frames.shape
    gt, gh, gw = t // TEMPORAL_PATCH, h // PATCH, w // PATCH
    x = frames.reshape(b, gt, TEMPORAL_PATCH, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    # axes: b, t, dt, c, i, a, y, j, bb, x  ->  b, t, i, j, a, bb, c, dt, y, x
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return x.reshape(b, gt * gh * gw, c * TEMPORAL_PATCH * PATCH * PATCH), (gt, gh, gw)


def unpatchify(rows: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of `patchify`: rows [B, N, 1176] -> frames [B, T, 3, H, W]."""
    gt, gh, gw = grid
    b = rows.shape[0]
    x = rows.reshape(b, gt, gh // MERGE, gw // MERGE, MERGE, MERGE, 3, TEMPORAL_PATCH, PATCH, PATCH)
    # axes: b, t, i, j, a, bb, c, dt, y, x  ->  b, t, dt, c, i, a, y, j, bb, x
    x = x.permute(0, 1, 7, 6, 2, 4, 8, 3, 5, 9)
    return x.reshape(b, gt * TEMPORAL_PATCH, 3, gh * PATCH, gw * PATCH)


def patch_rows_to_grid(values: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Per-row values [B, N] (merge-window order) -> [B, T/2, H/14, W/14] on the raster patch grid."""
    gt, gh, gw = grid
    x = values.reshape(values.shape[0], gt, gh // MERGE, gw // MERGE, MERGE, MERGE)
    return x.permute(0, 1, 2, 4, 3, 5).reshape(values.shape[0], gt, gh, gw)


def preprocess_video(pixels: torch.Tensor, min_pixels: int = 128 * 28 * 28, max_pixels: int = 768 * 28 * 28,
                     frame_indices: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pixels [B, T, 3, H, W] in [0, 1] -> (rows [B, N, 1176], grid (T', H'/14, W'/14)); differentiable."""
    if frame_indices is not None:
        pixels = pixels[:, frame_indices.to(pixels.device)]
    size = smart_resize(pixels.shape[-2], pixels.shape[-1], FACTOR, min_pixels, max_pixels)
    return patchify(pad_time(normalize(resize_frames(pixels, size))))
