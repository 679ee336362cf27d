"""What a distillation run shows while it trains: ToyBench scalars and sample grids in RUN_DIR.

ToyBench is measured here on held-out prompts and only logged; it never reaches a loss.
For Stream-R1 runs the grid also shows, beside the last training rollout's frames, its fused
saliency and its W_intra weight map as heat maps.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from matplotlib import colormaps

from ..diffusion.sampler import stream_chunks
from ..generation.pipeline import to_uint8
from ..generation.video_io import frame_strip
from ..toyworld.bench import score_batch
from ..toyworld.prompts import split_prompts
from ..toyworld.render import TOY_WORLD


def heat(maps: torch.Tensor, size: int) -> np.ndarray:
    """[F, h, w] non-negative map -> uint8 [F, size, size, 3] inferno heat map (normalised per video)."""
    m = maps.float()
    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-8)
    rgb = colormaps["inferno"](m.numpy())[..., :3]
    up = size // m.shape[-1]
    return (rgb * 255).astype(np.uint8).repeat(up, axis=1).repeat(up, axis=2)


@torch.no_grad()
def heldout_videos(d) -> tuple[list[np.ndarray], list[str]]:
    """The EMA student's `eval_videos` held-out videos (uint8 [T, H, W, 3]), the same prompts and noise every time."""
    held = split_prompts("heldout")
    prompts = [held[i * len(held) // d.s.eval_videos].text for i in range(d.s.eval_videos)]
    gens = [torch.Generator().manual_seed(10_000 + i) for i in range(len(prompts))]
    shape = d.latent_shape(len(prompts))
    fpc = d.ema.cfg.frames_per_chunk
    chunks = list(stream_chunks(d.ema, shape[2] // fpc, (*shape[:2], fpc, *shape[3:]), d.sigmas,
                                d.text(prompts), gens))
    return [to_uint8(v).cpu().numpy() for v in d.codec.decode(torch.cat(chunks, dim=2))], prompts


@torch.no_grad()
def evaluate_student(d, writer, step: int | None = None, heldout: tuple | None = None) -> dict[str, float]:
    """Stream held-out videos with the EMA student (or take `heldout_videos(d)` given), log ToyBench, write a grid."""
    step = d.step if step is None else step
    videos, prompts = heldout if heldout is not None else heldout_videos(d)
    summary = score_batch(videos, prompts, d.component_metadata.get("world", TOY_WORLD))
    for k in ("vq", "mq", "ta", "total"):
        writer.add_scalar(f"toybench/{k}", summary[k], step)
    rows = videos[:6]
    labels = [f"held-out {i + 1}" for i in range(len(rows))]
    last = getattr(d.reweighter, "last", {}) if d.reweighter is not None else {}
    if "w_intra" in last:
        size = videos[0].shape[1]
        for i in range(min(3, last["w_intra"].shape[0])):
            rows.append(to_uint8(last["pixels"][i]).numpy())
            rows.append(heat(last["saliency"][i], size))
            rows.append(heat(last["w_intra"][i, 0], size))
            labels += [f"rollout {i + 1}", f"  saliency {i + 1}", f"  W_intra {i + 1}"]
    grid = frame_strip(rows, scale=4, labels=labels)
    out = Path(d.run_dir) / "samples"
    out.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out / f"step_{step:06d}.png", grid)
    writer.add_image("samples", grid, step, dataformats="HWC")
    return summary
