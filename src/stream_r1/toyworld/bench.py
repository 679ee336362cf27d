"""ToyBench: analytic, weight-free scores of toy videos per axis (VQ, MQ, TA), from frames and prompt text only.

It plays VBench's role for the toy world (DESIGN.md §4) and is never a training signal. It sees the pixels and
the prompt, nothing hidden (no VideoSpec), and knows only the world's public constants (object radius, colour,
background and speed tables).

Pipeline per video:
1. background: median border colour per frame (robust to a wrong background, which is then a TA error);
2. coverage: each pixel's projection on the object's colour direction, divided by the frame's object contrast,
   gives an anti-aliasing-aware coverage a in [0, 1]; the mask a >= 0.5 splits into 8-connected blobs; the
   blob with most coverage is the object, the rest are fragments;
3. per frame the object's coverage is compared with the ideal anti-aliased circle, square and triangle of the
   world's radius centred at its centroid (soft IoU), which gives shape fidelity and the shape class;
4. the centroid track gives a robust velocity (repeated median, then least squares on inliers), its residual,
   stalls, direction and speed.
Every raw measurement is mapped to [0, 1] by a smoothstep between a documented "good" and "bad" value.

The long world (`world="long"`, render.py) wraps around the frame's edges. There each frame is first rolled
(an integer cyclic shift) so that the object's circular mean sits at the centre, the pipeline above runs on the
rolled frames, and the motion is measured on the track unrolled and unwrapped back to a straight line.
ToyBench over time (`score_segments`, `curve`) scores every 12-frame segment of a video of any length.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .prompts import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS, PromptAttributes, parse_prompt
from .render import NUM_FRAMES, OBJECT_RADIUS, SUPERSAMPLE, TOY_WORLD, check_world, shape_coverage

# Segmentation.
COLOUR_TOP_FRACTION = 0.04  # the object's colour direction is the mean offset of the video's 4% most distinct pixels
CONTRAST_TOP_K = 4  # a frame's object contrast is the mean of its 4 largest projections (interior pixels)
MIN_CONTRAST = 0.15  # below this (RGB units) a frame holds no object; GT contrast is >= 0.87 (red on gray)
MASK_LEVEL = 0.5  # coverage threshold of the object mask
MIN_BLOB_PIXELS = 2  # blobs smaller than this are speckle, not objects, when counting objects (``coherent``)
CORE_LEVEL = 0.9  # pixels above this coverage form the object's core (robust per-frame contrast for flicker)

# VQ raw -> score (smoothstep from bad to good).
IOU_BAD, IOU_GOOD = 0.55, 0.96  # best soft IoU with an ideal shape; GT >= 0.99, blur sigma 1.5 ~0.6
SOFT_BAD, SOFT_GOOD = 2.2, 1.1  # edge softness sum 4a(1-a) relative to the ideal anti-aliased template; GT ~1
BG_BAD, BG_GOOD = 0.12, 0.02  # RMS (RGB L2) of background pixels away from the object
FRAG_BAD, FRAG_GOOD = 0.3, 0.02  # fragment mask area relative to the object's mask area

# MQ raw -> score.
TRACK_BAD, TRACK_GOOD = 1.5, 0.12  # RMS (px) of centroids around the robust constant-velocity line; GT ~0.02
SIZE_BAD, SIZE_GOOD = 0.25, 0.05  # coefficient of variation of the object's coverage area across frames
FLICKER_BAD, FLICKER_GOOD = 0.3, 0.02  # mean |log contrast change| + background change + hue change per step
STALL_RATIO = 0.35  # a step shorter than 35% of the prompt's speed is a stall (the prompt always says moving)
STALL_BAD, STALL_GOOD = 0.45, 0.05  # fraction of stalled steps

# TA softmax temperatures (logit units per raw unit); GT margins are 5-10 temperatures wide.
COLOUR_TEMP = 0.05  # cosine between the object's colour offset and each colour's offset from the background
SHAPE_TEMP = 0.02  # soft IoU per shape class (circle vs square differ by ~0.12 on GT)
DIRECTION_TEMP = 0.04  # velocity component (px/frame) along each direction; slowest speed is 0.25
SPEED_TEMP = 0.03  # |speed - class speed| (px/frame); classes are 0.2 apart
BACKGROUND_TEMP = 0.1  # RGB L2 distance of the border colour to each background; backgrounds are >= 0.87 apart
CLASSIFY_SIGMAS = (0.5, 1.0, 1.5, 2.0)  # blur levels (px) of the templates the shape classifier also tries

MIN_TRACK_FRAMES = 3  # frames with an object needed to measure motion
INLIER_PX = 1.0  # frames within 1 px of the robust line refine the velocity by least squares


@dataclass(frozen=True)
class BenchScore:
    """ToyBench result for one video: axis scores in [0, 1], sub-metrics, attribute checks and detections."""

    vq: float
    mq: float
    ta: float
    total: float
    metrics: dict[str, float]
    colour_ok: bool
    shape_ok: bool
    direction_ok: bool
    speed_ok: bool
    background_ok: bool
    coherent: bool
    detected: dict[str, str] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)  # unmapped measurements (px, ratios) for calibration

    def as_dict(self) -> dict[str, Any]:
        """Flat dict (sub-metrics and detections inlined) for JSON rows and tables."""
        d = asdict(self)
        metrics, detected, raw = d.pop("metrics"), d.pop("detected"), d.pop("raw")
        d.update(metrics)
        d.update({f"detected_{k}": v for k, v in detected.items()})
        d.update({f"raw_{k}": v for k, v in raw.items()})
        return d


@dataclass
class _Segmentation:
    """What every metric reads: coverage, object/fragment split and per-frame object statistics."""

    x: np.ndarray  # [T, H, W, 3] frames in [0, 1]
    bg_frame: np.ndarray  # [T, 3] border colour per frame
    bg: np.ndarray  # [3] border colour of the whole video
    direction: np.ndarray  # [3] unit colour offset of the object from the background
    cover: np.ndarray  # [T, H, W] coverage estimate in [0, 1]
    main: np.ndarray  # [T, H, W] bool, the object's blob dilated by one pixel
    valid: np.ndarray  # [T] bool, frame holds an object
    blobs: np.ndarray  # [T] number of blobs with >= MIN_BLOB_PIXELS pixels
    fragment_ratio: np.ndarray  # [T] fragment mask area / object mask area
    centroid: np.ndarray  # [T, 2] (x, y) in pixels, NaN where no object
    area: np.ndarray  # [T] object coverage mass at the video's median contrast
    core_contrast: np.ndarray  # [T] median projection over the object's core
    hue: np.ndarray  # [T, 3] unit colour offset per frame


def smoothstep(x: float | np.ndarray, bad: float, good: float) -> float | np.ndarray:
    """Map a raw value to [0, 1]: 0 at/beyond ``bad``, 1 at/beyond ``good``, C1-smooth between (either order)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - bad) / (good - bad), 0.0, 1.0)
    out = t * t * (3 - 2 * t)
    return float(out) if out.ndim == 0 else out


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def to_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Frames as float64 [T, H, W, 3] in [0, 1] from uint8 [T, H, W, 3] or float [T, 3, H, W] (numpy or torch)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        frames = (frames if frames.dtype == torch.uint8 else frames.double()).numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4 or 3 not in (arr.shape[1], arr.shape[3]):
        raise ValueError(f"expected frames [T, 3, H, W] or [T, H, W, 3], got shape {arr.shape}")
    if arr.shape[3] != 3 or (arr.shape[1] == 3 and arr.dtype != np.uint8):
        arr = arr.transpose(0, 2, 3, 1)  # channels-first floats (uint8 is channels-last by convention)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 (8-neighbour) binary dilation of [T, H, W] masks."""
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[:, dy : dy + h, dx : dx + w]
    return out


