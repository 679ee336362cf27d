"""Codecs between pixels [B, T, 3, H, W] in [0, 1] and latents [B, C, F, h, w].

The toy codec is a tiny fixed transform: scale to [-1, 1] and fold `factor`×`factor` pixel blocks
into channels (space-to-depth), so the latent grid is coarser than the pixel grid as at paper scale.
It is exactly invertible and differentiable. The Wan VAE codec implements the same interface.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class Codec(Protocol):
    """What the pipeline needs of a codec."""

    latent_channels: int
    time_factor: int
    space_factor: int

    def encode(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def latent_of_pixel_frame(self, frames: int) -> torch.Tensor: ...


class SpaceToDepthCodec:
    """Fixed, invertible toy codec: pixels in [0,1] -> [-1,1] -> space-to-depth by `factor`."""

    time_factor = 1

    def __init__(self, factor: int = 1) -> None:
        self.space_factor = factor
        self.latent_channels = 3 * factor * factor

    def latent_of_pixel_frame(self, frames: int) -> torch.Tensor:
        """The latent frame each of `frames` pixel frames decodes from: one to one in time."""
        return torch.arange(frames)

    def pixel_frames_of_latent(self, k: int) -> range:
        """The pixel frames latent frame k decodes to."""
        return range(k, k + 1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] in [0,1] -> [B, 3·f², T, H/f, W/f]."""
        b, t, c, h, w = pixels.shape
        f = self.space_factor
        if h % f or w % f:
            raise ValueError(f"frame size {h}x{w} is not divisible by the codec factor {f}")
        x = pixels.reshape(b * t, c, h, w) * 2 - 1
        x = F.pixel_unshuffle(x, f) if f > 1 else x
        return x.view(b, t, -1, h // f, w // f).transpose(1, 2)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, F, h, w] -> [B, F, 3, h·f, w·f] in [0,1] (clamped)."""
        b, c, t, h, w = latents.shape
        f = self.space_factor
        x = latents.transpose(1, 2).reshape(b * t, c, h, w)
        x = F.pixel_shuffle(x, f) if f > 1 else x
        return ((x + 1) / 2).clamp(0, 1).view(b, t, 3, h * f, w * f)
