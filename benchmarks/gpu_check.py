"""One-GPU check of paper-scale speed and memory (issue 16, deliverable 8); no downloaded weights needed.

1. Streaming: a Wan-1.3B-shaped random causal student (our DiT, bf16) generates 832x480 video, 21 latent frames
   in chunks of 3, 4 denoising steps a chunk, through the KV cache -> frames per second and first-chunk latency.
2. Memory: one training step (generator and critic) of the paper preset at reduced depth with random weights of
   the real classes (the dry run's components widened to Wan-1.3B width) with activation checkpointing where the
   trainer has it -> peak memory (torch.cuda.max_memory_allocated on a GPU, live tensor bytes on the CPU) beside
   `stream-r1 memory`'s estimate for the same networks.

    python benchmarks/gpu_check.py --out docs/benchmarks            # on a machine with one GPU (< 5 min on an H200)
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/x  # smoke test in seconds
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from stream_r1.diffusion.sampler import denoising_sigmas, stream_chunks
from stream_r1.distill import components
from stream_r1.distill.memory import GB, LiveBytes, RunSettings, build_plan, live_tensors, spec_from_modules
from stream_r1.models.dit import DiT, DiTConfig

WAN_13B = dict(in_channels=16, out_channels=16, dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, text_dim=4096,
               freq_dim=256, patch_size=(1, 2, 2))
TINY = dict(WAN_13B, dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, freq_dim=32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def streaming(device: torch.device, tiny: bool) -> dict:
    shapes = TINY if tiny else WAN_13B
    h, w = (8, 12) if tiny else (60, 104)  # latent grid of 832x480 (8x spatial compression)
    cfg = DiTConfig(**shapes, causal=True, frames_per_chunk=3, local_attn_frames=9, sink_frames=3)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model = DiT(cfg).to(device=device, dtype=dtype).eval()
    sigmas = denoising_sigmas([1000, 750, 500, 250], 5.0).to(device)
    cond = torch.randn(1, 16 if tiny else 512, cfg.text_dim, device=device, dtype=dtype)
    chunks = 7

    def run() -> tuple[float, float]:
        gen = torch.Generator().manual_seed(0)
        sync(device)
        t0 = time.perf_counter()
        first = None
        with torch.inference_mode():
            for chunk in stream_chunks(model, chunks, (1, 16, 3, h, w), sigmas, cond, gen):
                chunk.float().sum().item()  # the chunk is really done
                if first is None:
                    first = time.perf_counter() - t0
        sync(device)
        return first, time.perf_counter() - t0

    run()  # warm-up (kernels, allocator)
    first, total = run()
    pixel_frames = 4 * (chunks * 3 - 1) + 1
    return {"latent": [16, chunks * 3, h, w], "dtype": str(dtype), "first_chunk_s": first, "total_s": total,
            "frames_per_second": pixel_frames / total, "pixel_frames": pixel_frames}


def training_step(device: torch.device, tiny: bool, reward: bool) -> dict:
    from stream_r1.common.config import load_config
    from stream_r1.distill.trainer import Distiller, DistillSettings

    shapes = dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2, height=32, width=48) if tiny else \
        dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=4, height=480, width=832)
    components.DRY_RUN_SHAPES.update(shapes)
    config = load_config("wan2.1-1.3b-stream-r1", ["distributed.mixed_precision=fp32"])
    if not reward:
        config.pop("reweight")
    run = components.dry_run_config(config)
    run["train"].update(frames=81, generator_every=1)
    checkpoints = "activation_checkpointing" in DistillSettings.__dataclass_fields__
    if not checkpoints:
        run["train"].pop("activation_checkpointing", None)
        config["train"].pop("activation_checkpointing", None)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {"device": device} if "device" in inspect.signature(Distiller).parameters else {}
        if device.type != "cpu" and not kwargs:
            raise SystemExit("this checkout's Distiller takes no device; merge issue 16's device work first")
        d = Distiller(run, Path(tmp), dry_run=True, **kwargs)
        d.train_step(0)
        rw = d.reweighter.reward if d.reweighter is not None else None
        spec = spec_from_modules(d.teacher, d.critic, d.generator, d.text, d.codec, rw)
        settings = RunSettings.from_config(config, dry_run=True)
        settings.pixel_frames, settings.height, settings.width = 81, shapes["height"], shapes["width"]
        plan = build_plan(spec, settings, 1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            d.train_step(1)
            sync(device)
            peak = torch.cuda.max_memory_allocated(device)
        else:
            with LiveBytes(live_tensors()) as live:
                t0 = time.perf_counter()
                d.train_step(1)
            peak = live.peak
        seconds = time.perf_counter() - t0
    return {"shapes": shapes, "reward": reward, "activation_checkpointing": settings.ac, "step_s": seconds,
            "measured_peak_gb": peak / GB, "planner_peak_gb": plan.peak / GB, "ratio": plan.peak / peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy widths: a smoke test of the script")
    parser.add_argument("--skip-reward", action="store_true", help="train without the reward (plain DMD)")
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here; use --device cpu --tiny for a smoke test")
    result = {"machine": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
              "torch": torch.__version__, "streaming": streaming(device, args.tiny),
              "training_step": training_step(device, args.tiny, not args.skip_reward)}
    s, t = result["streaming"], result["training_step"]
    table = ("| check | figure |\n|---|---|\n"
             f"| streaming {s['pixel_frames']} frames, latent {s['latent']} | {s['frames_per_second']:.1f} frames/s |\n"
             f"| first-chunk latency | {s['first_chunk_s'] * 1000:.0f} ms |\n"
             f"| training step, {t['shapes']} | {t['step_s']:.1f} s |\n"
             f"| measured peak memory | {t['measured_peak_gb']:.2f} GB |\n"
             f"| planner's estimate | {t['planner_peak_gb']:.2f} GB (ratio {t['ratio']:.2f}) |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (out / "gpu_check.md").write_text(f"Machine: {result['machine']}, torch {result['torch']}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