def label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of [T, H, W] masks (0 = background) by max-label propagation."""
    t, h, w = mask.shape
    labels = np.where(mask, np.arange(1, t * h * w + 1).reshape(t, h, w), 0)
    while True:
        p = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
        grown = labels.copy()
        for dy in range(3):
            for dx in range(3):
                np.maximum(grown, p[:, dy : dy + h, dx : dx + w], out=grown)
        grown = np.where(mask, grown, 0)
        if np.array_equal(grown, labels):
            return labels
        labels = grown


def _border(x: np.ndarray) -> np.ndarray:
    """Border pixels of every frame, [T, N, 3]."""
    return np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)


def segment(x: np.ndarray) -> _Segmentation:
    """Estimate background, object coverage, the object's blob and fragments per frame of [T, H, W, 3] frames."""
    t, h, w, _ = x.shape
    border = _border(x)
    bg_frame = np.median(border, axis=1)
    bg = np.median(border.reshape(-1, 3), axis=0)
    offset = x - bg_frame[:, None, None, :]
    dist = np.linalg.norm(offset, axis=-1)
    top = max(1, int(COLOUR_TOP_FRACTION * dist.size))
    idx = np.argpartition(dist.ravel(), -top)[-top:]
    mean_offset = offset.reshape(-1, 3)[idx].mean(axis=0)
    direction = mean_offset / max(np.linalg.norm(mean_offset), 1e-8)
    proj = offset @ direction  # [T, H, W]
    contrast = np.sort(proj.reshape(t, -1), axis=1)[:, -CONTRAST_TOP_K:].mean(axis=1)
    valid = contrast > MIN_CONTRAST
    cover = np.where(valid[:, None, None], np.clip(proj / np.maximum(contrast, 1e-8)[:, None, None], 0, 1), 0.0)
    mask = cover >= MASK_LEVEL
    labels = label_components(mask)

    # Each component's label is the largest flat index inside it, so labels of frame i lie in (i*H*W, (i+1)*H*W].
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=t * h * w + 1)[1:].reshape(t, h * w)
    mass = np.bincount(flat, weights=cover.ravel(), minlength=t * h * w + 1)[1:].reshape(t, h * w)
    valid &= sizes.any(axis=1)
    best = mass.argmax(axis=1)
    main = labels == (best + 1 + np.arange(t) * h * w)[:, None, None]
    main &= valid[:, None, None]
    best_size = np.maximum(sizes[np.arange(t), best], 1)
    blobs = np.where(valid, (sizes >= MIN_BLOB_PIXELS).sum(axis=1), 0)
    fragment_ratio = np.where(valid, (sizes.sum(axis=1) - best_size) / best_size, 0.0)
    main = _dilate(main)
    region = _dilate(main)  # two pixels around the blob: holds the anti-aliased and blurred rim of the object

    weights = cover * region
    reference = float(np.median(contrast[valid])) if valid.any() else 1.0
    area = (np.clip(proj / reference, 0, 1) * region).sum(axis=(1, 2))  # per-video scale: dimming shrinks it
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = weights.sum(axis=(1, 2))
        centroid = np.stack([(weights * xs).sum((1, 2)) / mass, (weights * ys).sum((1, 2)) / mass], axis=1)
    centroid[~valid] = np.nan

    core = main & (cover >= CORE_LEVEL)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: frames without a core
        core_contrast = np.nan_to_num(np.nanmedian(np.where(core, proj, np.nan).reshape(t, -1), axis=1))
    hue_sum = (offset * weights[..., None]).sum(axis=(1, 2))
    hue = hue_sum / np.maximum(np.linalg.norm(hue_sum, axis=1, keepdims=True), 1e-8)
    return _Segmentation(
        x, bg_frame, bg, direction, cover, main, valid, blobs, fragment_ratio, centroid, area, core_contrast, hue
    )


