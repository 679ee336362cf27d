"""Measuring a prompt switch in a toy stream (issue 18, deliverable 5): how many chunks until each changed
attribute is right, and how far the object jumps at the switch. Frames and prompt texts only, like ToyBench,
and like it evaluation only, never a training signal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .bench import recentre, score_video, segment, to_frames, unwrap_track
from .prompts import SPEEDS, parse_prompt
from .render import TOY_WORLD, check_world

ATTRIBUTES = ("colour", "shape", "direction", "speed", "background")
TRACK_CONTEXT = 3  # frames on each side of the switch used to locate the object


@dataclass(frozen=True)
class SwitchMeasure:
    """One switched stream: per changed attribute the number of chunks from the switch until it is right (and
    stays right to the end; None if it never settles), the object's step across the switch and the steps
    around it (px), and what was read per chunk."""

    switch_frame: int
    changed: tuple[str, ...]
    chunks_to_right: dict[str, int | None]
    jump_px: float  # distance between the object's centres in the last frame before and the first after
    step_before_px: float  # median step between frames just before the switch (the motion's own step)
    expected_step_px: float  # the speed the first prompt asks for
    per_chunk: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def object_track(frames: np.ndarray | torch.Tensor, world: str = TOY_WORLD) -> np.ndarray:
    """The object's centre per frame [T, 2] (x, y; NaN without an object), unwrapped in the long world."""
    x = to_frames(frames)
    if check_world(world) == TOY_WORLD:
        return segment(x).centroid
    rolled, shifts = recentre(x)
    period = np.array([x.shape[2], x.shape[1]], dtype=np.float64)
    return unwrap_track(np.mod(segment(rolled).centroid - shifts, period), x.shape[1:3])


def measure_switch(
    frames: np.ndarray | torch.Tensor, before: str, after: str, switch_frame: int, frames_per_chunk: int = 3,
    world: str = TOY_WORLD,
) -> SwitchMeasure:
    """Measure a stream whose prompt changed from `before` to `after` at `switch_frame` (a chunk boundary).

    Colour, shape and background are read from each chunk's own frames; direction and speed, which need a
    track, from the chunk and the next one. Chunks are counted from the switch: 1 means right in the first
    chunk generated with the new prompt.
    """
    x = to_frames(frames)
    a, b = parse_prompt(before), parse_prompt(after)
    if not 0 < switch_frame < len(x) or switch_frame % frames_per_chunk:
        raise ValueError(f"switch at frame {switch_frame}: use a chunk boundary (multiple of {frames_per_chunk}) "
                         f"inside the {len(x)}-frame stream")
    changed = tuple(k for k in ATTRIBUTES if getattr(a, k) != getattr(b, k))
    per_chunk = []
    for start in range(switch_frame, len(x) - frames_per_chunk + 1, frames_per_chunk):
        own = score_video(x[start : start + frames_per_chunk], after, world).detected
        moving = score_video(x[start : start + 2 * frames_per_chunk], after, world).detected
        per_chunk.append({"colour": own["colour"], "shape": own["shape"], "background": own["background"],
                          "direction": moving["direction"], "speed": moving["speed"]})
    want = {k: getattr(b, k) for k in ATTRIBUTES}
    want["speed"] = b.speed or "normal"
    chunks_to_right: dict[str, int | None] = {}
    for key in changed:
        right = [row[key] == want[key] for row in per_chunk]
        wrong = [i for i, ok in enumerate(right) if not ok]
        settled = (wrong[-1] + 1) if wrong else 0
        chunks_to_right[key] = settled + 1 if settled < len(right) else None
    lo, hi = max(0, switch_frame - TRACK_CONTEXT), min(len(x), switch_frame + TRACK_CONTEXT)
    track = object_track(x[lo:hi], world)
    steps = np.linalg.norm(np.diff(track, axis=0), axis=1)
    at = switch_frame - lo - 1  # step from the last frame before the switch to the first after it
    return SwitchMeasure(
        switch_frame=switch_frame,
        changed=changed,
        chunks_to_right=chunks_to_right,
        jump_px=float(steps[at]),
        step_before_px=float(np.nanmedian(steps[:at])) if at > 0 else float("nan"),
        expected_step_px=SPEEDS[a.speed],
        per_chunk=per_chunk,
    )
