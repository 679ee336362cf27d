"""Evaluation with ToyBench: a checkpoint's videos on held-out prompts next to ground-truth renders.

ToyBench only measures; nothing here feeds back into training.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from .pipeline import VideoPipeline, to_uint8
from .toyworld.bench import score_batch
from .toyworld.prompts import parse_prompt, split_prompts
from .toyworld.render import NUM_FRAMES, sample_videos

AXES = ("vq", "mq", "ta", "total")
CHECKS = ("colour_ok", "shape_ok", "direction_ok", "speed_ok", "background_ok", "coherent")


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


def generate_uint8(
    pipe: VideoPipeline, prompts: list[str], seed: int, frames: int = NUM_FRAMES, batch_size: int = 32,
    steps: int | None = None,
) -> tuple[list[np.ndarray], float]:
    """Videos as uint8 [T, H, W, 3] (video i seeded with seed + i) and the seconds per video.

    `steps` overrides the sampler's step count (None: the checkpoint's own schedule).
    """
    videos, start = [], time.perf_counter()
    for b in range(0, len(prompts), batch_size):
        batch = prompts[b : b + batch_size]
        out = pipe.generate(batch, frames, seed + b, steps)
        videos += [to_uint8(v).numpy() for v in out]
    return videos, (time.perf_counter() - start) / max(1, len(prompts))


def ground_truth_uint8(prompts: list[str], seed: int) -> list[np.ndarray]:
    """Rendered ground truth for the same prompts (one seeded placement each)."""
    gen = torch.Generator().manual_seed(seed)
    videos, _ = sample_videos([parse_prompt(p) for p in prompts], gen)
    return [to_uint8(v).numpy() for v in videos]


def evaluate_checkpoint(
    checkpoint: str, split: str = "heldout", per_prompt: int = 2, seed: int = 0, batch_size: int = 32,
    subset: int | None = None, device: str = "cpu", dtype: str | None = None,
) -> dict:
    """ToyBench summary of a checkpoint (generating on `device` in `dtype`), of ground truth, and their ratio."""
    prompts = eval_prompts(split, per_prompt, subset)
    pipe = VideoPipeline.from_checkpoint(checkpoint, device, dtype)
    videos, seconds = generate_uint8(pipe, prompts, seed, batch_size=batch_size)
    model = score_batch(videos, prompts)
    truth_videos = ground_truth_uint8(prompts, seed)
    truth = score_batch(truth_videos, prompts)
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "videos": len(prompts),
        "seconds_per_video": seconds,
        "model": model,
        "ground_truth": truth,
        "ratio": {k: model[k] / truth[k] for k in AXES},
        "_videos": videos,
        "_truth": truth_videos,
        "_prompts": prompts,
    }


def markdown_table(rows: dict[str, dict]) -> str:
    """A table of ToyBench axes and attribute accuracies, one row per named summary."""
    names = [k.upper() for k in AXES] + [c.replace("_ok", "") for c in CHECKS]
    lines = ["| | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(AXES) + len(CHECKS))]
    for name, s in rows.items():
        cells = [f"{s[k]:.3f}" for k in AXES] + [f"{100 * s[c]:.0f}%" for c in CHECKS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_strip(path: Path, videos: list[np.ndarray], scale: int = 4) -> None:
    """A PNG with one row of frames per video."""
    import imageio.v3 as iio

    from .video_io import frame_strip

    iio.imwrite(path, frame_strip(videos, scale=scale))


def save_comparison_strip(path: Path, result: dict, rows: int = 6) -> list[str]:
    """A PNG of `rows` prompts spread over the evaluated set, each video above its ground truth; returns the prompts."""
    videos, truth, prompts = result["_videos"], result["_truth"], result["_prompts"]
    rows = min(rows, len(prompts))
    picks = [i * len(prompts) // rows for i in range(rows)]
    save_strip(path, [v for i in picks for v in (videos[i], truth[i])])
    return [prompts[i] for i in picks]
