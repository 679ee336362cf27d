"""Text-to-video pipeline around one DiT checkpoint: text encoder + sampler + codec.

A causal checkpoint streams chunk by chunk through the KV cache (few denoising steps per chunk);
a bidirectional one samples the whole clip with the Euler CFG sampler. Prompt i of a call uses seed
`seed + i` for all of its noise, so a video does not depend on what else is in the batch. Models, KV
caches, codec and text encoder live on one device; noise is drawn on CPU generators and moved there,
so a seed means the same video on every device. Decoded frames come back as float32 on the CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..common.device import autocast, inference_dtype, resolve_device
from ..diffusion import flow
from ..diffusion.sampler import denoising_sigmas, randn, sample_euler_cfg, stream_chunks
from ..diffusion.switching import stream_switching
from ..models.codec import SpaceToDepthCodec
from ..models.dit import DiT
from ..models.dit_io import load_dit
from ..models.text import ToyTextEncoder
from ..toyworld.render import FRAME_SIZE, NUM_FRAMES


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


class _AutocastDiT(nn.Module):
    """A DiT whose forwards run under autocast in a reduced dtype and return float32 (samplers stay float32)."""

    def __init__(self, model: DiT, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    @property
    def cfg(self):
        return self.model.cfg

    def new_cache(self):
        return self.model.new_cache()

    def forward(self, *args, **kwargs) -> torch.Tensor:
        with autocast(next(self.model.parameters()).device, self.dtype):
            return self.model(*args, **kwargs).float()


class VideoPipeline:
    """Generate toy videos from prompts with one DiT checkpoint."""

    def __init__(
        self,
        model: DiT,
        codec: SpaceToDepthCodec,
        text: ToyTextEncoder,
        sampler: SamplerSettings,
        frame_size: int = FRAME_SIZE,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = dtype
        self.frame_size = frame_size
        self.model = model.eval().to(device=self.device, dtype=dtype)
        self.net = self.model if dtype == torch.float32 else _AutocastDiT(self.model, dtype)  # what samplers call
        self.codec = codec.to(self.device) if isinstance(codec, nn.Module) else codec
        self.text = text.to(self.device) if isinstance(text, nn.Module) else text
        self.sampler = sampler

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None) -> VideoPipeline:
        """The pipeline of a checkpoint on `device` (auto | cpu | cuda | cuda:N); `dtype` None or auto: float32,
        except a paper-scale model on a GPU (bfloat16)."""
        device = resolve_device(device)
        model, extra = load_dit(name_or_path)
        sampler = SamplerSettings.from_dict(extra.get("sampler", {}))
        dtype = inference_dtype(dtype, device, extra.get("family", "toy"))
        if extra.get("family") == "wan":  # a paper-scale student: Wan VAE and UMT5 from the local paths it records
            from ..models.umt5 import UMT5TextEncoder
            from ..models.wan_vae import WanVAECodec

            text_cfg = dict(extra["text"])
            text = UMT5TextEncoder.from_pretrained(text_cfg.pop("path"), text_cfg.pop("tokenizer"), dtype=dtype,
                                                   **text_cfg)
            codec = WanVAECodec.from_pretrained(extra["codec"]["path"])
            return cls(model, codec, text, sampler, tuple(extra["frame_size"]), device, dtype)
        codec = SpaceToDepthCodec(extra.get("codec", {}).get("factor", 1))
        text = ToyTextEncoder(model.cfg.text_dim)
        return cls(model, codec, text, sampler, extra.get("frame_size", FRAME_SIZE), device, dtype)

    @property
    def family(self) -> str:
        """'toy' (the toy grammar's prompts only) or 'wan' (free text)."""
        return "toy" if isinstance(self.text, ToyTextEncoder) else "wan"

    @property
    def frames_per_chunk(self) -> int:
        return self.model.cfg.frames_per_chunk * self.codec.time_factor

    def check_frames(self, frames: int) -> None:
        latent_frames = getattr(self.codec, "latent_frames", None)
        if latent_frames is not None:  # the Wan VAE: T = 4(F − 1) + 1 pixel frames for F latent frames
            fpc = self.model.cfg.frames_per_chunk
            if frames <= 0 or (frames - 1) % self.codec.time_factor or latent_frames(frames) % fpc:
                raise ValueError(f"--frames {frames} is not a whole number of {fpc}-latent-frame chunks; use "
                                 f"{self.codec.time_factor}·{fpc}·k − {self.codec.time_factor - 1} frames (e.g. 81)")
            return
        fpc = self.frames_per_chunk
        if frames <= 0 or frames % fpc:
            raise ValueError(f"--frames {frames} is not a whole number of chunks; use a positive multiple of {fpc}")

    def latent_shape(self, batch: int, frames: int) -> tuple[int, int, int, int, int]:
        """Latent shape [B, C, F, h, w] of `frames` pixel frames."""
        f = self.codec.space_factor
        h, w = self.frame_size if isinstance(self.frame_size, tuple) else (self.frame_size, self.frame_size)
        latent_frames = getattr(self.codec, "latent_frames", lambda n: n // self.codec.time_factor)(frames)
        return (batch, self.codec.latent_channels, latent_frames, h // f, w // f)

    @torch.inference_mode()
    def stream(
        self, prompts: list[str], frames: int, seed: int, steps: int | None = None,
        init_video: torch.Tensor | None = None, prompt_at: Callable[[int], list[str]] | None = None,
        switch: str = "recache",
    ) -> Iterator[torch.Tensor]:
        """Yield decoded pixel chunks [B, t, 3, H, W] as they are generated.

        `init_video` ([B, T0, 3, H, W] in [0, 1], causal toy checkpoints): frames written into the cache first;
        the `frames` new frames continue them. `prompt_at(k)` (causal checkpoints): the prompts of chunk k, asked
        as it starts, `prompts` for chunk 0; a change switches the prompt there (`switch`: recache | keep).
        """
        self.check_frames(frames)
        if prompt_at is not None and not self.model.cfg.causal:
            raise ValueError("a prompt switch needs a causal (streaming) checkpoint; a bidirectional one samples "
                             "the whole clip at once")
        init = self.encode_init(init_video) if init_video is not None else None
        cond = self.text(prompts).to(self.device)
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
        shape = self.latent_shape(len(prompts), frames)
        s = self.sampler
        if self.model.cfg.causal:
            timesteps = s.denoising_timesteps
            if steps is not None:
                timesteps = torch.linspace(1000, 1000 / steps, steps).tolist()
            sigmas = denoising_sigmas(timesteps, s.shift).to(self.device)
            fpc = self.model.cfg.frames_per_chunk
            chunk_shape = (*shape[:2], fpc, *shape[3:])
            stream = getattr(self.codec, "stream_decoder", None)  # a causal VAE decodes with its cache carried
            decode = stream().decode if stream is not None else self.codec.decode
            if prompt_at is None:
                chunks = stream_chunks(self.net, shape[2] // fpc, chunk_shape, sigmas, cond, gens, init)
            else:
                chunks = stream_switching(self.net, shape[2] // fpc, chunk_shape, sigmas,
                                          self.text_at(prompt_at, prompts, cond), gens, init, switch)
            for chunk in chunks:
                yield decode(chunk).float().cpu()
        else:
            sigmas = flow.sampling_sigmas(steps or s.steps, s.shift).to(self.device)
            negative = getattr(self.text, "negative", None)
            uncond = negative(len(prompts)) if negative is not None else self.text([""] * len(prompts))
            noise = randn(shape, gens).to(self.device)  # drawn on the CPU: the same video on every device
            video = sample_euler_cfg(self.net, noise, sigmas, cond, uncond.to(self.device), s.guidance)
            yield self.codec.decode(video).float().cpu()

    def text_at(self, prompt_at: Callable[[int], list[str]], prompts: list[str], cond: torch.Tensor,
                ) -> Callable[[int], torch.Tensor]:
        """Chunk k's text conditioning: one tensor per distinct prompt list, so an unchanged prompt is no switch."""
        encoded = {tuple(prompts): cond}

        def at(k: int) -> torch.Tensor:
            key = tuple(prompt_at(k))
            if key not in encoded:
                encoded[key] = self.text(list(key)).to(self.device)
            return encoded[key]
        return at

    def encode_init(self, video: torch.Tensor) -> torch.Tensor:
        """Latents of the frames a stream continues from; one-line errors for what cannot be continued."""
        if not self.model.cfg.causal:
            raise ValueError("--init-video needs a causal (streaming) checkpoint; a bidirectional one has no cache")
        if self.family != "toy":
            raise ValueError("--init-video is for toy checkpoints for now (the Wan VAE's streaming decoder would "
                             "need its own cache primed too)")
        if video.shape[1] % self.frames_per_chunk:
            raise ValueError(f"the given video has {video.shape[1]} frames; give a whole number of "
                             f"{self.frames_per_chunk}-frame chunks")
        return self.codec.encode(video.to(self.device))

    def generate(self, prompts: list[str], frames: int, seed: int, steps: int | None = None) -> torch.Tensor:
        """Whole videos [B, T, 3, H, W] in [0, 1]."""
        return torch.cat(list(self.stream(prompts, frames, seed, steps=steps)), dim=1)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """[T, 3, H, W] in [0,1] -> uint8 [T, H, W, 3]."""
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def generate_uint8(
    pipe: VideoPipeline, prompts: list[str], seed: int, frames: int = NUM_FRAMES, batch_size: int = 32,
    steps: int | None = None,
) -> tuple[list[np.ndarray], float]:
    """Videos as uint8 [T, H, W, 3] (video i seeded with seed + i) and the seconds per video.

    `steps` overrides the sampler's step count (None: the checkpoint's own schedule).
    """
    videos, start = [], time.perf_counter()
    for b in range(0, len(prompts), batch_size):
        batch = prompts[b : b + batch_size]
        out = pipe.generate(batch, frames, seed + b, steps)
        videos += [to_uint8(v).numpy() for v in out]
    return videos, (time.perf_counter() - start) / max(1, len(prompts))
