"""Flow matching on the rectified path (docs/method.md §1).

x_t = (1 − σ)·x + σ·ε; the model predicts the flow ε − x; x0 = x_t − σ·flow. Timesteps given to the
model are t = 1000·σ. Shifted sigmas σ' = s·σ / (1 + (s − 1)·σ) spend more steps at high noise.
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor:
    """σ' = s·σ / (1 + (s − 1)·σ)  (method.md §1, shifted schedule)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    return shift * sigma / (1 + (shift - 1) * sigma)


def add_noise(x: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_t = (1 − σ)x + σε, σ broadcast from [B] or [B, F] over [B, C, F, H, W]."""
    s = expand_sigma(sigma, x)
    return (1 - s) * x + s * noise


def x0_from_flow(x_t: torch.Tensor, flow: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 = x_t − σ·flow."""
    return x_t - expand_sigma(sigma, x_t) * flow


def flow_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target of flow matching: ε − x."""
    return noise - x


def expand_sigma(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast σ of shape [B] (per sample) or [B, F] (per frame) against [B, C, F, H, W]."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.dim() == 0:
        return sigma
    if sigma.dim() == 1:
        return sigma.view(-1, 1, 1, 1, 1)
    return sigma.view(sigma.shape[0], 1, sigma.shape[1], 1, 1)


def timestep(sigma: torch.Tensor) -> torch.Tensor:
    """Model timestep t = 1000·σ."""
    return sigma * NUM_TRAIN_TIMESTEPS


def sample_train_sigma(
    batch: int, shift: float, generator: torch.Generator | None = None, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    """σ = shift(u), u ~ U(0, 1), then clamped to [low, high] (DMD uses [0.02, 0.98])."""
    u = torch.rand(batch, generator=generator)
    return shift_sigma(u, shift).clamp(low, high)


def sampling_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The decreasing σ grid of a `steps`-step sampler, from 1 to 0, shifted."""
    return shift_sigma(torch.linspace(1.0, 0.0, steps + 1), shift)
