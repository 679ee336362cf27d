"""Degradation families: corrupted toy videos that train the reward model and validate ToyBench.

Three families, one per ToyBench axis (DESIGN.md §4):
- visual quality (``vq``): ``blur``, ``noise``, ``blocking`` act on pixels and keep the motion;
- motion quality (``mq``): ``jitter``, ``teleport``, ``flicker``, ``freeze`` act on time and keep each frame crisp;
- text alignment (``ta``): ``wrong_colour``, ``wrong_shape``, ``wrong_direction``, ``wrong_speed`` re-render the
  video's ``VideoSpec`` with one attribute moved away from the prompt, and keep the video clean and smooth.

VQ/MQ functions are ``fn(video [T, 3, H, W] in [0, 1], strength in [0, 1], generator) -> video``; TA functions
are ``fn(spec, strength, generator) -> video``. Strength 0 returns the clean video. Every function draws the same
random numbers at every strength and only then scales them by the strength, so for one generator seed the
corruption grows with strength (in steps where it is discrete: blocking's block size, whole-pixel shifts, held
frames). Outputs are clamped to [0, 1]. This module is data, not a judge: it never imports ToyBench (bench.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from .prompts import BACKGROUNDS, COLOURS, SHAPES, SPEEDS
from .render import SUPERSAMPLE, VideoSpec, render_spec, shape_coverage

BLUR_MAX_SIGMA = 1.5  # Gaussian sigma (px) at strength 1: a 7 px shape loses its corners and edges
NOISE_MAX_STD = 0.25  # additive per-channel noise std at strength 1
BLOCK_MAX_EXTRA = 3  # block side k = 1 + round(3 * strength): 1 (clean) .. 4 px (a 7 px shape becomes ~2x2 blocks)
JITTER_MAX_STD = 1.5  # std (px) of the per-frame whole-frame shift at strength 1, stochastically rounded
TELEPORT_MAX_PX = 4.0  # jump length (px) of the teleported frame range at strength 1
TELEPORT_MAX_FRAMES = 4  # longest teleported range; it never includes the first or last frame
FLICKER_DEPTH = 0.7  # at strength 1 a frame's object contrast is scaled by a factor in [0.3, 1]
FREEZE_MAX_PROB = 0.75  # probability that an inner frame repeats its predecessor at strength 1
FREEZE_MAX_RUN = 2  # longest stall (held frames in a row): a stutter, not a stopped object
MIN_BLEND_CONTRAST = 0.4  # wrong_colour never blends through a colour closer than this (RGB L2) to the background

VideoFn = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
SpecFn = Callable[[VideoSpec, float, torch.Generator], torch.Tensor]


def _check_strength(strength: float) -> float:
    """Validate a strength; degradations are defined on [0, 1] only."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return float(strength)


def _check_video(video: torch.Tensor) -> None:
    """Validate the [T, 3, H, W] layout so a wrong layout fails loudly, not silently."""
    if video.dim() != 4 or video.shape[1] != 3:
        raise ValueError(f"expected a video [T, 3, H, W], got shape {tuple(video.shape)}")


def estimate_background(video: torch.Tensor) -> torch.Tensor:
    """Per-video background colour [3]: the median border pixel (the object covers only a few border pixels)."""
    border = torch.cat(
        [video[:, :, 0, :], video[:, :, -1, :], video[:, :, 1:-1, 0], video[:, :, 1:-1, -1]], dim=2
    )  # [T, 3, N]
    return border.permute(1, 0, 2).reshape(3, -1).median(dim=1).values


