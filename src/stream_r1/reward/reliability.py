"""How well a reward model ranks videos: Spearman ρ of each head against its ToyBench axis on one generator's
videos, and each head's response to ground truth moving faster or slower than its prompt's speed word.

Stream-R1's weights are only as good as the reward's ranking of the *student's* rollouts; pair accuracy on
degraded ground truth does not tell that. ToyBench is only read here, to judge a reward model; it never
trains one. Use the training split, so that choosing a reward on this never looks at held-out prompts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..common.stats import spearman
from ..generation.pipeline import VideoPipeline, generate_uint8, to_uint8
from ..toyworld.bench import score_video
from ..toyworld.prompts import eval_prompts, split_prompts
from ..toyworld.render import render_spec, sample_spec
from .base import AXES, reward_scores
from .toy import load_toy_reward


def reward_reliability(checkpoint: str, rewards: list[str], split: str = "train", subset: int | None = 48,
                       per_prompt: int = 2, seed: int = 0, frames: int = 12, device: str = "cpu") -> dict:
    """{reward: {axis: ρ}} over `checkpoint`'s videos of `split` (generated on `device`), plus ToyBench means."""
    prompts = eval_prompts(split, per_prompt, subset)
    videos, _ = generate_uint8(VideoPipeline.from_checkpoint(checkpoint, device), prompts, seed, frames)
    bench = [score_video(v, p) for v, p in zip(videos, prompts, strict=True)]
    out: dict = {"checkpoint": checkpoint, "split": split, "videos": len(prompts),
                 "toybench": {a: sum(getattr(b, a) for b in bench) / len(bench) for a in AXES}, "spearman": {}}
    for name in rewards:
        scores = reward_scores(load_toy_reward(name), videos, prompts, batch_size=32)
        out["spearman"][name] = {a: spearman(scores[a], [getattr(b, a) for b in bench]) for a in AXES}
    return out


def speed_response(rewards: list[str], scales: list[float], split: str = "train", seed: int = 0) -> dict:
    """Mean z-score of each head on ground truth moving at k x its speed word's speed, for each k in `scales`.

    A reward that knows the speed words peaks its TA head at k = 1. ToyBench's speed sub-score of the same videos is
    listed beside it, to read which k are still the right word; it judges the probe, it trains nothing.
    """
    if not scales or min(scales) <= 0:
        raise ValueError(f"--scales {scales}: give one or more speed multiples above 0, e.g. 0.8 1 1.2")
    attrs = split_prompts(split)
    gen = torch.Generator().manual_seed(seed)
    specs = [sample_spec(a, gen) for a in attrs]
    prompts = [a.text for a in attrs]
    out: dict = {"split": split, "videos": len(prompts), "scales": list(scales), "toybench_ta_speed": [],
                 "mean_z": {name: {a: [] for a in AXES} for name in rewards}}
    models = {name: load_toy_reward(name) for name in rewards}
    for k in scales:
        videos = [to_uint8(render_spec(replace(s, speed_scale=k))).numpy() for s in specs]
        out["toybench_ta_speed"].append(float(np.mean([score_video(v, p).metrics["ta_speed"]
                                                       for v, p in zip(videos, prompts, strict=True)])))
        for name, model in models.items():
            scores = reward_scores(model, videos, prompts, batch_size=64)
            for a in AXES:
                out["mean_z"][name][a].append(float(np.mean(scores[a])))
    return out
