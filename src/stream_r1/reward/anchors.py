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

from ..checkpoint import load_state_dict, save_state_dict
from ..toyworld.prompts import parse_prompt, split_prompts
from .base import AXES
from .train import PairBatch, _pick_weighted, degrade, wrong_prompt

log = logging.getLogger(__name__)

ANCHOR_FORMAT = "stream-r1/reward-anchors/v1"


def build_anchor_bank(checkpoints: list[str], videos: int, seed: int, frames: int, batch_size: int = 32
                      ) -> tuple[torch.Tensor, list[str]]:
    """`videos` rollouts of each checkpoint on training-split prompts drawn with `seed`: uint8 [N, T, 3, H, W]."""
    from ..pipeline import VideoPipeline

    gen = torch.Generator().manual_seed(seed)
    train = split_prompts("train")
    out, prompts = [], []
    for checkpoint in checkpoints:
        pipe = VideoPipeline.from_checkpoint(checkpoint)
        texts = [train[i].text for i in torch.randint(len(train), (videos,), generator=gen).tolist()]
        for b in range(0, videos, batch_size):
            out.append(pipe.generate(texts[b : b + batch_size], frames, seed * 1_000_003 + len(prompts) + b))
        prompts += texts
    bank = (torch.cat(out).clamp(0, 1) * 255).round().to(torch.uint8)
    return bank, prompts


def build_preferred_bank(checkpoint: str, prompts: list[str], seed: int, frames: int, batch_size: int = 32
                         ) -> torch.Tensor:
    """Rollouts of a better model (the teacher) for the same prompts: uint8 [N, T, 3, H, W]."""
    from ..pipeline import VideoPipeline

    pipe = VideoPipeline.from_checkpoint(checkpoint)
    out = [pipe.generate(prompts[b : b + batch_size], frames, seed * 1_000_003 + 500_000 + b)
           for b in range(0, len(prompts), batch_size)]
    return (torch.cat(out).clamp(0, 1) * 255).round().to(torch.uint8)


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
        tensors["preferred"] = build_preferred_bank(spec["preferred"], prompts, spec["seed"], frames)
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
    from ..toyworld.degrade import DEGRADATIONS

    lo, hi = strength
    idx = torch.randint(len(prompts), (count,), generator=gen).tolist()
    clean = bank[idx].float() / 255.0
    chosen = [prompts[i] for i in idx]
    degraded = {a: [] for a in AXES}
    stronger = {a: [] for a in AXES}
    gaps = {a: [] for a in AXES}
    families = {a: [] for a in AXES}
    for video in clean:
        for axis in AXES:
            if axis == "ta":  # no scene to re-render: an identical copy, masked out by PairBatch.valid
                families[axis].append("none")
                degraded[axis].append(video.clone())
                stronger[axis].append(video.clone())
                gaps[axis].append(0.0)
                continue
            family = _pick_weighted(list(DEGRADATIONS[axis]), family_weights or {}, gen)
            families[axis].append(family)
            s = lo + (hi - lo) * float(torch.rand(1, generator=gen))
            if not graded:
                degraded[axis].append(degrade(axis, family, None, video, s, gen))
                continue
            s2 = lo + (hi - lo) * float(torch.rand(1, generator=gen))
            draw = int(torch.randint(2**62, (1,), generator=gen))
            mild, strong = min(s, s2), max(s, s2)
            degraded[axis].append(degrade(axis, family, None, video, mild, torch.Generator().manual_seed(draw)))
            stronger[axis].append(degrade(axis, family, None, video, strong, torch.Generator().manual_seed(draw)))
            gaps[axis].append(strong - mild)
    allowed = {p.combo for p in split_prompts("train")}
    wrong = [wrong_prompt(parse_prompt(p), gen, allowed).text for p in chosen]
    batch = PairBatch(chosen, clean, {a: torch.stack(v) for a, v in degraded.items()}, families, wrong)
    if graded:
        batch.stronger = {a: torch.stack(v) for a, v in stronger.items()}
        batch.gaps = {a: torch.tensor(v) for a, v in gaps.items()}
    return batch


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
