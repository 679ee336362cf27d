"""Rule-based annotator of toy video pairs: which of two videos of one prompt is better, per axis (method.md §4.2).

VideoReward was trained on human preferences between videos that real generators made. This module plays the
human: it reads the prompt's words (the toy grammar) and the pixels of both videos, and says per axis which is
better, or that it cannot tell. It is written apart from ToyBench (`toyworld/bench.py`): no code and no features
in common. ToyBench fits ideal shape templates, a robust velocity and smoothstep scores; the annotator looks at
colour distances to the named colours, a blob's fill of its bounding box, centroid second differences and a
least-squares slope, and compares the two videos directly. Like a human it is wrong on some pairs; `flip` makes
that a stated, seeded fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..toyworld.prompts import BACKGROUNDS, COLOURS, DIRECTIONS, SPEEDS, parse_prompt
from .base import AXES

FILL_OF_BOX = {"circle": 0.785, "square": 1.0, "triangle": 0.5}  # area / bounding box of the ideal shape
STRAY_DISTANCE = 0.3  # RGB distance from both named colours beyond which a pixel is neither object nor background
MIN_OBJECT_PIXELS = 3  # a frame with fewer object pixels shows no object


@dataclass
class Judgement:
    """Per axis: the annotator's score of each video (higher is better) and what it cannot tell apart."""

    scores: dict[str, tuple[float, float]]  # axis -> (score of A, score of B)
    tie: dict[str, bool]  # axis -> the two scores are within the annotator's resolution


