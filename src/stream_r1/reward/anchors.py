"""Student-anchored reward pairs: degradations applied to a student's own rollouts instead of to ground truth.

The toy reward is first trained on ground truth vs degraded ground truth. A distilled student's videos sit
elsewhere (soft edges, noisy backgrounds, stalling motion), and there the reward ranks videos only weakly
(docs/results.md, reward reliability). Fine-tuning on pairs "student rollout > the same rollout degraded"
teaches each head the direction of worse *around the student's videos*. The labels come from the known
corruption, never from ToyBench. TA pairs are wrong-prompt pairs only: its re-rendering families need a
scene description, which a generated video does not have.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..common.weights import load_state_dict, save_state_dict
from ..toyworld.degrade import DEGRADATIONS
from ..toyworld.prompts import parse_prompt, split_prompts
from .base import AXES, stack_videos
from .pairs import PairBatch, _pick_weighted, corrupted_pairs, wrong_prompt

log = logging.getLogger(__name__)

ANCHOR_FORMAT = "stream-r1/reward-anchors/v1"


def rollouts(checkpoint: str, prompts: list[str], seed: int, frames: int, batch_size: int = 32) -> torch.Tensor:
    """`checkpoint`'s videos of `prompts` (video i seeded with seed + i) as uint8 [N, T, 3, H, W]."""
    from ..generation.pipeline import VideoPipeline, generate_uint8

    videos, _ = generate_uint8(VideoPipeline.from_checkpoint(checkpoint), prompts, seed, frames, batch_size)
    return stack_videos(videos).contiguous()


def build_anchor_bank(checkpoints: list[str], videos: int, seed: int, frames: int) -> tuple[torch.Tensor, list[str]]:
    """`videos` rollouts of each checkpoint on training-split prompts drawn with `seed`: uint8 [N, T, 3, H, W]."""
    gen = torch.Generator().manual_seed(seed)
    train = split_prompts("train")
    banks, prompts = [], []
    for checkpoint in checkpoints:
        texts = [train[i].text for i in torch.randint(len(train), (videos,), generator=gen).tolist()]
        banks.append(rollouts(checkpoint, texts, seed * 1_000_003 + len(prompts), frames))
        prompts += texts
    return torch.cat(banks), prompts


def load_or_build_anchor_bank(out: Path, spec: dict, frames: int
                              ) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
    """The run's anchor bank (and the preferred model's videos of the same prompts, if `preferred` is set), built
    once and kept in out/anchors.safetensors so a resumed run reuses it."""
    path = Path(out) / "anchors.safetensors"
    checkpoints = spec["checkpoints"]
    identity = {"checkpoints": checkpoints, "videos": spec["videos"], "seed": spec["seed"],
                "preferred": spec.get("preferred")}
    if path.exists():
        tensors, meta = load_state_dict(path)
        if meta.get("format") == ANCHOR_FORMAT and json.loads(meta["identity"]) == identity:
            return tensors["videos"], json.loads(meta["prompts"]), tensors.get("preferred")
        raise ValueError(f"{path} holds another anchor bank than train.anchors asks for; delete it or use "
                         "another --out")
    log.info("rolling out %d anchor videos from each of %s", spec["videos"], checkpoints)
    bank, prompts = build_anchor_bank(checkpoints, spec["videos"], spec["seed"], frames)
    tensors = {"videos": bank}
    if spec.get("preferred"):
        log.info("rolling out the same %d prompts with the preferred model %s", len(prompts), spec["preferred"])
        tensors["preferred"] = rollouts(spec["preferred"], prompts, spec["seed"] * 1_000_003 + 500_000, frames)
    save_state_dict(path, tensors, {"format": ANCHOR_FORMAT, "identity": json.dumps(identity),
                                    "prompts": json.dumps(prompts)})
    return bank, prompts, tensors.get("preferred")


def preference_pairs(bank: torch.Tensor, preferred: torch.Tensor, prompts: list[str], count: int,
                     gen: torch.Generator) -> PairBatch:
    """`count` pairs "preferred model's video > student's video" of one prompt, on every head (no graded part)."""
    idx = torch.randint(len(prompts), (count,), generator=gen).tolist()
    better = preferred[idx].float() / 255.0
    worse = bank[idx].float() / 255.0
    chosen = [prompts[i] for i in idx]
    allowed = {p.combo for p in split_prompts("train")}
    wrong = [wrong_prompt(parse_prompt(p), gen, allowed).text for p in chosen]
    batch = PairBatch(chosen, better, {a: worse for a in AXES}, {a: ["preferred"] * count for a in AXES}, wrong)
    batch.stronger = {a: worse for a in AXES}  # no graded pairs: gap 0 masks them
    batch.gaps = {a: torch.zeros(count) for a in AXES}
    return batch


def anchor_pairs(bank: torch.Tensor, prompts: list[str], count: int, gen: torch.Generator,
                 strength: tuple[float, float], graded: bool = False,
                 family_weights: dict[str, float] | None = None) -> PairBatch:
    """`count` anchors from the bank, each with a VQ and an MQ corruption and a wrong prompt (TA pairs are masked)."""
    idx = torch.randint(len(prompts), (count,), generator=gen).tolist()
    clean = list(bank[idx].float() / 255.0)
    attrs = [parse_prompt(prompts[i]) for i in idx]

    def pick_family(i: int, axis: str) -> str | None:  # TA: no scene to re-render, a masked no-op pair
        return None if axis == "ta" else _pick_weighted(list(DEGRADATIONS[axis]), family_weights or {}, gen)

    allowed = {p.combo for p in split_prompts("train")}
    return corrupted_pairs(attrs, [None] * count, clean, pick_family, gen, strength, allowed, graded)


def concat_pairs(first: PairBatch, second: PairBatch) -> PairBatch:
    """One batch holding both batches' pairs (graded parts only if both have them)."""
    out = PairBatch(first.prompts + second.prompts, torch.cat([first.clean, second.clean]),
                    {a: torch.cat([first.degraded[a], second.degraded[a]]) for a in AXES},
                    {a: first.families[a] + second.families[a] for a in AXES},
                    first.wrong_prompts + second.wrong_prompts)
    if first.stronger is not None and second.stronger is not None:
        out.stronger = {a: torch.cat([first.stronger[a], second.stronger[a]]) for a in AXES}
        out.gaps = {a: torch.cat([first.gaps[a], second.gaps[a]]) for a in AXES}
    return out
