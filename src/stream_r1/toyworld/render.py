"""Seeded procedural videos: one anti-aliased coloured shape moving at constant velocity.

Two worlds: the toy world (below) and the long world (`world: long`, at the end of this file).
Videos are float tensors in [0, 1] laid out [B, T, 3, H, W]. In the toy world the trajectory's midpoint sits
near the frame centre (DESIGN.md §4: a narrower world buys a clean teacher); diversity comes from colour,
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


# ---------------------------------------------------------------------------------------------
# The long-horizon world (`world: long`): start anywhere, wrap around the edges, defined at any frame.

TOY_WORLD = "toy"
LONG_WORLD = "long"
WORLDS = (TOY_WORLD, LONG_WORLD)
LONG_HORIZON = 240  # training windows are drawn at any phase of trajectories this many frames long


def check_world(world: str) -> str:
    """The world name, or a ValueError that lists the worlds."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose one of {WORLDS}")
    return world


@dataclass(frozen=True)
class LongVideoSpec:
    """A video of the long world: the object starts at `start` at frame 0 and keeps the prompt's velocity for
    ever on a torus (leaving one edge it enters at the opposite one), so the direction word is true at every
    frame. The video shows frames first_frame .. first_frame + num_frames - 1 of that trajectory."""

    attrs: PromptAttributes
    start: tuple[float, float]  # object centre (x, y) at frame 0, pixels in [0, size)
    first_frame: int = 0
    num_frames: int = NUM_FRAMES
    radius: float = OBJECT_RADIUS
    size: int = FRAME_SIZE

    @property
    def velocity(self) -> tuple[float, float]:
        dx, dy = DIRECTIONS[self.attrs.direction]
        speed = SPEEDS[self.attrs.speed]
        return (dx * speed, dy * speed)

    def unwrapped_positions(self) -> torch.Tensor:
        """Object centre per shown frame before wrapping, [T, 2] as (x, y): a straight line."""
        t = torch.arange(self.first_frame, self.first_frame + self.num_frames, dtype=torch.float64)
        vx, vy = self.velocity
        return torch.stack([self.start[0] + vx * t, self.start[1] + vy * t], dim=1)

    def positions(self) -> torch.Tensor:
        """Object centre per shown frame on the torus, [T, 2] in [0, size)."""
        return torch.remainder(self.unwrapped_positions(), self.size)

    def window(self, first_frame: int, num_frames: int = NUM_FRAMES) -> LongVideoSpec:
        """The same trajectory seen from another frame on (any integer frame, negative too)."""
        return LongVideoSpec(self.attrs, self.start, first_frame, num_frames, self.radius, self.size)


def sample_long_spec(
    attrs: PromptAttributes,
    generator: torch.Generator,
    num_frames: int = NUM_FRAMES,
    size: int = FRAME_SIZE,
    horizon: int = 0,
) -> LongVideoSpec:
    """A seeded long-world placement: start uniform over the frame; with `horizon` > num_frames the shown
    window begins at a uniform phase of a trajectory `horizon` frames long (0: the window starts at frame 0)."""
    start = torch.rand(2, generator=generator, dtype=torch.float64) * size
    first = 0
    if horizon > num_frames:
        first = int(torch.randint(horizon - num_frames + 1, (1,), generator=generator))
    return LongVideoSpec(attrs, (float(start[0]), float(start[1])), first, num_frames, OBJECT_RADIUS, size)


def render_long_spec(spec: LongVideoSpec) -> torch.Tensor:
    """Render one long-world video, [T, 3, H, W] float32 in [0, 1]; an object across an edge is drawn on both."""
    n = spec.size * SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / SUPERSAMPLE
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    pos = spec.positions()
    cover = torch.zeros(spec.num_frames, n, n, dtype=torch.float64)
    for ox in (-spec.size, 0, spec.size):  # the radius is below size / 2, so the nine copies never overlap
        for oy in (-spec.size, 0, spec.size):
            cx = (pos[:, 0] + ox).view(-1, 1, 1)
            cy = (pos[:, 1] + oy).view(-1, 1, 1)
            cover = torch.maximum(cover, shape_coverage(spec.attrs.shape, px, py, cx, cy, spec.radius))
    cover = torch.nn.functional.avg_pool2d(cover.unsqueeze(1), SUPERSAMPLE).squeeze(1)
    fg = torch.tensor(COLOURS[spec.attrs.colour], dtype=torch.float64).view(1, 3, 1, 1)
    bg = torch.tensor(BACKGROUNDS[spec.attrs.background], dtype=torch.float64).view(1, 3, 1, 1)
    cover = cover.unsqueeze(1)
    return (bg * (1 - cover) + fg * cover).float()


def sample_world_videos(
    prompts: list[PromptAttributes],
    seed: int | torch.Generator,
    world: str = TOY_WORLD,
    num_frames: int = NUM_FRAMES,
    horizon: int = 0,
) -> tuple[torch.Tensor, list]:
    """Seeded videos of either world: (videos [B, T, 3, H, W], their specs).

    The toy world with 12 frames draws exactly what `sample_videos` draws. `horizon` (long world only) draws
    each window at a uniform phase of a trajectory that long, as the long teacher trains.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    if check_world(world) == TOY_WORLD:
        specs = [sample_spec(p, gen, num_frames) for p in prompts]
        return render_batch(specs), specs
    long_specs = [sample_long_spec(p, gen, num_frames, horizon=horizon) for p in prompts]
    return torch.stack([render_long_spec(s) for s in long_specs]), long_specs