def object_masks(video: torch.Tensor, prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel: nearer the named object colour than the named background ([T, H, W] bool), stray (far from
    both), and the distance to the nearer of the two. `video` is [T, 3, H, W] in [0, 1]."""
    attrs = parse_prompt(prompt)
    obj = torch.tensor(COLOURS[attrs.colour]).view(1, 3, 1, 1)
    bg = torch.tensor(BACKGROUNDS[attrs.background]).view(1, 3, 1, 1)
    d_obj = (video - obj).norm(dim=1)
    d_bg = (video - bg).norm(dim=1)
    nearest = torch.minimum(d_obj, d_bg)
    return d_obj < d_bg, nearest > STRAY_DISTANCE, nearest


def foreground(video: torch.Tensor, prompt: str) -> torch.Tensor:
    """Pixels that are not the named background ([T, H, W] bool), whatever their colour (for text alignment)."""
    bg = torch.tensor(BACKGROUNDS[parse_prompt(prompt).background]).view(1, 3, 1, 1)
    return (video - bg).norm(dim=1) > STRAY_DISTANCE


def centroids(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, 2] (x, y) centroid of each frame's mask and [T] pixel counts."""
    t, h, w = mask.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    m = mask.float()
    area = m.sum(dim=(1, 2))
    safe = area.clamp_min(1)
    return torch.stack([(m * xs).sum(dim=(1, 2)) / safe, (m * ys).sum(dim=(1, 2)) / safe], dim=1), area


def box_fill(mask: torch.Tensor) -> torch.Tensor:
    """[T] mask pixels / bounding-box pixels per frame (NaN where the frame shows no object)."""
    fills = []
    for frame in mask:
        ys, xs = torch.nonzero(frame, as_tuple=True)
        if len(ys) < MIN_OBJECT_PIXELS:
            fills.append(float("nan"))
            continue
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fills.append(float(len(ys)) / float(box))
    return torch.tensor(fills)


def ragged_edges(mask: torch.Tensor) -> torch.Tensor:
    """[T] boundary pixels (an object pixel with a 4-neighbour outside) per √area: a ragged blob has more."""
    m = mask.float()
    padded = torch.nn.functional.pad(m, (1, 1, 1, 1))
    inner = padded[:, :-2, 1:-1] * padded[:, 2:, 1:-1] * padded[:, 1:-1, :-2] * padded[:, 1:-1, 2:]
    boundary = (m * (1 - inner)).sum(dim=(1, 2))
    return boundary / m.sum(dim=(1, 2)).clamp_min(1).sqrt()


def visual_score(video: torch.Tensor, prompt: str) -> float:
    """Clean frames: few stray pixels, colours near the named ones, compact blobs."""
    obj, stray, nearest = object_masks(video, prompt)
    return -(2.0 * stray.float().mean() + nearest.mean() + 0.1 * ragged_edges(obj).mean()).item()


def motion_score(video: torch.Tensor, prompt: str) -> float:
    """Smooth, steady motion: small centroid acceleration, stable size, no vanishing, a still background."""
    obj, _, _ = object_masks(video, prompt)
    centre, area = centroids(obj)
    seen = area >= MIN_OBJECT_PIXELS
    missing = 1.0 - seen.float().mean()
    if seen.sum() >= 3:
        c = centre[seen]
        accel = (c[2:] - 2 * c[1:-1] + c[:-2]).norm(dim=1).mean()
        a = area[seen]
        size_cv = a.std() / a.mean()
    else:
        accel, size_cv = torch.tensor(2.0), torch.tensor(1.0)
    still = ~(obj[1:] | obj[:-1])  # background in both frames
    change = (video[1:] - video[:-1]).abs().mean(dim=1)
    bg_jitter = (change * still).sum() / still.sum().clamp_min(1)
    return -(accel + 0.5 * size_cv + 2.0 * missing + 5.0 * bg_jitter).item()


def alignment_score(video: torch.Tensor, prompt: str) -> float:
    """What the words say: the object's colour and shape, its velocity (direction × speed) and the background."""
    attrs = parse_prompt(prompt)
    fg = foreground(video, prompt)
    centre, area = centroids(fg)
    seen = area >= MIN_OBJECT_PIXELS
    if seen.sum() < 2:
        return -4.0  # no object to judge
    pixels = video.permute(0, 2, 3, 1)[fg]  # [N, 3]
    colour_err = (pixels.mean(dim=0) - torch.tensor(COLOURS[attrs.colour])).norm()
    t = torch.arange(len(seen), dtype=torch.float32)[seen]
    c = centre[seen]
    tc = t - t.mean()
    velocity = (tc[:, None] * (c - c.mean(dim=0))).sum(dim=0) / (tc * tc).sum()  # least-squares slope, px/frame
    target = SPEEDS[attrs.speed] * torch.tensor(DIRECTIONS[attrs.direction])
    velocity_err = (velocity - target).norm() / SPEEDS[""]
    fill = box_fill(fg)
    shape_err = (fill[~fill.isnan()] - FILL_OF_BOX[attrs.shape]).abs().mean()
    border = torch.cat([video[:, :, 0], video[:, :, -1], video[:, :, :, 0], video[:, :, :, -1]], dim=-1)
    bg_err = (border.mean(dim=(0, 2)) - torch.tensor(BACKGROUNDS[attrs.background])).norm()
    return -(colour_err + 0.5 * velocity_err + shape_err + bg_err).item()


SCORERS = {"vq": visual_score, "mq": motion_score, "ta": alignment_score}
RESOLUTION = {"vq": 0.01, "mq": 0.02, "ta": 0.02}  # score gaps below these are ties: the annotator cannot tell


def judge(a: torch.Tensor, b: torch.Tensor, prompt: str) -> Judgement:
    """The annotator's view of two videos ([T, 3, H, W] in [0, 1]) of `prompt`, before any label noise."""
    scores = {axis: (SCORERS[axis](a, prompt), SCORERS[axis](b, prompt)) for axis in AXES}
    return Judgement(scores, {axis: abs(sa - sb) < RESOLUTION[axis] for axis, (sa, sb) in scores.items()})


def label_pairs(first: torch.Tensor, second: torch.Tensor, prompts: list[str], flip: float,
                gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per axis, [N] labels for N video pairs: 1 = the first is better, 0 = the second, -1 = no label (a tie).

    Every label that is not a tie is flipped with probability `flip` (drawn from `gen`, so the same seed
    gives the same mistakes): the annotator is wrong on that fraction of the pairs it labels.
    """
    labels = {axis: torch.full((len(prompts),), -1, dtype=torch.long) for axis in AXES}
    for i, prompt in enumerate(prompts):
        j = judge(first[i], second[i], prompt)
        for axis in AXES:
            mistake = bool(torch.rand(1, generator=gen) < flip)
            if j.tie[axis]:
                continue
            better_first = j.scores[axis][0] > j.scores[axis][1]
            labels[axis][i] = int(better_first != mistake)
    return labels
