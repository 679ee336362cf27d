"""The reward-model protocol: pixels [B, T, 3, H, W] in [0, 1] + prompts -> z-scored scores per axis.

Every reward the trainer sees (the toy judge, VideoReward at paper scale, a user's callable) speaks this one
protocol (DESIGN.md §3 step 1): it scores every sample of the batch (the public code scored only sample 0),
its scores are z-scored with the model's own statistics, and they are differentiable w.r.t. the pixels so
the saliency |dR/dv| exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

AXES: tuple[str, ...] = ("vq", "mq", "ta")
RANGE_ATOL = 1e-3  # decoded pixels may overshoot [0, 1] by rounding; more than this is a caller's bug

RawScoreFn = Callable[[torch.Tensor, list[str]], Mapping[str, torch.Tensor]]


@runtime_checkable
class RewardModel(Protocol):
    """Scores videos per axis: ``(pixels [B, T, 3, H, W] in [0, 1], prompts) -> {axis: z-scored [B]}``."""

    def __call__(self, pixels: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]: ...


def validate_pixels(pixels: torch.Tensor, prompts: list[str] | None = None, atol: float = RANGE_ATOL) -> None:
    """Raise a one-line ValueError naming the problem and its fix for a batch a reward model cannot score."""
    if not isinstance(pixels, torch.Tensor):
        raise ValueError(f"pixels must be a torch.Tensor [B, T, 3, H, W], got {type(pixels).__name__}")
    shape = tuple(pixels.shape)
    if pixels.dim() == 4 and shape[1] == 3:
        raise ValueError(f"pixels must be a batch [B, T, 3, H, W], got one video {shape}; use pixels.unsqueeze(0)")
    if pixels.dim() != 5:
        raise ValueError(f"pixels must be [B, T, 3, H, W] (rank 5), got rank {pixels.dim()} shape {shape}")
    if shape[2] != 3:
        hint = "; it looks like [B, 3, T, H, W]: use pixels.permute(0, 2, 1, 3, 4)" if shape[1] == 3 else ""
        raise ValueError(f"pixels must have 3 RGB channels at dim 2 of [B, T, 3, H, W], got shape {shape}{hint}")
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be floating point in [0, 1], got {pixels.dtype}; use pixels.float() / 255")
    if prompts is not None and len(prompts) != shape[0]:
        raise ValueError(f"got {shape[0]} videos but {len(prompts)} prompts; pass exactly one prompt per video")
    if pixels.numel() == 0:
        raise ValueError(f"pixels is empty (shape {shape}); pass at least one frame of one video")
    lo, hi = float(pixels.detach().min()), float(pixels.detach().max())
    if not (torch.isfinite(torch.tensor([lo, hi])).all()):
        raise ValueError("pixels contain NaN or inf; check the decoder output before scoring it")
    if lo < -atol and lo >= -1 - atol and hi <= 1 + atol:
        raise ValueError(f"pixels span [{lo:.3f}, {hi:.3f}]: they look like [-1, 1] but the reward expects [0, 1]; "
                         "pass (pixels + 1) / 2")
    if lo < -atol or hi > 1 + atol:
        raise ValueError(f"pixels span [{lo:.3f}, {hi:.3f}], outside [0, 1]; rescale them (uint8: / 255) "
                         "or clamp(0, 1)")


def check_scores(scores: Mapping[str, torch.Tensor], batch: int) -> None:
    """Raise a one-line ValueError unless `scores` holds one [batch] tensor per axis."""
    missing = [a for a in AXES if a not in scores]
    if missing:
        raise ValueError(f"reward scores lack axes {missing}; return a dict with keys {AXES}")
    bad = {a: tuple(scores[a].shape) for a in AXES if tuple(scores[a].shape) != (batch,)}
    if bad:
        raise ValueError(f"reward scores must be [B={batch}] per axis, got shapes {bad}; score every sample")


def zscore(raw: Mapping[str, torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
    """(raw_a - mean_a) / std_a for every axis; mean and std are [len(AXES)] in AXES order."""
    return {a: (raw[a] - mean[i]) / std[i] for i, a in enumerate(AXES)}


class ZScoredReward(nn.Module):
    """Wraps any callable returning raw per-axis scores [B] into a RewardModel with given z-score statistics."""

    def __init__(
        self,
        raw_fn: RawScoreFn,
        mean: Mapping[str, float],
        std: Mapping[str, float],
        validate: bool = True,
    ) -> None:
        super().__init__()
        missing = [a for a in AXES if a not in mean or a not in std]
        if missing:
            raise ValueError(f"z-score statistics lack axes {missing}; give mean and std for each of {AXES}")
        bad = [a for a in AXES if not float(std[a]) > 0]
        if bad:
            raise ValueError(f"z-score std must be > 0, got {({a: std[a] for a in bad})}; measure it on real videos")
        self.raw_fn = raw_fn  # registered as a submodule when it is an nn.Module, so .to(device) moves it
        self.validate = validate
        self.register_buffer("z_mean", torch.tensor([float(mean[a]) for a in AXES]))
        self.register_buffer("z_std", torch.tensor([float(std[a]) for a in AXES]))

    def sampled_frames(self, frames: int) -> torch.Tensor:
        """The pixel frames the wrapped model reads from a `frames`-frame clip (all, unless it says otherwise)."""
        inner = getattr(self.raw_fn, "sampled_frames", None)
        return inner(frames) if inner is not None else torch.arange(frames)

    def forward(self, pixels: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        if self.validate:
            validate_pixels(pixels, prompts)
        raw = self.raw_fn(pixels, prompts)
        check_scores(raw, pixels.shape[0])
        ref = raw[AXES[0]]
        return zscore(raw, self.z_mean.to(ref), self.z_std.to(ref))


def stack_videos(videos: list[np.ndarray]) -> torch.Tensor:
    """uint8 [T, H, W, 3] videos -> one uint8 tensor [B, T, 3, H, W] (a view; `.contiguous()` to store it)."""
    return torch.from_numpy(np.stack(videos)).permute(0, 1, 4, 2, 3)


def videos_to_pixels(videos: list[np.ndarray]) -> torch.Tensor:
    """uint8 [T, H, W, 3] videos -> float [B, T, 3, H, W] in [0, 1] (what the reward model reads)."""
    return stack_videos(videos).float() / 255


@torch.no_grad()
def reward_scores(reward, videos: list[np.ndarray], prompts: list[str], batch_size: int) -> dict[str, list[float]]:
    """The reward model's z-scored VQ / MQ / TA of each video (no gradient)."""
    out: dict[str, list[float]] = {a: [] for a in AXES}
    for b in range(0, len(videos), batch_size):
        scores = reward(videos_to_pixels(videos[b : b + batch_size]), prompts[b : b + batch_size])
        for a in out:
            out[a] += scores[a].float().tolist()
    return out
