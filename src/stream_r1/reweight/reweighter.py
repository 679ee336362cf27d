"""Stream-R1: reliability-perplexity aware reweighting of the DMD loss (docs/method.md §3).

For each rollout i (decoded pixels v_i in [0, 1], prompt c_i) one forward of the reward model gives the
z-scored axis scores r_i^a (§3.1) and one backward per axis gives the saliency ‖∂R_a/∂v_i‖ (§3.3):
- Inter-Reliability (§3.2): the whole rollout's loss is weighted by w_i = exp(β·r_i), r_i = Σ_a λ_a r_i^a.
- Intra-Perplexity (§3.3–3.4): frames and regions are weighted by the fused, factorised saliency W_intra.
- Adaptive balancing (§3.6): the public code's global penalty, or a per-axis balancer of λ_a.
Every weight is detached from the generator's graph; the reward is a constant to the generator.
What is per rollout (`measure`: scores, W_intra) is kept apart from what is batch-wide (`combine`: the
balancer, the inter weights), so the trainer can normalise over the optimizer step's whole batch (§3.5).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .balance import AxisBalancer
from .inter import combine_axes, inter_weights, inter_weights_by_prompt
from .intra import fusion_weights, intra_weights, pixel_saliency, to_latent_grid
from .settings import AXES, EPS, ReweightSettings

log = logging.getLogger(__name__)


RewardFn = Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]]


@dataclass
class Measured:
    """What one reward pass gives per rollout, before any batch-wide normalisation (rows in batch order)."""

    scores: torch.Tensor  # [B, A] z-scored axis scores, AXES order (NaN where the reward failed)
    w_intra: torch.Tensor | None  # [B, F, h, w] factorised saliency weights (None with intra off)
    pi: torch.Tensor | None  # [B, A] fusion weights of §3.3 (None with intra off)

    @staticmethod
    def cat(parts: list[Measured]) -> Measured:
        """The rows of several micro-batches (or ranks), in the order given."""
        intra = parts[0].w_intra is not None
        return Measured(torch.cat([p.scores for p in parts]),
                        torch.cat([p.w_intra for p in parts]) if intra else None,
                        torch.cat([p.pi for p in parts]) if intra else None)

    def rows(self, index) -> Measured:
        return Measured(self.scores[index], None if self.w_intra is None else self.w_intra[index],
                        None if self.pi is None else self.pi[index])


class StreamR1Reweighter:
    """Computes (w_inter [B], W_intra [B, 1, F, h, w], logs) for the trainer from one reward pass.

    `measure` is per rollout (scores, saliency weights); `combine` normalises over a batch (balancer, inter
    weights). The trainer calls `measure` per micro-batch and `combine` once on the optimizer step's whole
    batch; `__call__` does both on one batch.
    `latent_of_frame(T)` (the codec's) gives the latent frame each of T pixel frames decodes from; the reward's
    `sampled_frames(T)`, where it has one, the pixel frames it reads (method.md §3.3).
    """

    def __init__(self, reward: RewardFn, decode: Callable[[torch.Tensor], torch.Tensor], settings: ReweightSettings,
                 latent_of_frame: Callable[[int], torch.Tensor] | None = None):
        self.reward, self.decode, self.s = reward, decode, settings
        self.latent_of_frame = latent_of_frame
        self.balancer = AxisBalancer(settings.inter_axes, settings.balance, settings.window,
                                     settings.penalty_lambda, settings.balance_rate, settings.balance_threshold)
        self.last: dict[str, torch.Tensor] = {}  # the most recent maps, for sample grids
        if settings.intra and settings.saliency_from == "logits" and getattr(reward, "z_std", None) is None:
            raise ValueError("reweight.saliency_from=logits needs the reward's z-score std (a ZScoredReward, "
                             "attribute z_std); use saliency_from: zscores")

    def score_and_saliency(self, latents: torch.Tensor, prompts: list[str]) -> tuple[dict, torch.Tensor | None]:
        """One reward forward on the decoded rollouts; per-axis saliency [B, A, T, H, W] if intra is on.

        The saliency is of the z-scored score, or of the raw head output (`saliency_from: logits`, σ_a times it).
        """
        pixels = self.decode(latents.detach()).requires_grad_(self.s.intra)
        self.last = {"pixels": pixels.detach()}
        with torch.set_grad_enabled(self.s.intra):
            scores = self.reward(pixels, prompts)
            if not self.s.intra:
                return {a: v.detach() for a, v in scores.items()}, None
            maps = []
            for i, a in enumerate(AXES):
                (grad,) = torch.autograd.grad(scores[a].sum(), pixels, retain_graph=i < len(AXES) - 1)
                if self.s.saliency_from == "logits":
                    grad = grad * self.reward.z_std[i].to(grad)
                maps.append(pixel_saliency(grad))
        return {a: v.detach() for a, v in scores.items()}, torch.stack(maps, dim=1)

    def frame_map(self, frames: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(latent frame of each pixel frame, pixel frames the reward read) for a clip of `frames` frames."""
        of = self.latent_of_frame(frames) if self.latent_of_frame is not None else None
        sampled = getattr(self.reward, "sampled_frames", None)
        return of, (sampled(frames) if sampled is not None else None)

    def measure(self, latents: torch.Tensor, prompts: list[str]) -> Measured:
        """Scores and (with intra on) W_intra of each rollout: one reward forward, one backward per axis."""
        s = self.s
        b, _, f, h, w = latents.shape
        scores, maps = self.score_and_saliency(latents, prompts)
        stacked = torch.stack([scores[a] for a in AXES], dim=1).float().cpu()  # [B, A]
        if not s.intra:
            return Measured(stacked, None, None)
        valid = torch.isfinite(stacked).all(dim=1)
        if s.axis_norm == "mean":
            maps = maps / maps.mean(dim=(2, 3, 4), keepdim=True).clamp_min(EPS)
        pi = fusion_weights(torch.nan_to_num(stacked), s.fusion_temperature).to(maps)  # [B, A]
        fused = (pi[:, :, None, None, None] * maps).sum(dim=1)  # [B, T, H, W]
        weights = intra_weights(to_latent_grid(fused, (f, h, w), *self.frame_map(fused.shape[1])),
                                s.temporal_strength, s.temporal_floor, s.spatial_floor)
        ok = valid.to(weights.device) & torch.isfinite(weights).flatten(1).all(dim=1)
        w_intra = torch.where(ok[:, None, None, None], weights, torch.ones_like(weights))
        self.last.update(saliency=fused.detach(), w_intra=w_intra.unsqueeze(1).detach(),
                         axis_frame_saliency=maps.mean(dim=(3, 4)).detach())  # [B, A, T]: `diagnose`
        return Measured(stacked, w_intra.cpu(), pi.cpu())

    def combine(self, m: Measured, prompts: list[str], step: int) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """Batch-wide: (w_inter [B], W_intra [B, 1, F, h, w] or None, logs); one balancer entry per call."""
        s = self.s
        b = len(prompts)
        scores = {a: m.scores[:, i] for i, a in enumerate(AXES)}
        valid = torch.isfinite(m.scores).all(dim=1)
        if not valid.all():
            log.warning("reward is NaN/inf for %d of %d rollouts at step %d; they are not reweighted",
                        int((~valid).sum()), b, step)
        logs = {f"reward/{a}": float(scores[a][valid].mean()) if valid.any() else math.nan for a in AXES}

        w_inter = torch.ones(b)
        if s.inter:
            self.balancer.update({a: scores[a][valid] for a in s.inter_axes})
            lambdas = self.balancer.lambdas()
            r = combine_axes(scores, lambdas) - self.balancer.global_penalty()
            r = torch.where(valid, r, torch.full_like(r, math.nan))
            w_inter = (inter_weights_by_prompt(r, prompts, s.beta) if s.inter_scope == "prompt" else
                       inter_weights(r, s.beta, s.weight_mode, s.reward_clip, s.max_exponent))
            logs.update({f"balance/lambda_{a}": v for a, v in lambdas.items()})
            logs["balance/global_penalty"] = self.balancer.global_penalty()
            logs.update({"inter/w_mean": float(w_inter.mean()), "inter/w_max": float(w_inter.max()),
                         "inter/w_min": float(w_inter.min())})

        w_intra = None
        if s.intra:
            w_intra = m.w_intra.unsqueeze(1)
            logs.update({f"intra/pi_{a}": float(m.pi[:, i].mean()) for i, a in enumerate(AXES)})
            logs["intra/w_max"] = float(w_intra.max())
        if s.shuffle_weights:  # the placebo control (method.md §3.5): same weights, dealt to the wrong rollouts
            perm = torch.randperm(b, generator=torch.Generator().manual_seed(step))
            if s.shuffle_which in ("both", "inter"):
                w_inter = w_inter[perm]
            if s.shuffle_which in ("both", "intra") and w_intra is not None:
                w_intra = w_intra[perm]
        return w_inter, w_intra, logs

    def __call__(self, latents: torch.Tensor, prompts: list[str], step: int):
        b, _, f, h, w = latents.shape
        w_inter, w_intra, logs = self.combine(self.measure(latents, prompts), prompts, step)
        if w_intra is None:
            w_intra = torch.ones(b, 1, f, h, w)
        return w_inter.to(latents.device), w_intra.to(latents.device), logs
