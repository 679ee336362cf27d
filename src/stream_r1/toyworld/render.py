"""Seeded procedural videos: one anti-aliased coloured shape moving at constant velocity.

Videos are float tensors in [0, 1] laid out [B, T, 3, H, W]. The trajectory's midpoint sits near the
frame centre (DESIGN.md §4: a narrower world buys a clean teacher); diversity comes from colour,
shape, direction, speed and background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .prompts import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS, PromptAttributes

FRAME_SIZE = 16
NUM_FRAMES = 12
OBJECT_RADIUS = 3.5  # half-extent of every shape, in pixels
SUPERSAMPLE = 4  # anti-aliasing: coverage is averaged over SUPERSAMPLE² points per pixel
CENTRE_JITTER = 0.75  # trajectory midpoint jitter, pixels


@dataclass(frozen=True)
class VideoSpec:
    """Everything that fixes one toy video: the prompt's attributes plus its seeded placement."""

    attrs: PromptAttributes
    centre: tuple[float, float]  # trajectory midpoint (x, y) in pixels
    radius: float = OBJECT_RADIUS
    num_frames: int = NUM_FRAMES
    size: int = FRAME_SIZE
    speed_scale: float = 1.0  # the object moves at this multiple of its speed word's speed (degradations, probes)

    @property
    def velocity(self) -> tuple[float, float]:
        dx, dy = DIRECTIONS[self.attrs.direction]
        speed = SPEEDS[self.attrs.speed] * self.speed_scale
        return (dx * speed, dy * speed)

    def positions(self) -> torch.Tensor:
        """Object centre per frame, [T, 2] as (x, y)."""
        t = torch.arange(self.num_frames, dtype=torch.float64) - (self.num_frames - 1) / 2
        vx, vy = self.velocity
        return torch.stack([self.centre[0] + vx * t, self.centre[1] + vy * t], dim=1)


def sample_spec(
    attrs: PromptAttributes,
    generator: torch.Generator,
    num_frames: int = NUM_FRAMES,
    size: int = FRAME_SIZE,
) -> VideoSpec:
    """Draw the seeded placement of a prompt's video (midpoint near the centre)."""
    jitter = (torch.rand(2, generator=generator, dtype=torch.float64) * 2 - 1) * CENTRE_JITTER
    centre = (size / 2 + float(jitter[0]), size / 2 + float(jitter[1]))
    return VideoSpec(attrs, centre, OBJECT_RADIUS, num_frames, size)


def shape_coverage(
    shape: str, px: torch.Tensor, py: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, radius: float
) -> torch.Tensor:
    """Binary inside-test of points (px, py) for a shape centred at (cx, cy); broadcasts."""
    dx, dy = px - cx, py - cy
    if shape == "circle":
        return (dx * dx + dy * dy <= radius * radius).to(px.dtype)
    if shape == "square":
        half = radius * 0.9  # equal-ish area to the circle
        return ((dx.abs() <= half) & (dy.abs() <= half)).to(px.dtype)
    if shape == "triangle":  # upright isosceles triangle, apex at the top
        top, bottom = -radius, radius
        inside_y = (dy >= top) & (dy <= bottom)
        half_width = radius * (dy - top) / (bottom - top)
        return (inside_y & (dx.abs() <= half_width)).to(px.dtype)
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def render_spec(spec: VideoSpec) -> torch.Tensor:
    """Render one video, [T, 3, H, W] float32 in [0, 1]."""
    n = spec.size * SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / SUPERSAMPLE
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    pos = spec.positions()
    cx = pos[:, 0].view(-1, 1, 1)
    cy = pos[:, 1].view(-1, 1, 1)
    cover = shape_coverage(spec.attrs.shape, px, py, cx, cy, spec.radius)  # [T, n, n]
    cover = torch.nn.functional.avg_pool2d(cover.unsqueeze(1), SUPERSAMPLE).squeeze(1)  # [T, H, W]
    fg = torch.tensor(COLOURS[spec.attrs.colour], dtype=torch.float64).view(1, 3, 1, 1)
    bg = torch.tensor(BACKGROUNDS[spec.attrs.background], dtype=torch.float64).view(1, 3, 1, 1)
    cover = cover.unsqueeze(1)
    return (bg * (1 - cover) + fg * cover).float()


def render_batch(specs: list[VideoSpec]) -> torch.Tensor:
    """Render several videos, [B, T, 3, H, W]."""
    return torch.stack([render_spec(s) for s in specs])


def sample_videos(
    prompts: list[PromptAttributes], seed: int | torch.Generator
) -> tuple[torch.Tensor, list[VideoSpec]]:
    """Seeded videos for a list of prompts: (videos [B, T, 3, H, W], their specs)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    specs = [sample_spec(p, gen) for p in prompts]
    return render_batch(specs), specs
