"""Preference pairs for the toy reward: a clean video against a copy degraded on one axis, or with a wrong prompt.

Shared by the reward's own training (`reward/train.py`) and the anchored fine-tuning (`reward/anchors.py`);
every draw comes from the generator passed in, so a step's pairs are a pure function of (seed, step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..toyworld.degrade import DEGRADATIONS
from ..toyworld.prompts import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS, PromptAttributes, split_prompts
from ..toyworld.render import VideoSpec, render_spec, sample_spec
from .base import AXES

PAIR_KINDS = (*AXES, "ta_prompt")  # the four pair types: one per axis plus TA's wrong-prompt pairs
ATTRIBUTE_VALUES = {"colour": COLOURS, "shape": SHAPES, "direction": DIRECTIONS, "speed": SPEEDS,
                    "background": BACKGROUNDS}
NOOP_ATOL = 1e-4  # a "degraded" video within this of the clean one is no pair (e.g. freeze that held no frame)


@dataclass
class PairBatch:
    """Clean videos, one degraded copy per axis (optionally a stronger one of the same draw), wrong prompts."""

    prompts: list[str]
    clean: torch.Tensor  # [P, T, 3, H, W]
    degraded: dict[str, torch.Tensor]  # axis -> [P, T, 3, H, W]
    families: dict[str, list[str]]  # axis -> family name per pair
    wrong_prompts: list[str]
    stronger: dict[str, torch.Tensor] | None = None  # axis -> the same corruption draw at a higher strength
    gaps: dict[str, torch.Tensor] | None = None  # axis -> [P] strength gap between stronger and degraded

    def valid(self, axis: str) -> torch.Tensor:
        """[P] bool: pairs whose degraded video actually differs from the clean one."""
        diff = (self.degraded[axis] - self.clean).abs().flatten(1).amax(dim=1)
        return diff > NOOP_ATOL


def _pick(options: list, gen: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=gen))]


def wrong_prompt(attrs: PromptAttributes, gen: torch.Generator, allowed: set | None = None) -> PromptAttributes:
    """The prompt with one attribute (drawn uniformly) changed; `allowed` restricts the resulting combos."""
    candidates: dict[str, list[PromptAttributes]] = {}
    for name, values in ATTRIBUTE_VALUES.items():
        for value in values:
            if value == getattr(attrs, name):
                continue
            other = PromptAttributes(**{**attrs.__dict__, name: value})
            if allowed is None or other.combo in allowed:
                candidates.setdefault(name, []).append(other)
    return _pick(candidates[_pick(sorted(candidates), gen)], gen)


def safe_families(axis: str, attrs: PromptAttributes, allowed: set | None) -> list[str]:
    """The axis' families for this prompt; with `allowed`, TA families that could depict a combination outside it
    (e.g. wrong_shape of a prompt whose other-shape combination is held out) are left out, so held-out
    combinations never appear in training, not even as negatives. May be empty (then the prompt has no TA pair).
    """
    names = list(DEGRADATIONS[axis])
    if axis != "ta" or allowed is None:
        return names
    safe = []
    for name in names:
        attribute = name.removeprefix("wrong_")
        values = ATTRIBUTE_VALUES.get(attribute, {})
        current = getattr(attrs, attribute, None)
        others = [PromptAttributes(**{**attrs.__dict__, attribute: v}) for v in values if v != current]
        if all(o.combo in allowed for o in others):
            safe.append(name)
    return safe


def _pick_weighted(names: list[str], weights: dict[str, float], gen: torch.Generator) -> str:
    w = torch.tensor([float(weights.get(n, 1.0)) for n in names], dtype=torch.float64)
    return names[int(torch.multinomial(w, 1, generator=gen))]


def degrade(axis: str, family: str, spec: VideoSpec, video: torch.Tensor, strength: float,
            gen: torch.Generator) -> torch.Tensor:
    """Apply one degradation family (TA families re-render the spec, the others act on the video)."""
    fn = DEGRADATIONS[axis][family]
    return fn(spec, strength, gen) if axis == "ta" else fn(video, strength, gen)


def make_pairs(
    attrs: list[PromptAttributes],
    gen: torch.Generator,
    strength: tuple[float, float],
    allowed: set | None = None,
    cycle_families: bool = False,
    graded: bool = False,
    family_weights: dict[str, float] | None = None,
    exclude_families: tuple[str, ...] = (),
) -> PairBatch:
    """Render clean videos and degraded copies; families are drawn at random or cycled (for balanced eval).

    `allowed` (training) restricts wrong prompts and TA families to those that stay within these combinations;
    `family_weights` (default 1 each) oversamples hard families; `exclude_families` never draws these (a reward
    trained before a family existed is reproduced by excluding it; cycled evaluation pairs use every family).
    With `graded`, each corruption draw is also rendered at a second, higher strength (degradations grow
    monotonically with strength for a fixed draw), which gives "mild beats strong" pairs.
    """
    specs = [sample_spec(a, gen) for a in attrs]
    clean = [render_spec(s) for s in specs]

    def pick_family(i: int, axis: str) -> str | None:
        if cycle_families:
            names = list(DEGRADATIONS[axis])
            return names[i % len(names)]
        names = [n for n in safe_families(axis, attrs[i], allowed) if n not in exclude_families]
        return _pick_weighted(names, family_weights or {}, gen) if names else None

    return corrupted_pairs(attrs, specs, clean, pick_family, gen, strength, allowed, graded)


def corrupted_pairs(
    attrs: list[PromptAttributes],
    specs: list[VideoSpec | None],
    clean: list[torch.Tensor],
    pick_family: Callable[[int, str], str | None],
    gen: torch.Generator,
    strength: tuple[float, float],
    allowed: set | None = None,
    graded: bool = False,
) -> PairBatch:
    """Clean videos against degraded copies: per video and axis, the family `pick_family` names (None = a no-op
    pair, masked out of the loss) at a strength drawn from `strength`, then one wrong prompt per video.

    Shared by ground-truth pairs (`make_pairs`) and student-anchored ones (`anchors.anchor_pairs`, whose specs are
    None: a generated video has no scene to re-render, so it only takes the families that act on pixels).
    """
    lo, hi = strength
    degraded: dict[str, list[torch.Tensor]] = {a: [] for a in AXES}
    stronger: dict[str, list[torch.Tensor]] = {a: [] for a in AXES}
    gaps: dict[str, list[float]] = {a: [] for a in AXES}
    families: dict[str, list[str]] = {a: [] for a in AXES}
    for i, (spec, video) in enumerate(zip(specs, clean, strict=True)):
        for axis in AXES:
            family = pick_family(i, axis)
            families[axis].append(family or "none")
            if family is None:
                degraded[axis].append(video.clone())
                stronger[axis].append(video.clone())
                gaps[axis].append(0.0)
                continue
            s = lo + (hi - lo) * float(torch.rand(1, generator=gen))
            if not graded:
                degraded[axis].append(degrade(axis, family, spec, video, s, gen))
                continue
            s2 = lo + (hi - lo) * float(torch.rand(1, generator=gen))
            draw = int(torch.randint(2**62, (1,), generator=gen))
            mild, strong = min(s, s2), max(s, s2)
            degraded[axis].append(degrade(axis, family, spec, video, mild, torch.Generator().manual_seed(draw)))
            stronger[axis].append(degrade(axis, family, spec, video, strong, torch.Generator().manual_seed(draw)))
            gaps[axis].append(strong - mild)
    wrong = [wrong_prompt(a, gen, allowed).text for a in attrs]
    batch = PairBatch([a.text for a in attrs], torch.stack(clean), {a: torch.stack(v) for a, v in degraded.items()},
                      families, wrong)
    if graded:
        batch.stronger = {a: torch.stack(v) for a, v in stronger.items()}
        batch.gaps = {a: torch.tensor(v) for a, v in gaps.items()}
    return batch


def batch_for_step(seed: int, step: int, pairs: int, strength: tuple[float, float], graded: bool = False,
                   family_weights: dict[str, float] | None = None, exclude_families: tuple[str, ...] = ()) -> PairBatch:
    """The training pairs of one step, a pure function of (seed, step)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    train = split_prompts("train")
    idx = torch.randint(len(train), (pairs,), generator=gen).tolist()
    return make_pairs([train[i] for i in idx], gen, strength, allowed={p.combo for p in train}, graded=graded,
                      family_weights=family_weights, exclude_families=exclude_families)