def ideal_coverage(shape: str, centroid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage [T, H, W] of the world's ideal shape whose area centroid sits at each (x, y)."""
    h, w = size
    cx = torch.as_tensor(np.nan_to_num(centroid[:, 0], nan=-100.0), dtype=torch.float64).view(-1, 1, 1)
    cy = torch.as_tensor(np.nan_to_num(centroid[:, 1], nan=-100.0), dtype=torch.float64).view(-1, 1, 1)
    if shape == "triangle":  # the triangle's area centroid lies radius/3 below its bounding-box centre
        cy = cy - OBJECT_RADIUS / 3
    ys = (torch.arange(h * SUPERSAMPLE, dtype=torch.float64) + 0.5) / SUPERSAMPLE
    xs = (torch.arange(w * SUPERSAMPLE, dtype=torch.float64) + 0.5) / SUPERSAMPLE
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    cover = shape_coverage(shape, px, py, cx, cy, OBJECT_RADIUS)
    return torch.nn.functional.avg_pool2d(cover.unsqueeze(1), SUPERSAMPLE).squeeze(1).numpy()


def _gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [..., H, W] images with zero padding (the template's background is 0)."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    flat = torch.as_tensor(images.reshape(-1, 1, *images.shape[-2:]))
    k = torch.as_tensor(kernel)
    flat = torch.nn.functional.conv2d(flat, k.view(1, 1, 1, -1), padding=(0, radius))
    flat = torch.nn.functional.conv2d(flat, k.view(1, 1, -1, 1), padding=(radius, 0))
    return flat.numpy().reshape(images.shape)


def _as_coverage(images: np.ndarray) -> np.ndarray:
    """Normalise [..., H, W] images the way segment() normalises frames: divide by the top-K mean, clip to 1."""
    flat = images.reshape(*images.shape[:-2], -1)
    peak = np.sort(flat, axis=-1)[..., -CONTRAST_TOP_K:].mean(axis=-1)
    return np.clip(images / np.maximum(peak, 1e-8)[..., None, None], 0, 1)


def _soft_iou(obj: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """Soft IoU sum(min)/sum(max) of [T, H, W] coverage with [..., T, H, W] templates, over the last two axes."""
    inter = np.minimum(obj, templates).sum(axis=(-2, -1))
    union = np.maximum(obj, templates).sum(axis=(-2, -1))
    return inter / np.maximum(union, 1e-8)


def _shape_fit(seg: _Segmentation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per shape and frame: soft IoU with the sharp ideal [S, T] and with its best blurred version [S, T]; and the
    edge softness relative to the best sharp template [T].

    The sharp IoU measures fidelity (VQ); the blurred IoU classifies the shape (TA) so that a soft but readable
    square still counts as a square.
    """
    obj = seg.cover * seg.main
    templates = np.stack([ideal_coverage(s, seg.centroid, obj.shape[1:]) for s in SHAPES])  # [S, T, H, W]
    sharp = _soft_iou(obj, templates)
    blurred = np.stack([_soft_iou(obj, _as_coverage(_gaussian_blur(templates, s))) for s in CLASSIFY_SIGMAS])
    readable = np.maximum(sharp, blurred.max(axis=0))
    sharp = np.where(seg.valid[None], sharp, 0.0)
    readable = np.where(seg.valid[None], readable, 0.0)
    best = templates[sharp.argmax(axis=0), np.arange(obj.shape[0])]
    soft_obj = (4 * obj * (1 - obj)).sum(axis=(1, 2))
    soft_ref = (4 * best * (1 - best)).sum(axis=(1, 2))
    softness = np.where(seg.valid, soft_obj / np.maximum(soft_ref, 1e-8), np.inf)
    return sharp, readable, softness


def visual_quality(
    seg: _Segmentation, iou: np.ndarray, softness: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """VQ sub-scores (shape fidelity, sharpness, clean background, no fragments) and their raw measurements."""
    far = ~_dilate(_dilate(seg.main))  # background: more than three pixels from the object's mask
    residual = np.linalg.norm(seg.x - seg.bg_frame[:, None, None, :], axis=-1)
    bg_rms = math.sqrt(float((residual[far] ** 2).mean())) if far.any() else 1.0
    fragments = np.where(seg.valid, seg.fragment_ratio, np.inf)
    best_iou = iou.max(axis=0)
    scores = {
        "vq_shape": float(np.mean(smoothstep(best_iou, IOU_BAD, IOU_GOOD))),
        "vq_sharpness": float(np.mean(smoothstep(softness, SOFT_BAD, SOFT_GOOD))),
        "vq_background": smoothstep(bg_rms, BG_BAD, BG_GOOD),
        "vq_fragments": float(np.mean(smoothstep(fragments, FRAG_BAD, FRAG_GOOD))),
    }
    valid = seg.valid
    raw = {  # medians over frames with an object; the "bad" end of each map when there is none
        "iou": float(best_iou.mean()),
        "softness": float(np.median(softness[valid])) if valid.any() else SOFT_BAD,
        "background_rms": bg_rms,
        "fragment_ratio": float(np.median(fragments[valid])) if valid.any() else FRAG_BAD,
    }
    return scores, raw


def robust_velocity(centroid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Constant-velocity fit (velocity [2], per-frame residual [T]) of a centroid track; None if too few frames.

    Siegel's repeated median (per frame the median slope to every other frame, then the median over frames) finds
    the line even when nearly half the frames are off it (a teleported range, held frames); a least-squares refit
    on the frames within INLIER_PX of that line then averages jitter down. The residual is about the final line.
    """
    t = np.flatnonzero(~np.isnan(centroid[:, 0]))
    if len(t) < MIN_TRACK_FRAMES:
        return None
    pos = centroid[t]
    gap = (t[None, :] - t[:, None]).astype(np.float64)
    np.fill_diagonal(gap, np.nan)
    slopes = (pos[None, :, :] - pos[:, None, :]) / gap[..., None]  # [n, n, 2]
    velocity = np.median(np.nanmedian(slopes, axis=1), axis=0)
    intercept = np.median(pos - velocity * t[:, None], axis=0)
    inlier = np.linalg.norm(pos - (intercept + velocity * t[:, None]), axis=1) <= INLIER_PX
    if inlier.sum() >= MIN_TRACK_FRAMES:
        design = np.stack([np.ones(inlier.sum()), t[inlier]], axis=1)
        coef = np.linalg.lstsq(design, pos[inlier], rcond=None)[0]
        intercept, velocity = coef[0], coef[1]
    residual = np.full(len(centroid), np.nan)
    residual[t] = np.linalg.norm(pos - (intercept + velocity * t[:, None]), axis=1)
    return velocity, residual


def motion_quality(
    seg: _Segmentation, fit: tuple[np.ndarray, np.ndarray] | None, attrs: PromptAttributes,
    track: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """MQ sub-scores (constant-velocity track, stable size, no flicker, no stalls) and their raw measurements.

    `track` is the object's centre per frame [T, 2] (default: the segmentation's centroids).
    """
    track = seg.centroid if track is None else track
    valid = seg.valid
    both = valid[1:] & valid[:-1]
    if fit is None or not both.any():
        return {"mq_track": 0.0, "mq_size": 0.0, "mq_flicker": 0.0, "mq_freeze": 0.0}, {}
    track_rms = math.sqrt(float(np.nanmean(fit[1] ** 2)))
    area = seg.area[valid]
    size_cv = float(area.std() / max(area.mean(), 1e-8))
    log_step = np.abs(np.diff(np.log(np.maximum(seg.core_contrast, 1e-3))))[both]
    bg_step = np.linalg.norm(np.diff(seg.bg_frame, axis=0), axis=1)
    hue_step = 1 - (seg.hue[1:] * seg.hue[:-1]).sum(axis=1)
    flicker = float(log_step.mean() + bg_step.mean() + hue_step[both].mean())
    steps = np.linalg.norm(np.diff(track, axis=0), axis=1)[both]
    stalls = float((steps < STALL_RATIO * SPEEDS[attrs.speed]).mean())
    present = valid.mean()  # frames without an object count against every motion sub-score
    scores = {
        "mq_track": smoothstep(track_rms, TRACK_BAD, TRACK_GOOD) * present,
        "mq_size": smoothstep(size_cv, SIZE_BAD, SIZE_GOOD) * present,
        "mq_flicker": smoothstep(flicker, FLICKER_BAD, FLICKER_GOOD) * present,
        "mq_freeze": smoothstep(stalls, STALL_BAD, STALL_GOOD) * present,
    }
    raw = {"track_rms": track_rms, "size_cv": size_cv, "flicker": flicker, "stall_fraction": stalls,
           "speed": float(np.linalg.norm(fit[0]))}
    return scores, raw


def text_alignment(
    seg: _Segmentation, iou: np.ndarray, fit: tuple[np.ndarray, np.ndarray] | None, attrs: PromptAttributes
) -> tuple[dict[str, float], dict[str, str]]:
    """TA sub-scores (softmax probability of the prompt's value per attribute) and the detected values."""
    probs: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    any_object = bool(seg.valid.any())

    colour_names = list(COLOURS)
    offsets = np.array([COLOURS[c] for c in colour_names]) - seg.bg
    cosines = offsets @ seg.direction / np.maximum(np.linalg.norm(offsets, axis=1), 1e-8)
    probs["colour"], names["colour"] = _softmax(cosines / COLOUR_TEMP), colour_names

    mean_iou = iou[:, seg.valid].mean(axis=1) if any_object else np.zeros(len(SHAPES))
    probs["shape"], names["shape"] = _softmax(mean_iou / SHAPE_TEMP), list(SHAPES)

    direction_names = list(DIRECTIONS)
    velocity = fit[0] if fit is not None else np.zeros(2)
    along = np.array([DIRECTIONS[d] for d in direction_names]) @ velocity
    probs["direction"], names["direction"] = _softmax(along / DIRECTION_TEMP), direction_names

    speed_names = list(SPEEDS)
    gap = np.abs(np.array([SPEEDS[s] for s in speed_names]) - np.linalg.norm(velocity))
    probs["speed"], names["speed"] = _softmax(-gap / SPEED_TEMP), speed_names

    bg_names = list(BACKGROUNDS)
    bg_dist = np.linalg.norm(np.array([BACKGROUNDS[b] for b in bg_names]) - seg.bg, axis=1)
    probs["background"], names["background"] = _softmax(-bg_dist / BACKGROUND_TEMP), bg_names

    wanted = {"colour": attrs.colour, "shape": attrs.shape, "direction": attrs.direction,
              "speed": attrs.speed, "background": attrs.background}
    scores, detected = {}, {}
    for key, p in probs.items():
        usable = key == "background" or (any_object and (fit is not None or key in ("colour", "shape")))
        scores[f"ta_{key}"] = float(p[names[key].index(wanted[key])]) if usable else 0.0
        detected[key] = names[key][int(np.argmax(p))] if usable else "none"
    if detected["speed"] == "":
        detected["speed"] = "normal"
    return scores, detected


def recentre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roll each frame of [T, H, W, 3] cyclically so the object's circular mean sits at the centre.

    Returns the rolled frames and the integer shifts [T, 2] as (dx, dy): a pixel at x moved to x + dx (mod W).
    The object is whatever differs from the frame's median colour (it covers well under half the frame);
    weights are distances above a quarter of the frame's largest one, so faint noise does not pull the mean.
    """
    t, h, w, _ = x.shape
    median = np.median(x.reshape(t, -1, 3), axis=1)
    dist = np.linalg.norm(x - median[:, None, None, :], axis=-1)  # [T, H, W]
    weight = np.maximum(dist - 0.25 * dist.max(axis=(1, 2), keepdims=True), 0.0)
    shifts = np.zeros((t, 2), dtype=np.int64)
    for axis, n in ((2, w), (1, h)):  # x then y
        phase = np.exp(2j * np.pi * (np.arange(n) + 0.5) / n)
        profile = weight.sum(axis=3 - axis)  # [T, n]: mass per column (x) or per row (y)
        angle = np.angle(profile @ phase)
        mean = np.mod(angle, 2 * np.pi) * n / (2 * np.pi)
        shift = np.round(n / 2 - mean).astype(np.int64)
        shifts[:, 2 - axis] = np.where(profile.sum(axis=1) > 0, np.mod(shift, n), 0)
    rolled = np.stack([np.roll(f, (int(dy), int(dx)), axis=(0, 1)) for f, (dx, dy) in zip(x, shifts, strict=True)])
    return rolled, shifts


def unwrap_track(centroid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A torus track [T, 2] (NaN where no object) as a continuous line: each step between frames with an object
    is taken modulo the frame size into [-size/2, size/2), so a wrap counts as the short step it is."""
    out = centroid.copy()
    period = np.array([size[1], size[0]], dtype=np.float64)  # (W, H) for (x, y)
    seen = np.flatnonzero(~np.isnan(centroid[:, 0]))
    for prev, cur in zip(seen[:-1], seen[1:], strict=True):
        step = np.mod(centroid[cur] - centroid[prev] + period / 2, period) - period / 2
        out[cur] = out[prev] + step
    return out


def score_video(frames: np.ndarray | torch.Tensor, prompt: str, world: str = TOY_WORLD) -> BenchScore:
    """Score one video against its prompt (raises PromptError for a prompt outside the toy grammar).

    `world="long"`: the frames wrap around their edges (see the module docstring).
    """
    attrs = parse_prompt(prompt)
    x = to_frames(frames)
    shifts = None
    if check_world(world) != TOY_WORLD:
        x, shifts = recentre(x)
    seg = segment(x)
    iou, readable, softness = _shape_fit(seg)
    track = seg.centroid
    if shifts is not None:
        size = x.shape[1:3]
        period = np.array([size[1], size[0]], dtype=np.float64)
        track = unwrap_track(np.mod(seg.centroid - shifts, period), size)
    fit = robust_velocity(track)
    vq, vq_raw = visual_quality(seg, iou, softness)
    mq, mq_raw = motion_quality(seg, fit, attrs, track)
    ta, detected = text_alignment(seg, readable, fit, attrs)
    axes = {name: float(np.mean(list(m.values()))) for name, m in (("vq", vq), ("mq", mq), ("ta", ta))}
    want_speed = attrs.speed or "normal"
    return BenchScore(
        vq=axes["vq"],
        mq=axes["mq"],
        ta=axes["ta"],
        total=float(np.mean(list(axes.values()))),
        metrics={k: float(v) for k, v in {**vq, **mq, **ta}.items()},
        colour_ok=detected["colour"] == attrs.colour,
        shape_ok=detected["shape"] == attrs.shape,
        direction_ok=detected["direction"] == attrs.direction,
        speed_ok=detected["speed"] == want_speed,
        background_ok=detected["background"] == attrs.background,
        coherent=bool(seg.valid.all() and (seg.blobs == 1).all()),
        detected=detected,
        raw={k: float(v) for k, v in {**vq_raw, **mq_raw}.items()},
    )


CHECKS = ("colour_ok", "shape_ok", "direction_ok", "speed_ok", "background_ok", "coherent")


def summarize(scores: list[BenchScore]) -> dict[str, float]:
    """Means of the axis scores and sub-metrics, and accuracy of every attribute check, over videos."""
    if not scores:
        raise ValueError("no videos to summarize")
    out: dict[str, float] = {"count": float(len(scores))}
    for key in ("vq", "mq", "ta", "total"):
        out[key] = float(np.mean([getattr(s, key) for s in scores]))
    for key in scores[0].metrics:
        out[key] = float(np.mean([s.metrics[key] for s in scores]))
    for key in CHECKS:
        out[key] = float(np.mean([getattr(s, key) for s in scores]))
    return out


def score_batch(
    frames: list[np.ndarray | torch.Tensor], prompts: list[str], world: str = TOY_WORLD
) -> dict[str, float]:
    """Score many videos; return mean axis scores, mean sub-metrics and per-attribute accuracy."""
    if len(frames) != len(prompts):
        raise ValueError(f"got {len(frames)} videos but {len(prompts)} prompts; pass one prompt per video")
    return summarize([score_video(f, p, world) for f, p in zip(frames, prompts, strict=True)])


SEGMENT_FRAMES = NUM_FRAMES  # ToyBench over time scores segments as long as the clips it was calibrated on


def score_segments(
    frames: np.ndarray | torch.Tensor, prompt: str, world: str = TOY_WORLD, segment_frames: int = SEGMENT_FRAMES
) -> list[BenchScore]:
    """ToyBench of each whole `segment_frames`-frame segment of one video, in order (a shorter tail is left out)."""
    x = to_frames(frames)
    count = len(x) // segment_frames
    if count == 0:
        raise ValueError(f"a video of {len(x)} frames holds no {segment_frames}-frame segment; use more frames")
    return [score_video(x[i * segment_frames : (i + 1) * segment_frames], prompt, world) for i in range(count)]


def curve(
    frames: list[np.ndarray | torch.Tensor], prompts: list[str], world: str = TOY_WORLD,
    segment_frames: int = SEGMENT_FRAMES,
) -> list[dict[str, float]]:
    """ToyBench over time: per segment index, the `summarize` of that segment over all videos (each row also has
    `segment` and `first_frame`). Videos may differ in length; a segment averages the videos that reach it."""
    if len(frames) != len(prompts):
        raise ValueError(f"got {len(frames)} videos but {len(prompts)} prompts; pass one prompt per video")
    per_video = [score_segments(f, p, world, segment_frames) for f, p in zip(frames, prompts, strict=True)]
    rows = []
    for i in range(max(len(s) for s in per_video)):
        summary = summarize([s[i] for s in per_video if len(s) > i])
        rows.append({"segment": float(i), "first_frame": float(i * segment_frames), **summary})
    return rows


def evaluate_dir(path: str | Path, world: str = TOY_WORLD) -> dict[str, Any]:
    """Score a `stream-r1 generate` output dir (manifest.json + npz files): {"summary": ..., "rows": [...]}, and
    ToyBench over time ("over_time": one summary per 12-frame segment) when the videos are longer than that."""
    root = Path(path)
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found; point at a directory written by `stream-r1 generate`")
    rows, scores, videos, prompts = [], [], [], []
    for entry in json.loads(manifest_path.read_text()):
        with np.load(root / entry["npz"]) as data:
            frames = data["frames"]
        score = score_video(frames, entry["prompt"], world)
        scores.append(score)
        videos.append(frames)
        prompts.append(entry["prompt"])
        rows.append({"index": entry["index"], "prompt": entry["prompt"], "seed": entry.get("seed"), **score.as_dict()})
    result: dict[str, Any] = {"summary": summarize(scores), "rows": rows}
    if max(len(v) for v in videos) > SEGMENT_FRAMES:
        result["over_time"] = {"segment_frames": SEGMENT_FRAMES, "world": world, "model": curve(videos, prompts, world)}
    return result
