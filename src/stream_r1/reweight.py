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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import from_section

log = logging.getLogger(__name__)

AXES = ("vq", "mq", "ta")
EPS = 1e-8


@dataclass
class ReweightSettings:
    """The `reweight` section of a config; each component can be switched off."""

    inter: bool = True
    intra: bool = True
    balance: str = "per_axis"  # "none" | "global_penalty" (public code) | "per_axis"
    inter_axes: list[str] = field(default_factory=lambda: list(AXES))  # ["mq"] = Reward Forcing style
    beta: float = 2.0
    weight_mode: str = "self_normalized"  # "faithful" | "clamp" | "self_normalized"
    inter_scope: str = "batch"  # "batch" (as specified) | "prompt": self-normalise among rollouts of one prompt
    shuffle_weights: bool = False  # control: each rollout gets another rollout's w_inter and W_intra (no information)
    shuffle_which: str = "both"  # with shuffle_weights: "both" | "inter" | "intra" (which weight is dealt wrongly)
    reward_clip: float = 3.0  # |r| bound of the "clamp" mode
    max_exponent: float = 30.0  # the only guard of the "faithful" mode: exp never overflows float32
    fusion_temperature: float = 1.0
    axis_norm: str = "none"  # "none" (as specified) | "mean": each axis' saliency scaled to mean 1 first
    temporal_strength: float = 1.0
    temporal_floor: float = 0.2
    spatial_floor: float = 0.15
    saliency_from: str = "zscores"  # "zscores": ∂r/∂v of the z-scored score | "logits": of the raw head output
    window: int = 50  # optimizer steps the balancer remembers (one entry each)
    penalty_lambda: float = 0.5
    balance_rate: float = 0.3  # per-axis balancer: log-weight an axis loses per standard error of improvement
    balance_threshold: float = 3.0  # per-axis balancer: improvement within this many standard errors is noise

    @classmethod
    def from_dict(cls, d: dict) -> ReweightSettings:
        s = from_section(cls, d, "reweight")
        choices = {"balance": ("none", "global_penalty", "per_axis"),
                   "weight_mode": ("faithful", "clamp", "self_normalized"), "axis_norm": ("none", "mean"),
                   "inter_scope": ("batch", "prompt"), "shuffle_which": ("both", "inter", "intra"),
                   "saliency_from": ("zscores", "logits")}
        for key, allowed in choices.items():
            if getattr(s, key) not in allowed:
                raise ValueError(f"reweight.{key}={getattr(s, key)!r}; choose one of {allowed}")
        if s.inter_scope == "prompt" and s.weight_mode != "self_normalized":
            raise ValueError("reweight.inter_scope=prompt compares rollouts of one prompt, which only the "
                             "self_normalized weight_mode does; set weight_mode: self_normalized")
        bad = [a for a in s.inter_axes if a not in AXES]
        if bad or not s.inter_axes:
            raise ValueError(f"reweight.inter_axes={s.inter_axes}; use a non-empty subset of {AXES}")
        return s


# ---------------------------------------------------------------------------------------------
# §3.2 Inter-Reliability


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


# ---------------------------------------------------------------------------------------------
# §3.3 Intra-Perplexity saliency


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


# ---------------------------------------------------------------------------------------------
# §3.4 Temporal and spatial factorisation


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


# ---------------------------------------------------------------------------------------------
# §3.6 Adaptive balancing


class AxisBalancer:
    """Balances the axes from a window of per-optimizer-step mean scores (method.md §3.6).

    One entry per optimizer step: the step's mean of each axis over all its rollouts (every micro-batch,
    every rank), so the window measures the student's progress, not prompt-to-prompt noise.
    - "global_penalty" (the public code): r ← r − λ·std_a(improvement_a); rescales every weight of
      the step alike and does not move weight between axes.
    - "per_axis": λ_a ∝ exp(−rate·shrink(z_a)), Σ λ_a = 1, z_a = improvement_a / its standard error and
      shrink(z) = sign(z)·max(|z| − threshold, 0): an axis loses weight only as far as its improvement
      stands out of the window's own noise. improvement_a = mean of the newer half − mean of the older half.
    """

    def __init__(self, axes: list[str], mode: str, window: int = 50, penalty: float = 0.5, rate: float = 0.3,
                 threshold: float = 3.0):
        self.axes, self.mode, self.penalty, self.rate, self.threshold = list(axes), mode, penalty, rate, threshold
        self.history: deque[torch.Tensor] = deque(maxlen=window)

    def improvement(self) -> torch.Tensor:
        """Per-axis improvement over the window (zeros until it holds 4 steps)."""
        if len(self.history) < 4:
            return torch.zeros(len(self.axes))
        h = torch.stack(list(self.history))
        half = len(h) // 2
        return h[half:].mean(0) - h[:half].mean(0)

    def improvement_z(self) -> torch.Tensor:
        """Per-axis improvement in standard errors (Welch-free two-sample t with the pooled within-half
        variance); zeros until the window holds 8 steps, so the variance has at least 6 degrees of freedom."""
        if len(self.history) < 8:
            return torch.zeros(len(self.axes))
        h = torch.stack(list(self.history)).double()
        old, new = h[: len(h) // 2], h[len(h) // 2 :]
        spread = ((old - old.mean(0)) ** 2).sum(0) + ((new - new.mean(0)) ** 2).sum(0)
        se = (spread / (len(h) - 2) * (1 / len(old) + 1 / len(new))).sqrt()
        return ((new.mean(0) - old.mean(0)) / se.clamp_min(1e-12)).float()

    def update(self, scores: dict[str, torch.Tensor]) -> None:
        """Append one optimizer step's entry: each axis' mean over the step's (valid) rollouts."""
        means = torch.stack([scores[a].detach().float().nanmean() for a in self.axes]).cpu()
        if torch.isfinite(means).all():
            self.append(means)

    def append(self, means: torch.Tensor) -> None:
        self.history.append(means)

    def window(self) -> list[torch.Tensor]:
        """The per-step axis means the balancer holds, oldest first."""
        return list(self.history)

    def state_dict(self) -> dict:
        """The window of per-step axis means, JSON-ready, so a resumed run balances exactly as before."""
        return {"axes": self.axes, "history": [h.tolist() for h in self.window()]}

    def load_state_dict(self, state: dict) -> None:
        if state["axes"] != self.axes:
            raise ValueError(f"balancer state is for axes {state['axes']}, this run balances {self.axes}")
        self.history.clear()
        self.history.extend(torch.tensor(h, dtype=torch.float32) for h in state["history"])

    def lambdas(self) -> dict[str, float]:
        k = len(self.axes)
        if self.mode != "per_axis":
            return {a: 1.0 / k for a in self.axes}
        z = self.improvement_z()
        shrunk = z.sign() * (z.abs() - self.threshold).clamp_min(0)
        lam = torch.softmax(-self.rate * shrunk, dim=0)
        return {a: float(v) for a, v in zip(self.axes, lam, strict=True)}

    def global_penalty(self) -> float:
        if self.mode != "global_penalty":
            return 0.0
        imp = self.improvement()
        return float(self.penalty * imp.std()) if len(imp) > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# Putting it together


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
