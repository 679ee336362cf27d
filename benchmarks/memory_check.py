"""The memory planner against a measured training step, on the CPU (issue 16's bar: within 25%).

A reduced paper-scale run: the dry run's real classes (our DiT in Wan layout, AutoencoderKLWan, UMT5,
Qwen2-VL VideoReward), with the DiT widened to 256 and a 96x160 video of 81 frames (21 latent frames,
7 chunks of 3, the preset's 9-frame window with 3 sink frames). One `Distiller.train_step` runs first so
that AdamW's state exists; the next step (generator and critic both update) is measured in a subprocess:

  - tensor peak: the peak of live tensor bytes (every storage alive at the start, plus every storage an op
    makes, minus each one when it is freed), counted by `memory.LiveBytes`. It is what
    torch.cuda.max_memory_allocated reports on a GPU: bytes held by live tensors, without allocator slack.
  - RSS peak: the process's peak resident memory above its level at the start, plus the tensor bytes
    alive at the start (a cross-check that includes allocator slack).

Beside them, `stream-r1 memory`'s estimate of the same config on 1 device.

    python benchmarks/memory_check.py [--micro-batch 2] [--set reweight=null]
        [--set train.activation_checkpointing=full]  # once the trainer checkpoints
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REDUCED = dict(dim=256, ffn_dim=1024, num_heads=4, num_layers=4, height=96, width=160)
OVERRIDES = ["train.frames=81", "distributed.mixed_precision=fp32"]  # the one-process CPU trainer runs fp32


def reduced_config(extra: list[str]) -> dict:
    from stream_r1.common.config import load_config
    from stream_r1.distill import components

    components.DRY_RUN_SHAPES.update(REDUCED)
    config = load_config("wan2.1-1.3b-stream-r1", extra)
    return config


def rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def measure(extra: list[str], micro_batch: int) -> dict:
    """Runs in the child process: build, one warm-up step, then one measured step."""
    import torch

    from stream_r1.distill.components import dry_run_config
    from stream_r1.distill.memory import (
        GB,
        LiveBytes,
        RunSettings,
        build_plan,
        live_tensors,
        spec_from_modules,
        storage_bytes,
    )
    from stream_r1.distill.trainer import Distiller, DistillSettings

    torch.manual_seed(0)
    config = reduced_config(extra)
    run_config = dry_run_config(config)
    run_config["train"].update(frames=81, generator_every=1, micro_batch_size=micro_batch, batch_size=2 * micro_batch)
    trainer_checkpoints = "activation_checkpointing" in DistillSettings.__dataclass_fields__
    if not trainer_checkpoints:  # this trainer has no activation checkpointing yet: measure and plan it without
        for key in ("activation_checkpointing", "activation_checkpointing_every"):
            run_config["train"].pop(key, None)
            config["train"].pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        d = Distiller(run_config, Path(tmp), dry_run=True)
        d.train_step(0)
        reward = d.reweighter.reward if d.reweighter is not None else None
        spec = spec_from_modules(d.teacher, d.critic, d.generator, d.text, d.codec, reward)
        settings = RunSettings.from_config(config, dry_run=True)
        settings.pixel_frames, settings.micro_batch, settings.batch_size = 81, micro_batch, 2 * micro_batch
        plan = build_plan(spec, settings, 1)
        before = live_tensors()
        held = storage_bytes(before)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS counter
            rss_reset = True
        except OSError:
            rss_reset = False
        rss0 = rss_bytes("VmRSS")
        with LiveBytes(before) as live:
            del before
            d.train_step(1)
        rss_peak = rss_bytes("VmHWM")
    return {"config": {"shapes": REDUCED, "overrides": extra, "micro_batch": micro_batch,
                       "activation_checkpointing": settings.ac,
                       "trainer_has_activation_checkpointing": trainer_checkpoints},
            "measured_tensor_peak_gb": live.peak / GB, "held_at_start_gb": held / GB,
            "measured_rss_peak_gb": (rss_peak - rss0 + held) / GB if rss_reset else None,
            "planner_peak_gb": plan.peak / GB, "planner_phase": plan.peak_phase,
            "planner_phases_gb": {k: v / GB for k, v in plan.phases.items()},
            "planner_terms_gb": {t.name: t.gpu / GB for t in plan.terms},
            "ratio_planner_over_measured": plan.peak / live.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--micro-batch", type=int, default=1, help="samples per micro-batch (2 micro-batches a step)")
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = OVERRIDES + args.set
    if args.child:
        print(json.dumps(measure(extra, args.micro_batch)))
        return
    done = subprocess.run([sys.executable, __file__, "--child", "--micro-batch", str(args.micro_batch),
                           *sum((["--set", x] for x in args.set), [])],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the measured run failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    lines = ["| | GB |", "|---|---|",
             f"| measured: peak of live tensor bytes in one step | {result['measured_tensor_peak_gb']:.3f} |",
             f"| measured: peak RSS (above start) + tensors held at start | "
             f"{result['measured_rss_peak_gb'] or float('nan'):.3f} |",
             f"| planner (`stream-r1 memory`), {result['planner_phase']} phase | {result['planner_peak_gb']:.3f} |",
             f"| **planner / measured tensor peak** | **{result['ratio_planner_over_measured']:.3f}** |"]
    terms = "\n".join(f"| {k} | {v:.4f} |" for k, v in result["planner_terms_gb"].items())
    text = (f"Reduced config: {json.dumps(result['config'])}\n\n" + "\n".join(lines)
            + "\n\nPlanner terms (GB):\n\n| term | GB |\n|---|---|\n" + terms)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_check.md").write_text(text + "\n")
    (out / "memory_check.json").write_text(json.dumps(result, indent=1))
    print(text)


if __name__ == "__main__":
    main()
