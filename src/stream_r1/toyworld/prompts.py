"""The toy world's prompt grammar: vocabulary, parsing, formatting and the held-out split.

Canonical form: ``a {colour} {shape} moving {direction} [slowly|quickly] on a {background} background``.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[float, float]] = {  # unit step as (dx, dy), y grows downwards
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
SPEEDS: dict[str, float] = {"slowly": 0.25, "": 0.45, "quickly": 0.65}  # pixels per frame
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "gray": (0.5, 0.5, 0.5),
}
FILLER_WORDS: tuple[str, ...] = ("a", "moving", "on", "background")
VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        set(FILLER_WORDS)
        | set(COLOURS)
        | set(SHAPES)
        | set(DIRECTIONS)
        | {s for s in SPEEDS if s}
        | set(BACKGROUNDS)
    )
)
MAX_PROMPT_WORDS = 10


class PromptError(ValueError):
    """A prompt outside the toy grammar; the message names the problem and the fix."""


@dataclass(frozen=True)
class PromptAttributes:
    """The five attributes a toy prompt fixes."""

    colour: str
    shape: str
    direction: str
    background: str
    speed: str = ""  # "", "slowly" or "quickly"

    @property
    def text(self) -> str:
        return format_prompt(self)

    @property
    def combo(self) -> tuple[str, str, str, str]:
        """The attribute combination used for the held-out split (speed excluded)."""
        return (self.colour, self.shape, self.direction, self.background)


def format_prompt(attrs: PromptAttributes) -> str:
    """Render attributes in the canonical prompt form."""
    speed = f" {attrs.speed}" if attrs.speed else ""
    return (
        f"a {attrs.colour} {attrs.shape} moving {attrs.direction}{speed} "
        f"on a {attrs.background} background"
    )


def parse_prompt(text: str) -> PromptAttributes:
    """Parse a canonical toy prompt; raise PromptError with a one-line fix otherwise."""
    words = text.strip().lower().replace(",", " ").split()
    if not words:
        raise PromptError("empty prompt; write e.g. 'a red circle moving left on a black background'")
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown:
        raise PromptError(
            f"unknown word(s) {unknown} in prompt {text!r}; the toy vocabulary is: {', '.join(VOCABULARY)}"
        )
    speed = ""
    if len(words) == 10 and words[5] in SPEEDS:
        speed = words.pop(5)
    pattern_ok = (
        len(words) == 9
        and words[0] == "a"
        and words[1] in COLOURS
        and words[2] in SHAPES
        and words[3] == "moving"
        and words[4] in DIRECTIONS
        and words[5] == "on"
        and words[6] == "a"
        and words[7] in BACKGROUNDS
        and words[8] == "background"
    )
    if not pattern_ok:
        raise PromptError(
            f"prompt {text!r} is not in the toy form; write "
            "'a {colour} {shape} moving {direction} [slowly|quickly] on a {background} background'"
        )
    return PromptAttributes(words[1], words[2], words[4], words[7], speed)


def all_combos() -> list[tuple[str, str, str, str]]:
    """Every (colour, shape, direction, background) combination, in a fixed order."""
    return list(itertools.product(COLOURS, SHAPES, DIRECTIONS, BACKGROUNDS))


def held_out_combos(count: int = 16, seed: int = 2026) -> list[tuple[str, str, str, str]]:
    """A fixed set of combinations never shown in training; every single attribute value still is."""
    combos = all_combos()
    random.Random(seed).shuffle(combos)
    return sorted(combos[:count])


def split_prompts(split: str) -> list[PromptAttributes]:
    """All prompts (every speed) of the 'train' or 'heldout' split."""
    held = set(held_out_combos())
    if split not in ("train", "heldout"):
        raise PromptError(f"unknown split {split!r}; use 'train' or 'heldout'")
    chosen = [c for c in all_combos() if (c in held) == (split == "heldout")]
    return [PromptAttributes(c, s, d, b, sp) for (c, s, d, b) in chosen for sp in SPEEDS]


SUBSET_SEED = 123  # the fixed random subset of training prompts used to choose checkpoints (docs/teacher.md)


def eval_prompts(split: str = "heldout", per_prompt: int = 2, subset: int | None = None) -> list[str]:
    """Every prompt of a split (or a fixed random `subset` of them), `per_prompt` times, prompt-major.

    Video i gets seed `seed + i`. Checkpoints are chosen on `--split train --subset 48`, so that the held-out
    prompts are only ever looked at, never selected on.
    """
    texts = [p.text for p in split_prompts(split)]
    if subset is not None:
        if not 0 < subset <= len(texts):
            raise ValueError(f"--subset {subset}: the {split} split has {len(texts)} prompts; pick 1..{len(texts)}")
        texts = random.Random(SUBSET_SEED).sample(texts, subset)
    return [t for t in texts for _ in range(per_prompt)]
