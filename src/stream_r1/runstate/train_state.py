"""Resumable training state in a run directory: atomic step checkpoints and `latest` pointer.

Layout: RUN_DIR/checkpoints/step_000500/{<module>.safetensors, <optimizer>.pt, state.json}. A step
directory is written under a temporary name and renamed when complete; `latest` is then rewritten
atomically, so a killed or corrupt save always leaves the previous good checkpoint in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..common.weights import CheckpointError, atomic_write, load_state_dict, save_state_dict


def save_training_state(
    run_dir: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict,
    keep: int = 3,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write one step checkpoint atomically and prune all but the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, module in modules.items():
        save_state_dict(tmp / f"{name}.safetensors", module.state_dict(), metadata or {})
    for name, opt in optimizers.items():
        torch.save(opt.state_dict(), tmp / f"{name}.pt")
    rng = {"torch": torch.get_rng_state()}
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    atomic_write(root / "latest", lambda p: Path(p).write_text(final.name))
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete step checkpoint of a run, or None for a fresh run."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.exists():
        path = root / pointer.read_text().strip()
        if (path / "state.json").exists():
            return path
    done = [p for p in sorted(root.glob("step_*")) if (p / "state.json").exists()]
    return done[-1] if done else None


def load_training_state(
    ckpt: Path, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> dict:
    """Restore modules, optimizers and the torch RNG from a step checkpoint; returns state.json."""
    for name, module in modules.items():
        tensors, _ = load_state_dict(ckpt / f"{name}.safetensors")
        try:
            module.load_state_dict(tensors)
        except RuntimeError as err:
            raise CheckpointError(
                f"{ckpt}/{name}.safetensors does not match this run's model ({str(err).splitlines()[0]}); "
                "resume with the config the run was started with"
            ) from err
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(torch.load(ckpt / f"{name}.pt", weights_only=True))
        except Exception as err:  # torch raises several types for truncated pickles
            raise CheckpointError(
                f"{ckpt}/{name}.pt is corrupt ({err}); delete {ckpt} to resume from the one before"
            ) from err
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    return json.loads((ckpt / "state.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    """The records of a run's JSON-lines file (metrics.jsonl and the like); [] if it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
