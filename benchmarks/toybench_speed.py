"""ToyBench scoring time per video beside the student's generation time per video (not a test).

The judge must stay cheap next to what it judges: compare scores 96 videos per (row, seed). Both run on the same
held-out prompts, in turns, so machine drift hits them alike. Quote the ratio.

    python benchmarks/toybench_speed.py --checkpoint toy-dmd --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from stream_r1.generation.pipeline import VideoPipeline, generate_uint8
from stream_r1.toyworld import bench
from stream_r1.toyworld.prompts import eval_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="toy-dmd")
    parser.add_argument("--videos", type=int, default=32, help="videos per round (one generate call)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    pipe = VideoPipeline.from_checkpoint(args.checkpoint)
    prompts = eval_prompts("heldout", 1)[: args.videos]
    generate_uint8(pipe, prompts[:2], seed=0)  # warm-up
    gen_times, score_times = [], []
    for r in range(args.rounds):
        start = time.perf_counter()
        videos, _ = generate_uint8(pipe, prompts, seed=1000 * r, batch_size=args.videos)
        gen_times.append((time.perf_counter() - start) / len(prompts))
        start = time.perf_counter()
        bench.score_batch(videos, prompts)
        score_times.append((time.perf_counter() - start) / len(prompts))
    gen, score = statistics.median(gen_times), statistics.median(score_times)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    text = (f"Machine: {machine}; {args.videos} held-out prompts x {args.rounds} rounds, 12 frames\n\n"
            "| step | median ms / video | ratio |\n|---|---|---|\n"
            f"| generate ({args.checkpoint}, batch {args.videos}) | {gen * 1000:.1f} | 1 |\n"
            f"| ToyBench score | {score * 1000:.1f} | {score / gen:.2f} of generation |\n")
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toybench_speed.md").write_text(text)


if __name__ == "__main__":
    main()
