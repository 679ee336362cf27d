"""Seconds per generated video, checkpoints side by side (not a test).

Each checkpoint generates the same held-out prompts one video at a time; the checkpoints take turns
prompt by prompt so that machine drift hits them alike. Quote the ratios.

    python benchmarks/generation_speed.py --checkpoint toy-teacher --checkpoint toy-dmd --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from stream_r1.generation.pipeline import VideoPipeline
from stream_r1.toyworld.prompts import split_prompts


def gflops_per_video(pipe: VideoPipeline, prompt: str) -> float:
    """Floating-point operations of one 12-frame video at batch 1 (matmuls, attention, convolutions)."""
    with FlopCounterMode(display=False) as counter:
        pipe.generate([prompt], 12, seed=0)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1, help="videos per generate call (the bar is about batch 1)")
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    pipes = {name: VideoPipeline.from_checkpoint(name) for name in args.checkpoint}
    held = split_prompts("heldout")
    prompts = [held[i * len(held) // args.videos].text for i in range(args.videos)]
    times: dict[str, list[float]] = {name: [] for name in pipes}
    for pipe in pipes.values():  # warm-up
        pipe.generate(prompts[: args.batch], 12, seed=0)
    for i in range(0, len(prompts), args.batch):
        batch = prompts[i : i + args.batch]
        for name, pipe in pipes.items():
            start = time.perf_counter()
            pipe.generate(batch, 12, seed=i)
            times[name].append((time.perf_counter() - start) / len(batch))
    base = args.checkpoint[0]
    # The work ratio bounds the speed-up: with no fixed per-call cost, time would scale with the FLOPs.
    gflops = {name: gflops_per_video(pipe, prompts[0]) for name, pipe in pipes.items()}
    lines = [f"| checkpoint | median s / video | vs {base} | GFLOP / video | FLOP ratio |", "|---|---|---|---|---|"]
    for name, t in times.items():
        med = statistics.median(t)
        lines.append(f"| {name} | {med:.3f} | {statistics.median(times[base]) / med:.1f}x faster "
                     f"| {gflops[name]:.2f} | {gflops[base] / gflops[name]:.1f}x less |")
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    text = f"Machine: {machine}; {args.videos} held-out prompts, 12 frames, batch {args.batch}\n\n" + "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "generation_speed" if args.batch == 1 else f"generation_speed_batch{args.batch}"
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"seconds": times, "gflops_per_video": gflops}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
