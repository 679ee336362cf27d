"""Peak host memory and wall time of the generator and critic losses with and without activation checkpointing.

Each setting runs in its own fresh process (peak RSS, `ru_maxrss`, is per process): it builds a Distiller on a
random DiT wider than the toy one, then times the trainer's own loss + backward; the figure is the peak RSS
during the loss and backward minus the RSS just before it. Settings are run interleaved, `--repeats` times each,
so the ratio against `none` is what to quote.

    python benchmarks/activation_checkpointing.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"none": {}, "every_n=2": {"activation_checkpointing": "every_n", "activation_checkpointing_every": 2},
         "full": {"activation_checkpointing": "full"}}
SHAPE = dict(dim=256, ffn_dim=1024, num_heads=4, num_layers=4, text_dim=32, patch_size=(1, 2, 2), frames_per_chunk=3)


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(mode: str, which: str, teacher: str) -> dict:
    import torch

    from stream_r1.distill.trainer import PHASE_CRITIC, PHASE_GENERATOR, Distiller, sample_generators

    torch.set_num_threads(1)
    train = dict(seed=0, steps=1, batch_size=2, micro_batch_size=2, frames=9, denoising_timesteps=[1000, 500],
                 eval_every=10**9, **MODES[mode])
    d = Distiller({"teacher": teacher, "student_init": teacher, "train": train}, Path(tempfile.mkdtemp()))
    prompts = [d.prompts[0], d.prompts[1]]
    before = rss_mb()
    start = time.perf_counter()
    if which == "generator":
        loss, _ = d.generator_loss(prompts, 1, sample_generators(0, 0, PHASE_GENERATOR, range(2)))
    else:
        loss = d.critic_loss(prompts, 1, sample_generators(0, 0, PHASE_CRITIC, range(2)))
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak - before, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", nargs=3, metavar=("MODE", "WHICH", "TEACHER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    import torch

    from stream_r1.models.dit import DiT, DiTConfig
    from stream_r1.models.dit_io import save_dit

    tmp = Path(tempfile.mkdtemp())
    teacher = tmp / "teacher.safetensors"
    torch.manual_seed(0)
    save_dit(teacher, DiT(DiTConfig(**SHAPE)), {"codec": {"factor": 1}, "frame_size": 32})
    runs: dict[str, dict[str, list[dict]]] = {w: {m: [] for m in MODES} for w in ("generator", "critic")}
    for _ in range(args.repeats):
        for which in runs:
            for mode in MODES:
                out = subprocess.run([sys.executable, __file__, "--child", mode, which, str(teacher)],
                                     capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1",
                                                                                       **_env()})
                runs[which][mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {"shape": SHAPE, "batch": 2, "latent_frames": 9, "frame": "32x32", "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "repeats": args.repeats, "losses": {}}
    for which, modes in runs.items():
        base_mb = statistics.median(r["peak_mb"] for r in modes["none"])
        base_s = statistics.median(r["seconds"] for r in modes["none"])
        result["losses"][which] = {
            mode: {"peak_mb": statistics.median(r["peak_mb"] for r in rs),
                   "seconds": statistics.median(r["seconds"] for r in rs),
                   "memory_ratio": statistics.median(r["peak_mb"] for r in rs) / base_mb,
                   "time_ratio": statistics.median(r["seconds"] for r in rs) / base_s}
            for mode, rs in modes.items()}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "activation_checkpointing.json").write_text(json.dumps(result, indent=2) + "\n")


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


if __name__ == "__main__":
    main()
