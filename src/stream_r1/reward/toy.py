"""The toy world's reward model: a small learned video judge with VQ / MQ / TA heads (DESIGN.md §4).

Like VideoReward at paper scale it is learned, imperfect and differentiable: a (3-D conv) video trunk over
the frames and their first and second temporal differences, pooled into per-clip statistics plus a coarse
position map, and three scalar heads; the TA head is a dot product of a video embedding with a linear
embedding of the prompt's (centred) bag of ToyTextEncoder word vectors, so it scores attributes additively and
generalises to held-out attribute combinations. Raw head outputs are z-scored with statistics stored as
buffers. It is trained Bradley-Terry style on clean-vs-degraded pairs by `stream_r1.reward.train` and knows
nothing of ToyBench.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.weights import CheckpointError, load_fitting, load_state_dict, resolve_checkpoint, save_state_dict
from ..models.text import ToyTextEncoder
from ..toyworld.prompts import SPEEDS, PromptAttributes, all_combos
from .base import AXES, validate_pixels, zscore

TOY_REWARD_FORMAT = "stream-r1-toy-reward"
IN_CHANNELS = 9  # RGB, its first and its second temporal difference


@dataclass
class ToyRewardConfig:
    """Architecture of the toy reward model (stored as JSON in its checkpoint)."""

    channels: tuple[int, ...] = (24, 32, 48)  # conv widths; every block after the first halves H and W
    hidden: int = 64  # width of each head
    text_dim: int = 32  # ToyTextEncoder word-vector size
    text_seed: int = 0  # ToyTextEncoder table seed (must match the text encoder used everywhere else)
    map_channels: int = 8  # channels of the coarse position map the heads see
    map_size: tuple[int, int, int] = (3, 4, 4)  # (T, H, W) of that map
    groups: int = 4  # GroupNorm groups (per-sample normalisation: samples never see each other)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ToyRewardConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown toy reward model settings {unknown}; known: {sorted(known)}")
        d = dict(d)
        for key in ("channels", "map_size"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def temporal_inputs(pixels: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] in [0, 1] -> [B, 9, T, H, W]: centred frames, first and second time differences."""
    x = pixels.permute(0, 2, 1, 3, 4) * 2 - 1
    d1 = x[:, :, 1:] - x[:, :, :-1]
    d2 = d1[:, :, 1:] - d1[:, :, :-1]
    d1 = F.pad(d1, (0, 0, 0, 0, 1, 0))
    d2 = F.pad(d2, (0, 0, 0, 0, 1, 1))
    return torch.cat([x, d1, d2], dim=1)


def clip_statistics(h: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, 6C]: spatial mean and max per frame, each summarised by its time mean/max/std."""
    per_frame = torch.cat([h.mean(dim=(3, 4)), h.amax(dim=(3, 4))], dim=1)  # [B, 2C, T]
    return torch.cat([per_frame.mean(2), per_frame.amax(2), per_frame.std(2, unbiased=False)], dim=1)


def all_prompts() -> list[str]:
    """Every prompt of the toy grammar (both splits, every speed): the text side's reference set."""
    return [PromptAttributes(c, s, d, b, sp).text for (c, s, d, b) in all_combos() for sp in SPEEDS]


def mlp(dim_in: int, hidden: int) -> nn.Sequential:
    """One scalar head."""
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.SiLU(), nn.Linear(hidden, 1))


