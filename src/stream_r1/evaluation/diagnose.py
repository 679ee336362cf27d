"""Where in the stream a generator's motion breaks, and where Stream-R1's weights land (docs/results.md, "Session 5").

Two profiles over the frames of one generator's videos:
- motion: per frame gap, the object's step length over the prompt's speed and the fraction of stalls (a step
  under ToyBench's stall ratio), with the chunk boundaries marked, so a streaming defect shows where it sits;
- weights: the reward's per-axis pixel saliency by frame (mean 1) and the Intra-Perplexity temporal weight w_t
  (method.md §3.3-3.4) that training would give these very videos, computed by the trainer's own reweighter.

Like `reward-reliability` this only reads ToyBench to explain a result; nothing here trains anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..generation.pipeline import VideoPipeline, generate_uint8
from ..reward.base import AXES, videos_to_pixels
from ..reward.toy import load_toy_reward
from ..reweight.reweighter import StreamR1Reweighter
from ..reweight.settings import ReweightSettings
from ..toyworld.bench import STALL_RATIO, segment
from ..toyworld.prompts import SPEEDS, eval_prompts, parse_prompt
from .evaluate import ground_truth_uint8

GROUND_TRUTH = "ground-truth"


def motion_profile(videos: list[np.ndarray], prompts: list[str]) -> dict[str, list[float]]:
    """Per frame gap: mean step / prompt speed and stall fraction (frames without an object are skipped)."""
    steps = []
    for video, prompt in zip(videos, prompts, strict=True):
        centroid = segment(video.astype(np.float64) / 255.0).centroid
        speed = SPEEDS[parse_prompt(prompt).speed]
        steps.append(np.linalg.norm(np.diff(centroid, axis=0), axis=1) / speed)
    steps = np.array(steps)  # [N, T-1], NaN where a frame has no object
    present = ~np.isnan(steps)
    stalls = np.where(present, np.nan_to_num(steps) < STALL_RATIO, False)
    return {
        "step_over_speed": np.nanmean(steps, axis=0).tolist(),
        "stall_fraction": (stalls.sum(0) / np.maximum(present.sum(0), 1)).tolist(),
    }


def weight_profile(videos: list[np.ndarray], prompts: list[str], reward_name: str, reweight: dict,
                   codec) -> dict[str, list[float]]:
    """Per frame: each axis' reward saliency (mean 1 per video, then averaged) and the temporal weight w_t."""
    settings = ReweightSettings.from_dict({**reweight, "intra": True})
    reweighter = StreamR1Reweighter(load_toy_reward(reward_name), codec.decode, settings)
    latents = codec.encode(videos_to_pixels(videos))
    _, w_intra, _ = reweighter(latents, prompts, step=0)  # one reward forward and one backward per axis
    per_frame = reweighter.last["axis_frame_saliency"]  # [B, A, T]
    per_frame = per_frame / per_frame.mean(dim=2, keepdim=True).clamp_min(1e-12)
    out = {f"saliency_{a}": per_frame[:, i].mean(0).tolist() for i, a in enumerate(AXES)}
    # W_intra = w_t·w_s / mean with w_s of mean 1 in every frame, so its frame means are w_t (method.md §3.4)
    out["temporal_weight"] = w_intra.mean(dim=(1, 3, 4)).mean(0).tolist()
    return out


def diagnose(checkpoints: list[str], reward: str, reweight: dict, split: str = "train", subset: int | None = 48,
             per_prompt: int = 1, seed: int = 0, frames: int = 12, steps: int | None = None,
             device: str = "cpu") -> dict:
    """Motion and weight profiles for each checkpoint (or `ground-truth`) on the same prompts and seeds.

    `steps` overrides every model's sampling step count (None: each checkpoint's own schedule); the
    videos are generated on `device`, the toy reward's weights computed on the CPU.
    """
    models = [name for name in checkpoints if name != GROUND_TRUTH]
    if not models:
        raise ValueError("diagnose needs at least one model checkpoint besides ground-truth (its codec sets the "
                         "latent grid of the weights); add e.g. --checkpoint toy-dmd")
    pipes = {name: VideoPipeline.from_checkpoint(name, device) for name in models}
    prompts = eval_prompts(split, per_prompt, subset)
    result: dict = {"split": split, "videos": len(prompts), "reward": reward, "steps": steps, "profiles": {}}
    for name in checkpoints:
        pipe = pipes.get(name)
        if pipe is None:
            videos = ground_truth_uint8(prompts, seed)
        else:
            videos, _ = generate_uint8(pipe, prompts, seed, frames, steps=steps)
        profile = motion_profile(videos, prompts)
        with torch.enable_grad():
            profile.update(weight_profile(videos, prompts, reward, reweight, (pipe or pipes[models[0]]).codec))
        if pipe is not None and pipe.model.cfg.causal:
            profile["frames_per_chunk"] = pipe.frames_per_chunk
        result["profiles"][name] = profile
    return result


def legend_label(name: str) -> str:
    """A checkpoint file's name in a legend: its two parent folders (runs/x/runs/ROW/seed_0/student.safetensors
    -> ROW/seed_0), which tell compare runs apart where the full path would push the legend off the figure."""
    path = Path(name)
    if path.suffix in (".safetensors", ".pt") and len(path.parts) > 2:
        return "/".join(path.parent.parts[-2:])
    return name


def plot_profiles(result: dict, path: str | Path) -> None:
    """Two panels: step/speed per frame gap (chunk boundaries dashed) and the temporal weight per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_w) = plt.subplots(1, 2, figsize=(11, 4.2))
    chunk = next((p["frames_per_chunk"] for p in result["profiles"].values() if "frames_per_chunk" in p), None)
    for name, p in result["profiles"].items():
        gaps = np.arange(len(p["step_over_speed"])) + 0.5
        ax_m.plot(gaps, p["step_over_speed"], marker="o", label=legend_label(name))
        ax_w.plot(np.arange(len(p["temporal_weight"])), p["temporal_weight"], marker="o", label=legend_label(name))
    if chunk:
        n = len(next(iter(result["profiles"].values()))["temporal_weight"])
        for b in range(chunk, n, chunk):
            for ax in (ax_m, ax_w):
                ax.axvline(b - 0.5, color="gray", ls="--", lw=0.8)
    ax_m.axhline(STALL_RATIO, color="red", lw=0.8, ls=":", label=f"stall ({STALL_RATIO:g}x speed)")
    ax_m.set(xlabel="frame (gap between frame t and t+1 at t+0.5)", ylabel="object step / prompt speed",
             title="Where motion breaks (chunk boundaries dashed)")
    ax_w.set(xlabel="frame", ylabel="Intra-Perplexity temporal weight w_t",
             title=f"Where Stream-R1's weight lands ({result['reward']})")
    handles, labels = ax_m.get_legend_handles_labels()  # one legend for both panels, below them
    ncol = min(len(labels), 3)  # wrap: five entries in one row ran off both edges
    legend_rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(f"{result['videos']} videos, {result['split']} split", fontsize=9)
    fig.tight_layout(rect=(0, 0.045 * legend_rows + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
