"""What normalising Stream-R1's weights over the global batch costs: the pre-pass (method.md §3.5).

With more than one micro-batch (or rank) the trainer first rolls every micro-batch out without grad, decodes
and scores it, and only then runs the weighted backward; the reward pass moves into the pre-pass, so the extra
work is one no-grad rollout per sample. Both variants run the same micro-batches in one process, interleaved:
"global" (the trainer) and "per micro-batch" (the weights normalised inside each micro-batch, as before).
The ratio of their step times is what to quote.

    python benchmarks/pre_pass.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from stream_r1.common.config import load_config
from stream_r1.distill.trainer import Distiller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="toy-stream-r1")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    config = load_config(args.config, [f"train.micro_batch_size={args.micro_batch}", "train.generator_every=1"])
    times: dict[str, list[float]] = {"global": [], "per micro-batch": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: Distiller(config, Path(tmp) / name.replace(" ", "-")) for name in times}
        runs["per micro-batch"].needs_pre_pass = lambda: False  # the old path: each micro-batch weighs itself
        for d in runs.values():  # warm-up
            d.train_step(0)
        for step in range(1, args.steps + 1):  # interleaved so drift hits both alike
            for name, d in runs.items():
                start = time.perf_counter()
                d.train_step(step)
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    s = runs["global"].s
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    text = (f"Machine: {machine}; {args.config}, batch {s.batch_size} in micro-batches of {s.micro_batch_size}, "
            f"a step with generator and critic updates, {args.steps} timed steps each\n\n"
            "| weights normalised | median ms |\n|---|---|\n"
            + "".join(f"| {k} | {1000 * v:.0f} |\n" for k, v in med.items())
            + f"\nglobal / per micro-batch: **{med['global'] / med['per micro-batch']:.3f}x**")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pre_pass.md").write_text(text + "\n")
    (out / "pre_pass.json").write_text(json.dumps(times, indent=1))
    print(text)


if __name__ == "__main__":
    main()
