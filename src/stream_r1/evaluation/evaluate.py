"""Evaluation with ToyBench: a checkpoint's videos on held-out prompts next to ground-truth renders.

ToyBench only measures; nothing here feeds back into training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..common.weights import load_state_dict, resolve_checkpoint
from ..generation.pipeline import VideoPipeline, generate_uint8, to_uint8
from ..toyworld.bench import SEGMENT_FRAMES, curve, score_batch
from ..toyworld.prompts import eval_prompts, parse_prompt
from ..toyworld.render import NUM_FRAMES, TOY_WORLD, check_world, sample_world_videos

AXES = ("vq", "mq", "ta", "total")
CHECKS = ("colour_ok", "shape_ok", "direction_ok", "speed_ok", "background_ok", "coherent")


def ground_truth_uint8(
    prompts: list[str], seed: int, world: str = TOY_WORLD, frames: int = NUM_FRAMES
) -> list[np.ndarray]:
    """Rendered ground truth for the same prompts (one seeded placement each) in the given world."""
    gen = torch.Generator().manual_seed(seed)
    videos, _ = sample_world_videos([parse_prompt(p) for p in prompts], gen, world, frames)
    return [to_uint8(v).numpy() for v in videos]


def checkpoint_world(checkpoint: str) -> str:
    """The toy world a checkpoint was trained in (its metadata's `world`; checkpoints without one: 'toy')."""
    _, meta = load_state_dict(resolve_checkpoint(checkpoint))
    return json.loads(meta.get("extra", "{}")).get("world", TOY_WORLD)


def over_time(videos: list[np.ndarray], truth: list[np.ndarray], prompts: list[str], world: str) -> dict:
    """ToyBench over time of model and ground-truth videos: per 12-frame segment the summaries and the per-axis
    ratio (None where ground truth scores 0, as in the toy world once the object has left the frame)."""
    model, gt = curve(videos, prompts, world), curve(truth, prompts, world)
    ratio = [
        {"segment": m["segment"], "first_frame": m["first_frame"],
         **{k: (m[k] / g[k] if g[k] > 0 else None) for k in AXES}}
        for m, g in zip(model, gt, strict=True)
    ]
    return {"segment_frames": SEGMENT_FRAMES, "world": world, "model": model, "ground_truth": gt, "ratio": ratio}


def evaluate_checkpoint(
    checkpoint: str, split: str = "heldout", per_prompt: int = 2, seed: int = 0, batch_size: int = 32,
    subset: int | None = None, frames: int = NUM_FRAMES, world: str | None = None,
    device: str = "cpu", dtype: str | None = None,
) -> dict:
    """ToyBench summary of a checkpoint, of ground truth, and their per-axis ratio; videos longer than one
    segment also get ToyBench over time (`over_time`). Generated on `device` in `dtype`; `world` defaults to the
    checkpoint's own."""
    world = check_world(world or checkpoint_world(checkpoint))
    prompts = eval_prompts(split, per_prompt, subset)
    pipe = VideoPipeline.from_checkpoint(checkpoint, device, dtype)
    videos, seconds = generate_uint8(pipe, prompts, seed, frames=frames, batch_size=batch_size)
    model = score_batch(videos, prompts, world)
    truth_videos = ground_truth_uint8(prompts, seed, world, frames)
    truth = score_batch(truth_videos, prompts, world)
    result = {
        "checkpoint": str(checkpoint),
        "split": split,
        "videos": len(prompts),
        "seconds_per_video": seconds,
        "model": model,
        "ground_truth": truth,
        "ratio": {k: model[k] / truth[k] for k in AXES},
    }
    if world != TOY_WORLD or frames != NUM_FRAMES:
        result.update(world=world, frames=frames)
    if frames > SEGMENT_FRAMES:
        result["over_time"] = over_time(videos, truth_videos, prompts, world)
    return {**result, "_videos": videos, "_truth": truth_videos, "_prompts": prompts}


def save_curve_plot(path: Path, over: dict, title: str = "") -> None:
    """A PNG of ToyBench over time: VQ, MQ and TA per segment, model (solid) and ground truth (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    x = [row["first_frame"] for row in over["model"]]
    for axis, colour in (("vq", "tab:blue"), ("mq", "tab:orange"), ("ta", "tab:green")):
        ax.plot(x, [r[axis] for r in over["model"]], "-o", color=colour, label=f"{axis.upper()} model", ms=3)
        if over.get("ground_truth"):
            ax.plot(x, [r[axis] for r in over["ground_truth"]], "--", color=colour, label=f"{axis.upper()} truth")
    ax.set_xlabel(f"first frame of the {over['segment_frames']}-frame segment")
    ax.set_ylabel("ToyBench score")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown_table(rows: dict[str, dict]) -> str:
    """A table of ToyBench axes and attribute accuracies, one row per named summary."""
    names = [k.upper() for k in AXES] + [c.replace("_ok", "") for c in CHECKS]
    lines = ["| | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(AXES) + len(CHECKS))]
    for name, s in rows.items():
        cells = [f"{s[k]:.3f}" for k in AXES] + [f"{100 * s[c]:.0f}%" for c in CHECKS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def over_time_table(over: dict) -> str:
    """A table of ToyBench over time: per segment the model's VQ/MQ/TA, and their ratio to ground truth if known."""
    ratio = over.get("ratio")
    head = "| first frame | VQ | MQ | TA | colour | shape | direction |"
    head += " VQ / GT | MQ / GT | TA / GT |" if ratio else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, row in enumerate(over["model"]):
        cells = [f"{int(row['first_frame'])}"] + [f"{row[k]:.3f}" for k in ("vq", "mq", "ta")]
        cells += [f"{100 * row[c]:.0f}%" for c in ("colour_ok", "shape_ok", "direction_ok")]
        if ratio:
            cells += ["–" if ratio[i][k] is None else f"{ratio[i][k]:.3f}" for k in ("vq", "mq", "ta")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_strip(path: Path, videos: list[np.ndarray], scale: int = 4) -> None:
    """A PNG with one row of frames per video."""
    import imageio.v3 as iio

    from ..generation.video_io import frame_strip

    iio.imwrite(path, frame_strip(videos, scale=scale))


def save_comparison_strip(path: Path, result: dict, rows: int = 6) -> list[str]:
    """A PNG of `rows` prompts spread over the evaluated set, each video above its ground truth; returns the prompts."""
    videos, truth, prompts = result["_videos"], result["_truth"], result["_prompts"]
    rows = min(rows, len(prompts))
    picks = [i * len(prompts) // rows for i in range(rows)]
    save_strip(path, [v for i in picks for v in (videos[i], truth[i])])
    return [prompts[i] for i in picks]
