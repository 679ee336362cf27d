"""How well a reward model ranks one generator's videos: Spearman ρ of each head against its ToyBench axis.

Stream-R1's weights are only as good as the reward's ranking of the *student's* rollouts; pair accuracy on
degraded ground truth does not tell that. ToyBench is only read here, to judge a reward model; it never
trains one. Use the training split, so that choosing a reward on this never looks at held-out prompts.
"""

from __future__ import annotations

from ..evaluate import eval_prompts, generate_uint8
from ..pipeline import VideoPipeline
from ..stats import spearman
from ..toyworld.bench import score_video
from .base import AXES, reward_scores
from .toy import load_toy_reward


def reward_reliability(checkpoint: str, rewards: list[str], split: str = "train", subset: int | None = 48,
                       per_prompt: int = 2, seed: int = 0, frames: int = 12) -> dict:
    """{reward: {axis: ρ}} over `checkpoint`'s videos of `split`, plus the videos' ToyBench means."""
    prompts = eval_prompts(split, per_prompt, subset)
    videos, _ = generate_uint8(VideoPipeline.from_checkpoint(checkpoint), prompts, seed, frames)
    bench = [score_video(v, p) for v, p in zip(videos, prompts, strict=True)]
    out: dict = {"checkpoint": checkpoint, "split": split, "videos": len(prompts),
                 "toybench": {a: sum(getattr(b, a) for b in bench) / len(bench) for a in AXES}, "spearman": {}}
    for name in rewards:
        scores = reward_scores(load_toy_reward(name), videos, prompts, batch_size=32)
        out["spearman"][name] = {a: spearman(scores[a], [getattr(b, a) for b in bench]) for a in AXES}
    return out
