"""Inter-Reliability (docs/method.md §3.2): one weight per rollout from its reward, w_i = exp(β·r_i)."""

from __future__ import annotations

import torch


def combine_axes(scores: dict[str, torch.Tensor], lambdas: dict[str, float]) -> torch.Tensor:
    """r_i = Σ_a λ_a r_i^a over the axes that have a λ (method.md §3.2)."""
    return sum(lambdas[a] * scores[a] for a in lambdas)


def inter_weights(r: torch.Tensor, beta: float, mode: str, reward_clip: float = 3.0,
                  max_exponent: float = 30.0) -> torch.Tensor:
    """w_i = exp(β·r_i) (method.md §3.2), overflow-safe; a NaN reward gives weight 1 (no reweighting).

    - "faithful": exp(β·r) with the exponent capped at ±max_exponent, nothing else;
    - "clamp": r clamped to ±reward_clip first;
    - "self_normalized": w = B·softmax(β·r) over the valid rollouts of the batch (mean 1).
    """
    r = r.detach().float()
    valid = torch.isfinite(r)
    w = torch.ones_like(r)
    if not valid.any():
        return w
    rv = r[valid]
    if mode == "faithful":
        w[valid] = torch.exp((beta * rv).clamp(-max_exponent, max_exponent))
    elif mode == "clamp":
        w[valid] = torch.exp(beta * rv.clamp(-reward_clip, reward_clip))
    elif mode == "self_normalized":
        w[valid] = torch.softmax(beta * rv.clamp(-1e6, 1e6), dim=0) * valid.sum()
    else:
        raise ValueError(f"unknown weight mode {mode!r}")
    return w


def inter_weights_by_prompt(r: torch.Tensor, prompts: list[str], beta: float) -> torch.Tensor:
    """Self-normalised w = n·softmax(β·r) within each group of rollouts that share a prompt (method.md §3.2 note).

    A reward also differs between prompts (a class the student finds hard scores low everywhere); normalising
    across the batch then starves that class of DMD gradient. Within a prompt only the rollouts' quality counts.
    A prompt rolled out once gets weight 1.
    """
    w = torch.ones_like(r.detach().float())
    for text in dict.fromkeys(prompts):
        idx = torch.tensor([i for i, p in enumerate(prompts) if p == text])
        w[idx] = inter_weights(r[idx], beta, "self_normalized")
    return w
