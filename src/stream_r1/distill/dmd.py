"""Distribution Matching Distillation (docs/method.md §2.2).

For a student sample x: draw σ (shifted, clamped to [0.02, 0.98]), noise x to x_t,
    p_real = teacher x0 with classifier-free guidance (form `guidance_form`),   p_fake = critic x0,
    g = (p_fake − p_real) / mean|x − p_real|              (one normaliser per sample),
and the generator loss is ½‖x − sg(x − g)‖², whose gradient with respect to x is exactly g. It is
returned per element so that Stream-R1's weights can multiply it (method.md §3.5). The critic
learns the student's distribution with the flow-matching loss on noised student samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common.config import ConfigError, from_section
from ..diffusion import flow
from ..diffusion.sampler import GUIDANCE_FORMS, Generators, guided_flow, randn
from ..models.dit import DiT


@dataclass
class DMDSettings:
    """The `dmd` section of a distillation config."""

    guidance: float = 3.0
    guidance_form: str = "uncond"  # real score: "uncond" u + g·(c − u) | "cond" c + g·(c − u) (the public recipe)
    shift: float = 3.0
    min_sigma: float = 0.02
    max_sigma: float = 0.98

    @classmethod
    def from_dict(cls, d: dict) -> DMDSettings:
        s = from_section(cls, d, "dmd")
        if s.guidance_form not in GUIDANCE_FORMS:
            raise ConfigError(f"dmd.guidance_form={s.guidance_form!r}; choose one of {GUIDANCE_FORMS}")
        return s


def draw_sigma(batch: int, settings: DMDSettings, generators: Generators) -> torch.Tensor:
    """Per-sample σ = shift(u), u ~ U(0,1), clamped; one draw per sample generator."""
    gens = generators if isinstance(generators, list) else [generators] * batch
    u = torch.cat([torch.rand(1, generator=g) for g in gens])
    return flow.shift_sigma(u, settings.shift).clamp(settings.min_sigma, settings.max_sigma)


@torch.no_grad()
def dmd_gradient(
    x: torch.Tensor,
    teacher: DiT,
    critic: DiT,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    settings: DMDSettings,
    generators: Generators = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DMD gradient g for student latents x [B, C, F, h, w] (method.md §2.2); no graph."""
    x = x.detach()
    sigma = draw_sigma(x.shape[0], settings, generators).to(x.device)
    x_t = flow.add_noise(x, randn(x.shape, generators).to(x), sigma)
    t = flow.timestep(sigma)
    real = guided_flow(teacher, x_t, t, cond, uncond, settings.guidance, settings.guidance_form)
    p_real = flow.x0_from_flow(x_t, real, sigma)
    p_fake = flow.x0_from_flow(x_t, critic(x_t, t, cond), sigma)
    normalizer = (x - p_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-8)
    g = (p_fake - p_real) / normalizer
    return g, {"sigma": sigma, "normalizer": normalizer.flatten(), "grad_norm": g.flatten(1).norm(dim=1)}


def dmd_elementwise_loss(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """½(x − sg(x − g))² per element; d/dx of its sum is g (method.md §2.2)."""
    target = (x - g).detach()
    return 0.5 * (x - target) ** 2


def critic_flow_loss(
    critic: DiT, x: torch.Tensor, cond: torch.Tensor, settings: DMDSettings, generators: Generators = None
) -> torch.Tensor:
    """Flow-matching loss of the critic on noised student samples x (detached)."""
    x = x.detach()
    sigma = draw_sigma(x.shape[0], settings, generators).to(x.device)
    noise = randn(x.shape, generators).to(x)
    pred = critic(flow.add_noise(x, noise, sigma), flow.timestep(sigma), cond)
    return (pred - flow.flow_target(x, noise)).pow(2).mean()
