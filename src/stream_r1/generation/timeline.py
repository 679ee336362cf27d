"""A stream's prompts over time: (first frame, prompt) segments, from the command line or a JSON/YAML file.

`generate --prompt A --switch-at 36 --prompt B` (or `--timeline FILE`, a list of {frame, prompt}) streams one
video whose prompt switches at frame 36; switch points fall on chunk boundaries (docs/prompt-switch.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..toyworld.prompts import parse_prompt


class TimelineError(ValueError):
    """A timeline that cannot be streamed; the message names the problem and the fix."""


@dataclass(frozen=True)
class Timeline:
    """Segments (first pixel frame, prompt), the first at frame 0, frames strictly increasing."""

    segments: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise TimelineError("the timeline is empty; give at least one prompt")
        if self.segments[0][0] != 0:
            raise TimelineError(f"the timeline starts at frame {self.segments[0][0]}; its first prompt starts at 0")
        frames = [f for f, _ in self.segments]
        if any(b <= a for a, b in zip(frames, frames[1:], strict=False)):
            raise TimelineError(f"switch frames {frames[1:]} must increase")

    @property
    def switches(self) -> list[int]:
        return [f for f, _ in self.segments[1:]]

    def check(self, frames: int, frames_per_chunk: int) -> None:
        """One-line errors for switch points off chunk boundaries or outside the stream's `frames`."""
        for f in self.switches:
            if f % frames_per_chunk:
                raise TimelineError(f"switch at frame {f} is not on a chunk boundary; use a multiple of the "
                                    f"{frames_per_chunk}-frame chunk")
            if f >= frames:
                raise TimelineError(f"switch at frame {f} is past the end of the {frames}-frame stream")

    def check_prompts(self) -> None:
        """Every prompt in the toy grammar (toy checkpoints)."""
        for _, p in self.segments:
            parse_prompt(p)

    def prompt_at(self, frames_per_chunk: int) -> Callable[[int], str]:
        """The prompt of chunk k (chunks of `frames_per_chunk` pixel frames)."""
        def at(k: int) -> str:
            return [p for f, p in self.segments if f <= k * frames_per_chunk][-1]
        return at

    def as_list(self) -> list[dict]:
        """The manifest's form: [{frame, prompt}, ...]."""
        return [{"frame": f, "prompt": p} for f, p in self.segments]


def timeline_from_args(prompts: list[str], switch_at: list[int]) -> Timeline:
    """`--prompt A --switch-at 36 --prompt B`: one more prompt than switch points, in order."""
    if len(prompts) != len(switch_at) + 1:
        raise TimelineError(f"{len(switch_at)} --switch-at need {len(switch_at) + 1} --prompt (one before the "
                            f"first switch and one after each); got {len(prompts)}")
    return Timeline(tuple(zip([0, *switch_at], prompts, strict=True)))


def timeline_from_cli(prompts: list[str], prompts_file: str | None, switch_at: list[int],
                      timeline_file: str | None) -> Timeline | None:
    """The timeline `generate` was given (--switch-at with --prompt, or --timeline), None for plain prompts."""
    if timeline_file:
        if prompts or prompts_file or switch_at:
            raise TimelineError("--timeline holds the prompts; drop --prompt/--prompts/--switch-at")
        return read_timeline(timeline_file)
    if not switch_at:
        return None
    if prompts_file:
        raise TimelineError("--switch-at goes with --prompt (A --switch-at N B), not --prompts; or use --timeline")
    return timeline_from_args(prompts, switch_at)


def check_streamable(timeline: Timeline, pipe, frames: int) -> None:
    """One-line errors for a timeline this pipeline cannot stream: bidirectional, paper-scale, off boundaries."""
    if not pipe.model.cfg.causal:
        raise TimelineError("a prompt switch needs a causal (streaming) checkpoint; a bidirectional one samples "
                            "the whole clip at once")
    if pipe.family != "toy":
        raise TimelineError("prompt switching is for toy checkpoints for now (the Wan VAE's first chunk has "
                            "fewer pixel frames than the others)")
    timeline.check_prompts()
    timeline.check(frames, pipe.frames_per_chunk)


def read_timeline(path: str | Path) -> Timeline:
    """A JSON or YAML file holding a list of {frame, prompt} (the first at frame 0)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"timeline file {path} does not exist")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise TimelineError(f"timeline file {path} does not parse: {str(err).splitlines()[0]}") from err
    if not isinstance(data, list) or not all(isinstance(d, dict) and set(d) == {"frame", "prompt"} for d in data):
        raise TimelineError(f"timeline file {path}: give a list of {{frame, prompt}} entries, e.g. "
                            '[{"frame": 0, "prompt": "..."}, {"frame": 36, "prompt": "..."}]')
    for d in data:
        if not isinstance(d["frame"], int) or isinstance(d["frame"], bool) or not isinstance(d["prompt"], str):
            raise TimelineError(f"timeline file {path}: frame {d['frame']!r} must be a whole number and prompt "
                                "a text")
    return Timeline(tuple((d["frame"], d["prompt"].strip()) for d in data))

