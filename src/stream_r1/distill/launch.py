"""The entry point of every distillation: one process, or the ranks of a torchrun job.

Imports run one way: launch → distributed (process groups, FSDP2 trainer) → trainer (one process) →
parallelize. `cli.py`, `evaluation/compare.py` and `evaluation/demo.py` call `distill` / `dry_run` here.
"""

from __future__ import annotations

from pathlib import Path

from . import trainer
from .components import dry_run_config
from .distributed import distill_distributed, dry_run_distributed, wants_distributed, world_size_from_env


def distill(config: dict, run_dir: Path, resume: bool = False, reweighter=None, evaluator=None) -> Path:
    """Run (or resume) a distillation and export the student; returns its path.

    Under torchrun with WORLD_SIZE > 1 (or to resume a sharded checkpoint) the FSDP2 path runs instead.
    """
    if wants_distributed(run_dir, resume):
        return distill_distributed(config, run_dir, resume, reweighter, evaluator)
    return trainer.distill(config, run_dir, resume, reweighter, evaluator)


def dry_run(config: dict) -> dict[str, float]:
    """One training step of a paper-scale config with tiny random weights; sharded under torchrun."""
    if world_size_from_env() > 1:
        return dry_run_distributed(dry_run_config(config))
    return trainer.dry_run(config)
