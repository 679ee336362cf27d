"""Preference pairs between generated videos, labelled by the annotator, for training the toy reward (method.md §4.2).

VideoReward learned from people comparing videos that real generators made. Here a pool of toy generators
(teacher at several sampler step counts, ODE-init and DMD students of both sizes and several training stages)
each renders the same training-split prompts; pairs of two generators' videos of one prompt are labelled per
axis by `annotator.label_pairs` (with its stated error rate), on a fixed budget of pairs. The pool and labels
are built once per run directory and kept there, so a resumed run trains on the same pairs. ToyBench is not used.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..common.config import from_section
from ..common.weights import load_state_dict, save_state_dict
from ..toyworld.prompts import split_prompts
from .annotator import label_pairs
from .base import AXES, stack_videos

log = logging.getLogger(__name__)

POOL_FORMAT = "stream-r1/preference-pool/v1"


@dataclass
class PreferenceSettings:
    """The `train.preferences` section of a reward config."""

    generators: list[dict] = field(default_factory=list)  # each {checkpoint: NAME_OR_PATH, steps: N (optional)}
    prompts: int = 160  # training-split prompts, each rendered once by every generator
    seed: int = 31
    frames: int = 12
    pairs: int = 3000  # the labelling budget
    flip: float = 0.15  # fraction of labels the annotator gets wrong (seeded)
    eval_fraction: float = 0.1  # pairs kept out of training to measure agreement with the annotator
    per_step: int = 24  # labelled pairs per training step
    weight: float = 1.0  # of the preference loss beside the ground-truth pairs

    @classmethod
    def from_dict(cls, d: dict) -> PreferenceSettings:
        s = from_section(cls, d, "train.preferences")
        if len(s.generators) < 2:
            raise ValueError("train.preferences.generators: give at least two generators to compare")
        for g in s.generators:
            if not isinstance(g, dict) or "checkpoint" not in g:
                raise ValueError(f"train.preferences.generators entry {g!r}: write {{checkpoint: NAME, steps: N}}")
        if not 0 <= s.flip < 0.5:
            raise ValueError(f"train.preferences.flip={s.flip}: give a fraction in [0, 0.5)")
        return s


@dataclass
class PreferenceSet:
    """The pool's videos and the labelled pairs: pair k compares video first[k] with second[k] of prompt[k]."""

    videos: torch.Tensor  # uint8 [G * P, T, 3, H, W], generator-major
    prompts: list[str]  # [P]
    first: torch.Tensor  # [K] video indices
    second: torch.Tensor  # [K]
    labels: dict[str, torch.Tensor]  # axis -> [K]: 1 first better, 0 second better, -1 tie (no label)
    train: torch.Tensor  # [K] bool: pair used for training (the rest measure agreement)

    def prompt_of(self, video: torch.Tensor) -> list[str]:
        return [self.prompts[int(i) % len(self.prompts)] for i in video]


def render_pool(s: PreferenceSettings) -> tuple[torch.Tensor, list[str]]:
    """Every generator's videos of the same `s.prompts` training prompts (video i seeded with seed + i)."""
    from ..generation.pipeline import VideoPipeline, generate_uint8

    gen = torch.Generator().manual_seed(s.seed)
    train = split_prompts("train")
    prompts = [train[i].text for i in torch.randint(len(train), (s.prompts,), generator=gen).tolist()]
    banks = []
    for g in s.generators:
        log.info("pool: %s (steps %s), %d videos", g["checkpoint"], g.get("steps", "own"), len(prompts))
        videos, _ = generate_uint8(VideoPipeline.from_checkpoint(g["checkpoint"]), prompts, s.seed * 1000,
                                   s.frames, steps=g.get("steps"))
        banks.append(stack_videos(videos))
    return torch.cat(banks).contiguous(), prompts


