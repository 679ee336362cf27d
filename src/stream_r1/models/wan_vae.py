"""The Wan VAE as a codec (DESIGN.md §5): diffusers `AutoencoderKLWan` behind the toy codec's interface.

Pixels [B, T, 3, H, W] in [0, 1] <-> normalised latents [B, 16, F, H/8, W/8] with T = 4(F − 1) + 1: the
first frame is coded alone, every later latent frame carries 4 pixel frames (the VAE is causal in time).
Latents are normalised per channel with the VAE's own statistics, z = (μ − mean)/std, as Wan's
pipelines do. Decoding is differentiable (nothing here disables autograd), and `stream_decoder()`
decodes chunk by chunk with the VAE's causal feature cache carried across chunks, giving the same
frames as decoding the whole clip at once. diffusers is imported lazily (the `paper` extra).
"""

from __future__ import annotations

import os

import torch
from torch import nn


def _vae_class():
    try:
        from diffusers import AutoencoderKLWan
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the Wan VAE needs diffusers: pip install -e '.[paper]'") from err
    return AutoencoderKLWan


class WanVAECodec(nn.Module):
    """Wan 2.1 VAE codec: `encode`, `decode`, `stream_decoder`, frame arithmetic."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        cfg = vae.config
        self.latent_channels = int(cfg.z_dim)
        self.time_factor = int(cfg.scale_factor_temporal or 4)
        self.space_factor = int(cfg.scale_factor_spatial or 8)
        self.register_buffer("latent_mean", torch.tensor(cfg.latents_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("latent_std", torch.tensor(cfg.latents_std, dtype=torch.float32), persistent=False)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> WanVAECodec:
        """Load a local diffusers VAE folder (e.g. Wan2.1-T2V-1.3B-Diffusers/vae); never downloads."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no Wan VAE folder at {path}; download Wan-AI/Wan2.1-T2V-1.3B-Diffusers "
                                    "and point codec.path at its vae/ folder")
        return cls(_vae_class().from_pretrained(str(path), torch_dtype=dtype, local_files_only=True))

    # -- frame arithmetic --------------------------------------------------------------------

    def latent_frames(self, frames: int) -> int:
        """Latent frames F of a T-frame clip; T must be 4k + 1."""
        if frames < 1 or (frames - 1) % self.time_factor:
            raise ValueError(f"{frames} frames cannot be coded by the Wan VAE; use 4k+1 frames (e.g. 81)")
        return (frames - 1) // self.time_factor + 1

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames T of F latent frames."""
        return self.time_factor * (latent_frames - 1) + 1

    def pixel_frames_of_latent(self, k: int) -> range:
        """The pixel frames latent frame k decodes to: frame 0 for k = 0, frames 4k−3 … 4k after it (causal)."""
        return range(0, 1) if k == 0 else range(self.time_factor * (k - 1) + 1, self.time_factor * k + 1)

    def latent_of_pixel_frame(self, frames: int) -> torch.Tensor:
        """The latent frame each of `frames` (4k + 1) pixel frames decodes from: [0, 1, 1, 1, 1, 2, …]."""
        self.latent_frames(frames)
        t = torch.arange(frames)
        return torch.where(t == 0, 0, (t - 1).div(self.time_factor, rounding_mode="floor") + 1)

    # -- coding --------------------------------------------------------------------------------

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return self.latent_mean.view(shape).to(like), self.latent_std.view(shape).to(like)

    def normalize(self, mu: torch.Tensor) -> torch.Tensor:
        """z = (μ − mean)/std per latent channel."""
        mean, std = self._stats(mu)
        return (mu - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """μ = z·std + mean per latent channel."""
        mean, std = self._stats(z)
        return z * std + mean

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] in [0, 1] -> normalised latents [B, C, F, H/8, W/8] (posterior mean)."""
        self.latent_frames(pixels.shape[1])
        dtype = self.vae.dtype
        x = (pixels * 2 - 1).permute(0, 2, 1, 3, 4).to(dtype)
        mu = self.vae.encode(x).latent_dist.mode()
        return self.normalize(mu.float())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, F, h, w] -> pixels [B, T, 3, 8h, 8w] in [0, 1]; differentiable."""
        x = self.vae.decode(self.denormalize(latents.float()).to(self.vae.dtype)).sample
        return _to_unit(x)

    def stream_decoder(self) -> WanStreamDecoder:
        """A decoder for one stream of latent chunks (first chunk first)."""
        return WanStreamDecoder(self)


class WanStreamDecoder:
    """Decodes consecutive latent chunks of one clip, carrying the VAE's causal cache between them."""

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        vae = codec.vae
        self.cache: list = [None] * vae._cached_conv_counts["decoder"]
        self.frames_done = 0

    def decode(self, chunk: torch.Tensor) -> torch.Tensor:
        """Latent chunk [B, C, f, h, w] -> its pixel frames [B, t, 3, 8h, 8w] in [0, 1]."""
        vae = self.codec.vae
        x = vae.post_quant_conv(self.codec.denormalize(chunk.float()).to(vae.dtype))  # 1×1×1: per frame
        outs = []
        for i in range(x.shape[2]):
            idx = [0]
            outs.append(vae.decoder(x[:, :, i:i + 1], feat_cache=self.cache, feat_idx=idx,
                                    first_chunk=self.frames_done == 0))
            self.frames_done += 1
        return _to_unit(torch.cat(outs, dim=2).clamp(-1, 1))


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """VAE output [B, 3, T, H, W] in [−1, 1] -> [B, T, 3, H, W] in [0, 1], float32."""
    return ((x.float() + 1) / 2).clamp(0, 1).permute(0, 2, 1, 3, 4)


def tiny_wan_vae(z_dim: int = 16, base_dim: int = 8, seed: int = 0) -> nn.Module:
    """A randomly initialised AutoencoderKLWan with Wan's layout at toy width (tests, --dry-run)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _vae_class()(base_dim=base_dim, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            latents_mean=[0.1 * i for i in range(z_dim)],
                            latents_std=[1.0 + 0.1 * i for i in range(z_dim)])
