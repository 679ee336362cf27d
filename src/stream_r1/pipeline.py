"""Text-to-video pipeline around one DiT checkpoint: text encoder + sampler + codec.

A causal checkpoint streams chunk by chunk through the KV cache (few denoising steps per chunk);
a bidirectional one samples the whole clip with the Euler CFG sampler. Prompt i of a call uses seed
`seed + i` for all of its noise, so a video does not depend on what else is in the batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .checkpoint import load_dit
from .diffusion import flow
from .diffusion.sampler import denoising_sigmas, randn, sample_euler_cfg, stream_chunks
from .models.codec import SpaceToDepthCodec
from .models.dit import DiT
from .models.text import ToyTextEncoder
from .toyworld.render import FRAME_SIZE


@dataclass
class SamplerSettings:
    """Sampling defaults stored with a checkpoint."""

    steps: int = 25  # bidirectional Euler steps
    guidance: float = 3.0
    shift: float = 3.0
    denoising_timesteps: list[float] = field(default_factory=lambda: [1000.0, 750.0, 500.0, 250.0])

    @classmethod
    def from_dict(cls, d: dict) -> SamplerSettings:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class VideoPipeline:
    """Generate toy videos from prompts with one DiT checkpoint."""

    def __init__(
        self,
        model: DiT,
        codec: SpaceToDepthCodec,
        text: ToyTextEncoder,
        sampler: SamplerSettings,
        frame_size: int = FRAME_SIZE,
    ) -> None:
        self.frame_size = frame_size
        self.model = model.eval()
        self.codec = codec
        self.text = text
        self.sampler = sampler

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike) -> VideoPipeline:
        model, extra = load_dit(name_or_path)
        codec = SpaceToDepthCodec(extra.get("codec", {}).get("factor", 1))
        text = ToyTextEncoder(model.cfg.text_dim)
        sampler = SamplerSettings.from_dict(extra.get("sampler", {}))
        return cls(model, codec, text, sampler, extra.get("frame_size", FRAME_SIZE))

    @property
    def frames_per_chunk(self) -> int:
        return self.model.cfg.frames_per_chunk * self.codec.time_factor

    def check_frames(self, frames: int) -> None:
        fpc = self.frames_per_chunk
        if frames <= 0 or frames % fpc:
            raise ValueError(f"--frames {frames} is not a whole number of chunks; use a positive multiple of {fpc}")

    def latent_shape(self, batch: int, frames: int) -> tuple[int, int, int, int, int]:
        """Latent shape [B, C, F, h, w] of `frames` pixel frames."""
        f = self.codec.space_factor
        size = self.frame_size // f
        return (batch, self.codec.latent_channels, frames // self.codec.time_factor, size, size)

    @torch.no_grad()
    def stream(
        self, prompts: list[str], frames: int, seed: int, steps: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Yield decoded pixel chunks [B, t, 3, H, W] as they are generated."""
        self.check_frames(frames)
        cond = self.text(prompts)
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
        shape = self.latent_shape(len(prompts), frames)
        s = self.sampler
        if self.model.cfg.causal:
            timesteps = s.denoising_timesteps
            if steps is not None:
                timesteps = torch.linspace(1000, 1000 / steps, steps).tolist()
            sigmas = denoising_sigmas(timesteps, s.shift)
            fpc = self.model.cfg.frames_per_chunk
            chunk_shape = (*shape[:2], fpc, *shape[3:])
            for chunk in stream_chunks(self.model, shape[2] // fpc, chunk_shape, sigmas, cond, gens):
                yield self.codec.decode(chunk)
        else:
            sigmas = flow.sampling_sigmas(steps or s.steps, s.shift)
            uncond = self.text([""] * len(prompts))
            noise = randn(shape, gens)
            yield self.codec.decode(sample_euler_cfg(self.model, noise, sigmas, cond, uncond, s.guidance))

    def generate(self, prompts: list[str], frames: int, seed: int, steps: int | None = None) -> torch.Tensor:
        """Whole videos [B, T, 3, H, W] in [0, 1]."""
        return torch.cat(list(self.stream(prompts, frames, seed, steps=steps)), dim=1)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """[T, 3, H, W] in [0,1] -> uint8 [T, H, W, 3]."""
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