def draw_pairs(s: PreferenceSettings, num_prompts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`s.pairs` pairs of video indices: one prompt, two different generators, drawn uniformly (seeded)."""
    gen = torch.Generator().manual_seed(s.seed + 1)
    g = len(s.generators)
    prompt = torch.randint(num_prompts, (s.pairs,), generator=gen)
    a = torch.randint(g, (s.pairs,), generator=gen)
    b = (a + 1 + torch.randint(g - 1, (s.pairs,), generator=gen)) % g  # any generator but a
    return a * num_prompts + prompt, b * num_prompts + prompt


def build_preferences(s: PreferenceSettings) -> PreferenceSet:
    """Render the pool, draw the pairs and have the annotator label them."""
    videos, prompts = render_pool(s)
    first, second = draw_pairs(s, len(prompts))
    as_float = lambda idx: videos[idx].float() / 255.0  # noqa: E731
    chosen = [prompts[int(i) % len(prompts)] for i in first]
    labels = label_pairs(as_float(first), as_float(second), chosen, s.flip, torch.Generator().manual_seed(s.seed + 2))
    train = torch.rand(s.pairs, generator=torch.Generator().manual_seed(s.seed + 3)) >= s.eval_fraction
    return PreferenceSet(videos, prompts, first, second, labels, train)


def load_or_build_preferences(out: Path, s: PreferenceSettings) -> PreferenceSet:
    """The run's pool and labels, built once and kept in out/preferences.safetensors (a resumed run reuses them)."""
    path = Path(out) / "preferences.safetensors"
    identity = json.dumps({k: getattr(s, k) for k in ("generators", "prompts", "seed", "frames", "pairs", "flip",
                                                      "eval_fraction")}, sort_keys=True)
    if path.exists():
        tensors, meta = load_state_dict(path)
        if meta.get("format") != POOL_FORMAT or meta.get("identity") != identity:
            raise ValueError(f"{path} holds another preference pool than train.preferences asks for; delete it "
                             "or use another --out")
        return PreferenceSet(tensors["videos"], json.loads(meta["prompts"]), tensors["first"], tensors["second"],
                             {a: tensors[f"label_{a}"] for a in AXES}, tensors["train"].bool())
    p = build_preferences(s)
    Path(out).mkdir(parents=True, exist_ok=True)
    save_state_dict(path, {"videos": p.videos, "first": p.first, "second": p.second, "train": p.train.to(torch.uint8),
                           **{f"label_{a}": v for a, v in p.labels.items()}},
                    {"format": POOL_FORMAT, "identity": identity, "prompts": json.dumps(p.prompts)})
    log.info("preference pairs: %s labelled per axis of %d", {a: int((v >= 0).sum()) for a, v in p.labels.items()},
             s.pairs)
    return p


def preference_margins(model, p: PreferenceSet, pairs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per axis, r(first) − r(second) on the pairs `pairs` (indices into p's pairs), with gradients."""
    first, second = p.first[pairs], p.second[pairs]
    videos = torch.cat([p.videos[first], p.videos[second]]).float() / 255.0
    prompts = p.prompt_of(first) * 2
    raw = model.raw_scores(videos, prompts)
    n = len(pairs)
    return {a: raw[a][:n] - raw[a][n:] for a in AXES}


def preference_loss(model, p: PreferenceSet, pairs: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Bradley-Terry loss per axis on the labelled pairs among `pairs` (ties masked), and the accuracy."""
    margins = preference_margins(model, p, pairs)
    losses, accuracy = {}, {}
    for a in AXES:
        label = p.labels[a][pairs]
        keep = label >= 0
        sign = (2 * label - 1).float()  # +1: first better
        m = sign * margins[a]
        losses[a] = (F.softplus(-m) * keep).sum() / keep.sum().clamp_min(1)
        accuracy[a] = float(((m > 0) & keep).sum() / keep.sum().clamp_min(1))
    return losses, accuracy


def draw_training_pairs(p: PreferenceSet, count: int, seed: int, step: int) -> torch.Tensor:
    """`count` training pairs of one step, a pure function of (seed, step)."""
    pool = torch.nonzero(p.train).flatten()
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return pool[torch.randint(len(pool), (count,), generator=gen)]


@torch.no_grad()
def annotator_agreement(model, p: PreferenceSet, chunk: int = 128) -> dict[str, float]:
    """Per axis, how often the reward orders the held-back pairs as the annotator labelled them."""
    pairs = torch.nonzero(~p.train).flatten()
    hits = {a: 0.0 for a in AXES}
    counts = {a: 0 for a in AXES}
    for i in range(0, len(pairs), chunk):
        part = pairs[i : i + chunk]
        margins = preference_margins(model, p, part)
        for a in AXES:
            label = p.labels[a][part]
            keep = label >= 0
            hits[a] += float((((2 * label - 1).float() * margins[a] > 0) & keep).sum())
            counts[a] += int(keep.sum())
    return {a: hits[a] / max(1, counts[a]) for a in AXES}
