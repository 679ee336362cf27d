"""Samplers as small pure functions of (model, latents, sigmas, conditioning) (docs/method.md §1).

- `sample_euler_cfg`: the teacher's deterministic flow ODE with classifier-free guidance, whole clip.
- `stream_chunks`: the streaming student — per chunk a few denoising steps through the KV cache,
  x0 re-noised to the next level between steps, then the finished chunk re-run at t = 0 to write a
  clean cache entry. Yields each chunk as soon as it is done.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..models.dit import DiT
from . import flow

Generators = torch.Generator | list[torch.Generator] | None


def randn(shape: tuple[int, ...] | torch.Size, generator: Generators = None) -> torch.Tensor:
    """Standard normal draws; with one generator per sample, each sample's draw ignores the batch."""
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generator])
    return torch.randn(tuple(shape), generator=generator)


GUIDANCE_FORMS = ("uncond", "cond")


def guided_flow(
    model: DiT,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance: float,
    form: str = "uncond",
) -> torch.Tensor:
    """Flow with classifier-free guidance, cond and uncond run as one batch (docs/method.md §1, §2.2).

    form "uncond": u + g·(c − u) (g = 1 is the conditional flow); form "cond": c + g·(c − u), the public
    Self-Forcing / Stream-R1 recipe's real score, an effective scale of g + 1 in the first form.
    """
    if form not in GUIDANCE_FORMS:
        raise ValueError(f"guidance form {form!r}; choose one of {GUIDANCE_FORMS}")
    if uncond is None or guidance == (1.0 if form == "uncond" else 0.0):
        return model(x, t, cond)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond]))
    c, u = both.chunk(2)
    return (u if form == "uncond" else c) + guidance * (c - u)


@torch.no_grad()
def sample_euler_cfg(
    model: DiT,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """Integrate dx/dσ = flow from σ = sigmas[0] down to sigmas[-1] with Euler steps."""
    x = noise
    b = x.shape[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        t = flow.timestep(s).expand(b)
        x = x + (s_next - s) * guided_flow(model, x, t, cond, uncond, guidance)
    return x


def denoising_sigmas(timesteps: list[float] | torch.Tensor, shift: float) -> torch.Tensor:
    """The student's denoising steps, e.g. [1000, 750, 500, 250], warped through the shifted schedule."""
    t = torch.as_tensor(timesteps, dtype=torch.float32) / flow.NUM_TRAIN_TIMESTEPS
    return flow.shift_sigma(t, shift)


def predict_x0(model: DiT, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, cache) -> torch.Tensor:
    """One denoising step of a chunk against a read-only cache: the x0 prediction at noise level σ."""
    cache.writing = False
    return flow.x0_from_flow(x, model(x, flow.timestep(sigma).expand(x.shape[0]), cond, kv_cache=cache), sigma)


def denoise_chunk(
    model: DiT,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    cond: torch.Tensor,
    cache,
    generator: Generators = None,
    steps: int | None = None,
) -> torch.Tensor:
    """Run the first `steps` (default all) denoising steps of a chunk; returns the last x0 prediction.

    Between steps the x0 prediction is re-noised to the next level with fresh noise (self-forcing).
    """
    x = noise
    steps = len(sigmas) if steps is None else steps
    for i in range(steps):
        x0 = predict_x0(model, x, sigmas[i], cond, cache)
        if i + 1 < steps:
            x = renoise(x0, sigmas[i + 1], generator)
    return x0


def renoise(x0: torch.Tensor, sigma: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """Noise an x0 prediction back up to level σ with fresh noise."""
    return flow.add_noise(x0, randn(x0.shape, generator).to(device=x0.device, dtype=x0.dtype), sigma)


@torch.no_grad()
def write_cache(model: DiT, x0: torch.Tensor, cond: torch.Tensor, cache, t_clean: float = 0.0) -> None:
    """Re-run a finished chunk at t ≈ 0 to append its clean keys/values to the cache."""
    cache.writing = True
    model(x0, torch.full((x0.shape[0],), t_clean, device=x0.device), cond, kv_cache=cache)
    cache.writing = False


@torch.no_grad()
def stream_chunks(
    model: DiT,
    num_chunks: int,
    chunk_shape: tuple[int, ...],
    sigmas: torch.Tensor,
    cond: torch.Tensor,
    generator: Generators = None,
    init: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Generate a video chunk by chunk through the KV cache; yields latents `chunk_shape` [B, C, fpc, h, w].

    Each chunk draws its own noise when it starts, so chunk k never depends on how many follow. `init`
    (clean latents [B, C, F0, h, w], F0 a whole number of chunks) is written into the cache first, chunk by
    chunk as if it had been generated, and the stream continues from it (`generate --init-video`).
    """
    fpc = model.cfg.frames_per_chunk
    if chunk_shape[2] != fpc:
        raise ValueError(f"chunk of {chunk_shape[2]} frames; the model streams {fpc}")
    cache = model.new_cache()
    if init is not None:
        if init.shape[2] % fpc or init.shape[2] == 0:
            raise ValueError(f"the given video has {init.shape[2]} latent frames; give a whole number of "
                             f"{fpc}-frame chunks")
        for k in range(init.shape[2] // fpc):
            write_cache(model, init[:, :, k * fpc : (k + 1) * fpc].to(cond.device), cond, cache)
    for k in range(num_chunks):
        noise = randn(chunk_shape, generator).to(cond.device)
        x0 = denoise_chunk(model, noise, sigmas, cond, cache, generator)
        if k + 1 < num_chunks:  # nothing reads the last chunk's cache entry
            write_cache(model, x0, cond, cache)
        yield x0