def _shift(frame: torch.Tensor, dx: int, dy: int, fill: torch.Tensor) -> torch.Tensor:
    """Translate one frame [3, H, W] by whole pixels, filling the uncovered strip with the background."""
    _, h, w = frame.shape
    out = fill.view(3, 1, 1).expand(3, h, w).clone()
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = frame[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[:, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
    return out


def _stochastic_round(values: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Round to whole pixels without a dead zone: floor(v + u), u ~ U[0, 1), is v on average and 0 at v = 0.

    For fixed u the magnitude never shrinks as |v| grows, which keeps shift-based degradations monotone.
    """
    return torch.floor(values + u).long()


# --------------------------------------------------------------------------- visual quality


def blur(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur of every frame, sigma = BLUR_MAX_SIGMA * strength (deterministic; generator unused)."""
    _check_video(video)
    sigma = BLUR_MAX_SIGMA * _check_strength(strength)
    if sigma == 0:
        return video.clone()
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=video.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    t, c, h, w = video.shape
    flat = video.reshape(t * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(t, c, h, w).clamp(0, 1)


def noise(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian pixel noise with std NOISE_MAX_STD * strength, clamped to [0, 1]."""
    _check_video(video)
    std = NOISE_MAX_STD * _check_strength(strength)
    z = torch.randn(video.shape, generator=generator, dtype=video.dtype)
    return (video + std * z).clamp(0, 1)


def blocking(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Compression-like blocks: average over k x k blocks on a random grid offset, k = 1 + round(3 * strength)."""
    _check_video(video)
    k = 1 + math.floor(BLOCK_MAX_EXTRA * _check_strength(strength) + 0.5)
    offset = torch.rand(2, generator=generator)
    if k == 1:
        return video.clone()
    ox, oy = (int(v) for v in (offset * k).floor().tolist())
    _, _, h, w = video.shape
    pad_r, pad_b = (-(w + ox)) % k, (-(h + oy)) % k
    padded = F.pad(video, (ox, pad_r, oy, pad_b), mode="replicate")
    blocks = F.avg_pool2d(padded, k)
    up = blocks.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
    return up[:, :, oy : oy + h, ox : ox + w].clamp(0, 1)


# --------------------------------------------------------------------------- motion quality


def jitter(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Shake: every frame's content shifts by whole pixels, N(0, (JITTER_MAX_STD * strength)^2) per axis."""
    _check_video(video)
    s = _check_strength(strength)
    z = torch.randn(video.shape[0], 2, generator=generator, dtype=torch.float64)
    u = torch.rand(video.shape[0], 2, generator=generator, dtype=torch.float64)
    shifts = _stochastic_round(z * JITTER_MAX_STD * s, u).tolist()
    fill = estimate_background(video)
    return torch.stack([_shift(f, dx, dy, fill) for f, (dx, dy) in zip(video, shifts, strict=True)])


def teleport(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """A random inner range of frames jumps by TELEPORT_MAX_PX * strength px in a random direction."""
    _check_video(video)
    s = _check_strength(strength)
    t = video.shape[0]
    length = int(torch.randint(2, TELEPORT_MAX_FRAMES + 1, (1,), generator=generator))
    length = max(1, min(length, t - 2))
    start = int(torch.randint(1, max(2, t - length), (1,), generator=generator))
    angle = float(torch.rand(1, generator=generator)) * 2 * math.pi
    u = torch.rand(2, generator=generator, dtype=torch.float64)
    offset = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64) * TELEPORT_MAX_PX * s
    dx, dy = _stochastic_round(offset, u).tolist()
    out = video.clone()
    if dx == 0 and dy == 0:
        return out
    fill = estimate_background(video)
    for i in range(start, min(start + length, t - 1)):
        out[i] = _shift(video[i], dx, dy, fill)
    return out


def flicker(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-frame alpha modulation of the object: frame = bg + (frame - bg) * (1 - FLICKER_DEPTH * strength * u_t)."""
    _check_video(video)
    s = _check_strength(strength)
    u = torch.rand(video.shape[0], generator=generator, dtype=video.dtype)
    if s == 0:
        return video.clone()  # bg + (frame - bg) * 1 is not bit-exact in floating point
    alpha = (1 - FLICKER_DEPTH * s * u).view(-1, 1, 1, 1)
    bg = estimate_background(video).view(1, 3, 1, 1)
    return (bg + (video - bg) * alpha).clamp(0, 1)


def freeze(video: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Stalls: each inner frame repeats the previous output frame with probability FREEZE_MAX_PROB * strength.

    A stall lasts at most FREEZE_MAX_RUN frames and the first and last frames are never held, so the motion
    stutters (stalls, then catches up) while the overall direction and speed of the prompt survive.
    """
    _check_video(video)
    s = _check_strength(strength)
    u = torch.rand(video.shape[0], generator=generator).tolist()
    out = video.clone()
    run = 0
    for i in range(1, video.shape[0] - 1):
        run = run + 1 if u[i] < FREEZE_MAX_PROB * s and run < FREEZE_MAX_RUN else 0
        if run:
            out[i] = out[i - 1]
    return out


# --------------------------------------------------------------------------- text alignment


def _render(
    spec: VideoSpec,
    inside: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    colour: tuple[float, float, float],
    positions: torch.Tensor,
) -> torch.Tensor:
    """Render like render.render_spec but with an arbitrary inside-test, colour and trajectory."""
    n = spec.size * SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float64) + 0.5) / SUPERSAMPLE
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    cx = positions[:, 0].view(-1, 1, 1)
    cy = positions[:, 1].view(-1, 1, 1)
    cover = inside(px - cx, py - cy).to(torch.float64)
    cover = F.avg_pool2d(cover.unsqueeze(1), SUPERSAMPLE)  # [T, 1, H, W]
    fg = torch.tensor(colour, dtype=torch.float64).view(1, 3, 1, 1)
    bg = torch.tensor(BACKGROUNDS[spec.attrs.background], dtype=torch.float64).view(1, 3, 1, 1)
    return (bg * (1 - cover) + fg * cover).float()


def _level(shape: str, dx: torch.Tensor, dy: torch.Tensor, radius: float) -> torch.Tensor:
    """Signed distance-like level function of a shape (<= 0 inside), matching render.shape_coverage's sets."""
    if shape == "circle":
        return torch.sqrt(dx * dx + dy * dy) - radius
    if shape == "square":
        return torch.maximum(dx.abs(), dy.abs()) - 0.9 * radius
    if shape == "triangle":  # apex at the top: |dx| <= (dy + r) / 2 for dy in [-r, r]
        slant = (dx.abs() - (dy + radius) / 2) / math.sqrt(1.25)
        return torch.maximum(torch.maximum(-radius - dy, dy - radius), slant)
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def _choice(options: list, generator: torch.Generator):
    """One element of a list drawn with the generator."""
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def wrong_colour(spec: VideoSpec, strength: float, generator: torch.Generator) -> torch.Tensor:
    """The object's colour moves linearly in RGB from the prompt's colour to a random other one (1 = fully wrong).

    Targets whose blend path would pass within MIN_BLEND_CONTRAST of the background (blue -> yellow on gray)
    are excluded, so the object stays visible at every strength.
    """
    s = _check_strength(strength)
    right = torch.tensor(COLOURS[spec.attrs.colour], dtype=torch.float64)
    bg = torch.tensor(BACKGROUNDS[spec.attrs.background], dtype=torch.float64)
    grid = torch.linspace(0, 1, 21, dtype=torch.float64).view(-1, 1)
    options = [
        name
        for name, rgb in COLOURS.items()
        if name != spec.attrs.colour
        and float((right + grid * (torch.tensor(rgb, dtype=torch.float64) - right) - bg).norm(dim=1).min())
        >= MIN_BLEND_CONTRAST
    ]
    target = torch.tensor(COLOURS[_choice(options, generator)], dtype=torch.float64)
    if s == 0:
        return render_spec(spec)
    colour = tuple(float(v) for v in right + s * (target - right))
    shape, radius = spec.attrs.shape, spec.radius
    return _render(spec, lambda dx, dy: shape_coverage(shape, dx, dy, 0.0, 0.0, radius), colour, spec.positions())


def wrong_shape(spec: VideoSpec, strength: float, generator: torch.Generator) -> torch.Tensor:
    """The object's outline morphs (level-set blend, always crisp) from the prompt's shape to a random other one."""
    s = _check_strength(strength)
    target = _choice([sh for sh in SHAPES if sh != spec.attrs.shape], generator)
    if s == 0:
        return render_spec(spec)
    shape, radius = spec.attrs.shape, spec.radius

    def inside(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        return ((1 - s) * _level(shape, dx, dy, radius) + s * _level(target, dx, dy, radius)) <= 0

    return _render(spec, inside, COLOURS[spec.attrs.colour], spec.positions())


def wrong_direction(spec: VideoSpec, strength: float, generator: torch.Generator) -> torch.Tensor:
    """The velocity rotates by +-180 deg * strength around the same midpoint (0.5 = perpendicular, 1 = reversed)."""
    s = _check_strength(strength)
    sign = 1.0 if float(torch.rand(1, generator=generator)) < 0.5 else -1.0
    if s == 0:
        return render_spec(spec)
    angle = sign * math.pi * s
    vx, vy = spec.velocity
    rx, ry = vx * math.cos(angle) - vy * math.sin(angle), vx * math.sin(angle) + vy * math.cos(angle)
    t = torch.arange(spec.num_frames, dtype=torch.float64) - (spec.num_frames - 1) / 2
    positions = torch.stack([spec.centre[0] + rx * t, spec.centre[1] + ry * t], dim=1)
    shape, radius = spec.attrs.shape, spec.radius
    return _render(
        spec, lambda dx, dy: shape_coverage(shape, dx, dy, 0.0, 0.0, radius), COLOURS[spec.attrs.colour], positions
    )


def wrong_speed(spec: VideoSpec, strength: float, generator: torch.Generator) -> torch.Tensor:
    """The speed moves linearly from the prompt's speed word to a random other one (1 = the other word's speed).

    Direction and midpoint stay, so only the speed word is wrong. Added in session 6: the toy reward trained without
    it scores a video 1.4x too fast as well aligned as a right one (docs/results.md, "Session 6").
    """
    s = _check_strength(strength)
    target = _choice([w for w in SPEEDS if w != spec.attrs.speed], generator)
    if s == 0:
        return render_spec(spec)
    own = SPEEDS[spec.attrs.speed]
    return render_spec(replace(spec, speed_scale=(own + s * (SPEEDS[target] - own)) / own))


DEGRADATIONS: dict[str, dict[str, VideoFn | SpecFn]] = {
    "vq": {"blur": blur, "noise": noise, "blocking": blocking},
    "mq": {"jitter": jitter, "teleport": teleport, "flicker": flicker, "freeze": freeze},
    "ta": {"wrong_colour": wrong_colour, "wrong_shape": wrong_shape, "wrong_direction": wrong_direction,
           "wrong_speed": wrong_speed},
}
"""Every family by the ToyBench axis it targets; ``ta`` functions take a VideoSpec instead of a video."""
