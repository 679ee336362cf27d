"""Intra-Perplexity (docs/method.md §3.3–3.4): the reward's gradient saliency, fused over the axes, put on
the latent grid and factorised into frame and region weights W_intra."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .settings import EPS


def fusion_weights(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """π_i = softmax(−r_i / T) over axes: the weaker axis gets more saliency weight. scores [B, A]."""
    return torch.softmax(-scores / temperature, dim=-1)


def pixel_saliency(grad: torch.Tensor) -> torch.Tensor:
    """‖∂R/∂v‖ over colour channels: [B, T, 3, H, W] -> [B, T, H, W]."""
    return grad.norm(dim=2)


def to_latent_grid(saliency: torch.Tensor, grid: tuple[int, int, int], latent_of_frame: torch.Tensor | None = None,
                   seen: torch.Tensor | None = None) -> torch.Tensor:
    """A pixel saliency map [B, T, H, W] on the latent grid (F, h, w) of the codec (method.md §3.3).

    Without a frame map, T is pooled evenly onto F (one to one for the toy codec). With `latent_of_frame`
    [T] (the latent frame each pixel frame decodes from) and `seen` (the pixel frames the reward read;
    None: all), latent frame k averages the seen frames it decodes to, and a latent frame that decodes
    to no seen frame is interpolated linearly from the nearest covered ones (held flat past the ends),
    never left at zero. Space is always pooled evenly.
    """
    t, f = saliency.shape[1], grid[0]
    seen = torch.arange(t) if seen is None else seen.cpu()
    one_to_one = latent_of_frame is not None and torch.equal(latent_of_frame.cpu(), torch.arange(t))
    if latent_of_frame is None or (one_to_one and t == f and torch.equal(seen, torch.arange(t))):
        return F.adaptive_avg_pool3d(saliency.unsqueeze(1), grid).squeeze(1)
    pooled = F.adaptive_avg_pool3d(saliency[:, seen.to(saliency.device)].unsqueeze(1),
                                   (len(seen), *grid[1:])).squeeze(1)  # [B, n, h, w]: seen frames only
    member = torch.zeros(f, len(seen), dtype=pooled.dtype)
    member[latent_of_frame.cpu()[seen], torch.arange(len(seen))] = 1.0  # latent k <- seen frames decoding from k
    counts = member.sum(1)
    covered = counts > 0
    means = torch.einsum("kn,bnhw->bkhw", member[covered].to(pooled.device), pooled)
    means = means / counts[covered].to(pooled).view(1, -1, 1, 1)  # [B, covered latent frames, h, w]
    left, right, u = (v.to(pooled.device) for v in interpolation(covered))
    a, b = means[:, left], means[:, right]
    return a + u.to(pooled).view(1, -1, 1, 1) * (b - a)  # exactly a where b == a: a flat map stays flat


def interpolation(covered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of F frames, (left, right, u): it is value[left] + u·(value[right] − value[left]) of the K
    covered frames' values, linear between covered neighbours; a frame past either end copies the end one."""
    at = torch.nonzero(covered).flatten().tolist()
    if not at:
        raise ValueError("no latent frame decodes to a frame the reward read")
    rows = []
    for f in range(len(covered)):
        j = next((j for j, k in enumerate(at) if k >= f), len(at) - 1)  # first covered frame at or after f
        if at[j] == f or f < at[0] or f > at[-1]:
            rows.append((j, j, 0.0))
        else:
            rows.append((j - 1, j, (f - at[j - 1]) / (at[j] - at[j - 1])))
    left, right, u = zip(*rows, strict=True)
    return torch.tensor(left), torch.tensor(right), torch.tensor(u)


def minmax(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """(x − min)/(max − min) over `dims`; a constant map gives zeros instead of dividing by zero."""
    lo = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - lo
    return torch.where(span > EPS, (x - lo) / span.clamp_min(EPS), torch.zeros_like(x))


def temporal_weights(saliency: torch.Tensor, strength: float = 1.0, floor: float = 0.2) -> torch.Tensor:
    """w_t = max((1 − s) + s·p̂_f, floor) / mean, p_f = mean_{h,w} S (method.md §3.4). [B,F,h,w] -> [B,F]."""
    profile = minmax(saliency.mean(dim=(2, 3)), dims=(1,))
    w = ((1 - strength) + strength * profile).clamp_min(floor)
    return w / w.mean(dim=1, keepdim=True)


def spatial_weights(saliency: torch.Tensor, floor: float = 0.15) -> torch.Tensor:
    """Per frame: min-max normalise, floor, mean 1 (method.md §3.4). [B, F, h, w] -> same."""
    w = minmax(saliency, dims=(2, 3)).clamp_min(floor)
    return w / w.mean(dim=(2, 3), keepdim=True)


def intra_weights(saliency: torch.Tensor, strength: float = 1.0, temporal_floor: float = 0.2,
                  spatial_floor: float = 0.15) -> torch.Tensor:
    """W_intra = w_t[f]·w_s[f,h,w] normalised to global mean 1 per rollout (method.md §3.4)."""
    w_t = temporal_weights(saliency, strength, temporal_floor)[:, :, None, None]
    w = w_t * spatial_weights(saliency, spatial_floor)
    return (w / w.mean(dim=(1, 2, 3), keepdim=True)).detach()