class ToyRewardModel(nn.Module):
    """Learned toy judge: ``(pixels [B, T, 3, H, W] in [0, 1], prompts) -> {vq, mq, ta: z-scored [B]}``."""

    def __init__(self, cfg: ToyRewardConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ToyRewardConfig()
        blocks, c_in = [], IN_CHANNELS
        for i, c in enumerate(cfg.channels):
            stride = (1, 1, 1) if i == 0 else (1, 2, 2)
            blocks.append(nn.Sequential(nn.Conv3d(c_in, c, 3, stride, 1), nn.GroupNorm(cfg.groups, c), nn.SiLU()))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.map_proj = nn.Conv3d(c_in, cfg.map_channels, 1)
        pooled = 6 * sum(cfg.channels)
        self.feature_dim = pooled + cfg.map_channels * cfg.map_size[0] * cfg.map_size[1] * cfg.map_size[2]
        self.vq_head = mlp(self.feature_dim, cfg.hidden)
        self.mq_head = mlp(self.feature_dim, cfg.hidden)
        self.ta_video = nn.Sequential(
            nn.Linear(self.feature_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)
        )
        self.ta_text = nn.Linear(cfg.text_dim, cfg.hidden, bias=False)
        self.text = ToyTextEncoder(cfg.text_dim, seed=cfg.text_seed)  # frozen and weight-free
        self.register_buffer("text_centre", self.text(all_prompts()).sum(dim=1).mean(dim=0), persistent=False)
        self.register_buffer("z_mean", torch.zeros(len(AXES)))
        self.register_buffer("z_std", torch.ones(len(AXES)))

    def video_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-video features [B, feature_dim]; every sample is processed independently."""
        h = temporal_inputs(pixels)
        pooled = []
        for block in self.blocks:
            h = block(h)
            pooled.append(clip_statistics(h))
        position = F.adaptive_avg_pool3d(self.map_proj(h), self.cfg.map_size).flatten(1)
        return torch.cat([*pooled, position], dim=1)

    def text_features(self, prompts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """Bag of word vectors minus its mean over the grammar's prompts, [B, text_dim]; "" gives zeros.

        Centring makes the TA score relative: averaged over all prompts it is 0 for every video, so the head
        cannot hide a prompt-independent "looks familiar" term in it (that term ranked held-out combinations low).
        """
        bag = self.text(prompts).sum(dim=1).to(self.text_centre)
        empty = torch.tensor([p == "" for p in prompts], device=bag.device).unsqueeze(1)
        return torch.where(empty, torch.zeros_like(bag), bag - self.text_centre).to(device)

    def ta_score(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Raw text-alignment score [B]: video embedding · prompt embedding, additive over the prompt's words."""
        return (self.ta_video(feats) * self.ta_text(text)).sum(dim=1) / self.cfg.hidden**0.5

    def heads(self, feats: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw scores of all three heads from precomputed features."""
        return {
            "vq": self.vq_head(feats).squeeze(1),
            "mq": self.mq_head(feats).squeeze(1),
            "ta": self.ta_score(feats, text),
        }

    def raw_scores(self, pixels: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Un-normalised head outputs {axis: [B]} (what Bradley-Terry training sees)."""
        return self.heads(self.video_features(pixels), self.text_features(prompts, pixels.device))

    def forward(self, pixels: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Z-scored scores {axis: [B]}, differentiable w.r.t. pixels."""
        validate_pixels(pixels, prompts)
        return zscore(self.raw_scores(pixels, prompts), self.z_mean, self.z_std)

    def set_statistics(self, mean: dict[str, float], std: dict[str, float]) -> None:
        """Store the z-score statistics (per-axis mean/std of raw scores on reference videos)."""
        self.z_mean.copy_(torch.tensor([float(mean[a]) for a in AXES]))
        self.z_std.copy_(torch.tensor([float(std[a]) for a in AXES]))


def num_parameters(model: nn.Module) -> int:
    """Count trainable-shaped parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def save_toy_reward(path: str | os.PathLike, model: ToyRewardModel, extra: dict | None = None) -> None:
    """Atomically save weights, z-score buffers and config as one safetensors file."""
    meta = {"format": TOY_REWARD_FORMAT, "config": json.dumps(model.cfg.to_dict())}
    if extra:
        meta["extra"] = json.dumps(extra)
    save_state_dict(Path(path), model.state_dict(), meta)


def load_toy_reward(name_or_path: str | os.PathLike = "toy-reward") -> ToyRewardModel:
    """Load a toy reward model (short name or path), frozen and in eval mode; gradients still reach the pixels."""
    path = resolve_checkpoint(name_or_path)
    tensors, meta = load_state_dict(path)
    if meta.get("format") != TOY_REWARD_FORMAT:
        raise CheckpointError(
            f"{path} is not a stream-r1 toy reward checkpoint (format={meta.get('format')!r}); "
            "pass a file written by save_toy_reward / `stream-r1 train-reward`"
        )
    try:
        model = ToyRewardModel(ToyRewardConfig.from_dict(json.loads(meta["config"])))
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} carries an unusable toy reward config ({err}); retrain or re-save it") from err
    load_fitting(model, tensors, path, "toy reward")
    return model.requires_grad_(False).eval()
