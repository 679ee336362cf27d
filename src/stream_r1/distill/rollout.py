"""Self-forcing rollout (docs/method.md §2.1): the student generates every chunk from its own past.

Chunk by chunk through the KV cache: the denoising steps before the rollout's exit step run without
grad, the exit step runs with grad and its x0 prediction is the chunk's sample; the finished chunk
is then re-run at t = 0 without grad to write a clean cache entry for the chunks after it.

Long self-rollouts (method.md §2.4, issue 18): `prefix_chunks` chunks are first streamed without grad by the
student's own sampler, as at inference, so the trained window is generated from a long self-made past
(its rolling cache, its drift) while the loss and the teacher see only a training-length window.
"""

from __future__ import annotations

import torch

from ..diffusion.sampler import Generators, denoise_chunk, predict_x0, randn, renoise, write_cache
from ..models.dit import DiT


def draw_exit_step(num_steps: int, generator: torch.Generator) -> int:
    """One random exit step for the whole rollout (every chunk, every sample, every rank)."""
    return int(torch.randint(num_steps, (1,), generator=generator))


def self_forcing_rollout(
    student: DiT,
    latent_shape: tuple[int, int, int, int, int],
    sigmas: torch.Tensor,
    cond: torch.Tensor,
    exit_step: int,
    generator: Generators = None,
    grad: bool = True,
    prefix_chunks: int = 0,
) -> torch.Tensor:
    """Roll the causal student out over a whole video; returns latents [B, C, F, h, w].

    With `grad`, only each chunk's exit-step forward is recorded for backpropagation. With `prefix_chunks`
    > 0 the returned window follows that many chunks streamed without grad through all denoising steps.
    """
    fpc = student.cfg.frames_per_chunk
    b, c, frames, h, w = latent_shape
    if frames % fpc:
        raise ValueError(f"{frames} latent frames is not a whole number of chunks of {fpc}")
    cache = student.new_cache()
    for _ in range(prefix_chunks):  # the long past, streamed as `generate` streams it
        with torch.no_grad():
            x = randn((b, c, fpc, h, w), generator).to(cond.device)
            write_cache(student, denoise_chunk(student, x, sigmas, cond, cache, generator), cond, cache)
    chunks = []
    for _ in range(frames // fpc):
        x = randn((b, c, fpc, h, w), generator).to(cond.device)
        if exit_step > 0:
            with torch.no_grad():
                x0 = denoise_chunk(student, x, sigmas, cond, cache, generator, steps=exit_step)
                x = renoise(x0, sigmas[exit_step], generator)
        with torch.set_grad_enabled(grad):
            x0 = predict_x0(student, x, sigmas[exit_step], cond, cache)
        write_cache(student, x0.detach(), cond, cache)
        chunks.append(x0)
    return torch.cat(chunks, dim=2)
